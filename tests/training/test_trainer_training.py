"""Two real worker processes train digits on 127.0.0.1 and the chief compresses the model."""

import json
import os

import pytest

from gpuscale_trainer.local_workers import start_workers

pytestmark = pytest.mark.training

EPOCHS = 10
STEPS_PER_EPOCH = 14  # 1,437 training digits // global batch 96


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("two-workers")
    output_dir = run_dir / "output"
    args = ["--epochs", str(EPOCHS), "--output-dir", str(output_dir), "--compress", "all"]
    group = start_workers(2, args, str(run_dir), checkpoint_dir=str(run_dir / "checkpoints"))
    try:
        exit_codes = group.wait(timeout_s=240)
    finally:
        group.kill()
    return group, exit_codes, output_dir


def test_both_workers_succeed(two_worker_run):
    group, exit_codes, _ = two_worker_run
    assert exit_codes == [0, 0], group.workers[0].log_text()[-3000:]


def test_held_out_accuracy_reached(two_worker_run):
    group, _, _ = two_worker_run
    summary = group.workers[0].termination_message()
    assert summary["outcome"] == "succeeded"
    assert summary["accuracy"] >= 0.90
    assert summary["workers"] == 2
    assert summary["steps"] == EPOCHS * STEPS_PER_EPOCH


def test_epoch_lines_logged(two_worker_run):
    group, _, _ = two_worker_run
    log_text = group.workers[1].log_text()
    for epoch in range(1, EPOCHS + 1):
        assert f"epoch={epoch}/{EPOCHS} step={epoch * STEPS_PER_EPOCH} loss=" in log_text
    assert "examples_per_s=" in log_text


def test_only_chief_writes_output(two_worker_run):
    group, _, output_dir = two_worker_run
    assert sorted(os.listdir(output_dir)) == [
        "model-dynamic.tflite",
        "model-float16.tflite",
        "model-float32.tflite",
        "model-int8.tflite",
        "report.json",
        "saved_model",
    ]
    assert group.workers[1].termination_message() == {"outcome": "succeeded", "role": "worker", "steps": 140}
    # The non-chief saved its copy into a scratch directory under its TMPDIR and deleted it.
    scratch_parent = group.workers[1].log_path.removesuffix(".log") + ".tmp"
    assert not [name for name in os.listdir(scratch_parent) if name.startswith("gpuscale-scratch-")]


def test_report_lists_variants(two_worker_run):
    _, _, output_dir = two_worker_run
    report = json.loads((output_dir / "report.json").read_text())
    variants = {variant["name"]: variant for variant in report["variants"]}
    assert list(variants) == ["original", "float32", "dynamic", "float16", "int8"]
    for variant in variants.values():
        assert variant["size_bytes"] > 0
        assert 0.0 <= variant["accuracy"] <= 1.0
        assert variant["mean_latency_us"] > 0
    assert variants["float32"]["size_bytes"] == (output_dir / "model-float32.tflite").stat().st_size


def test_int8_small_and_accurate(two_worker_run):
    _, _, output_dir = two_worker_run
    report = json.loads((output_dir / "report.json").read_text())
    variants = {variant["name"]: variant for variant in report["variants"]}
    float_model = variants["float32"]
    int8_model = variants["int8"]
    assert int8_model["size_bytes"] <= 0.30 * float_model["size_bytes"]
    assert int8_model["accuracy"] >= variants["original"]["accuracy"] - 0.02
    assert int8_model["accuracy"] >= float_model["accuracy"] - 0.02


def test_summary_fits_termination_message(two_worker_run):
    group, _, _ = two_worker_run
    size = os.path.getsize(group.workers[0].termination_log)
    assert size <= 4096
    assert group.workers[0].termination_message()["compressed"]["int8"]["sizeBytes"] > 0
