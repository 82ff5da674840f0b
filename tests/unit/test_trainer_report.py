import json

from gpuscale_trainer.report import (
    MAX_TERMINATION_MESSAGE_BYTES,
    TrainingResult,
    VariantResult,
    build_report,
    build_stop_summary,
    build_summary,
    encode_termination_message,
    write_termination_message,
)

TRAINING = TrainingResult(steps=140, start_step=43, epochs=10, workers=2, global_batch_size=96, accuracy=0.96667)
VARIANTS = [
    VariantResult("original", "savedmodel", 2_000_000, 0.96667, 80.0),
    VariantResult("float32", "tflite", 1_200_000, 0.96667, 6.0),
    VariantResult("int8", "tflite", 320_000, 0.9611, 3.0),
]


def test_report_lists_every_variant():
    report = build_report(TRAINING, VARIANTS, held_out_examples=360)
    assert report["training"]["steps"] == 140
    assert report["heldOutExamples"] == 360
    assert [variant["name"] for variant in report["variants"]] == ["original", "float32", "int8"]
    for variant in report["variants"]:
        assert set(variant) == {"name", "format", "size_bytes", "accuracy", "mean_latency_us"}
    json.dumps(report)


def test_summary_fields():
    summary = build_summary(TRAINING, VARIANTS, "/out/report.json")
    assert summary["outcome"] == "succeeded"
    assert summary["accuracy"] == 0.9667
    assert summary["steps"] == 140
    assert summary["startStep"] == 43
    assert summary["workers"] == 2
    assert summary["compressed"]["int8"] == {"sizeBytes": 320_000, "accuracy": 0.9611}
    assert "original" not in summary["compressed"]
    assert summary["report"] == "/out/report.json"


def test_summary_without_compression():
    summary = build_summary(TRAINING, VARIANTS[:1], None)
    assert "compressed" not in summary
    assert "report" not in summary


def test_termination_message_is_compact_json():
    encoded = encode_termination_message(build_summary(TRAINING, VARIANTS, "/out/report.json"))
    assert len(encoded) <= MAX_TERMINATION_MESSAGE_BYTES
    assert json.loads(encoded)["compressed"]["int8"]["sizeBytes"] == 320_000


def test_oversized_summary_trimmed():
    summary = build_summary(TRAINING, VARIANTS, "/out/" + "r" * 5000)
    summary["compressed"] = {f"variant{i}": {"sizeBytes": i, "accuracy": 0.5} for i in range(300)}
    encoded = encode_termination_message(summary)
    assert len(encoded) <= MAX_TERMINATION_MESSAGE_BYTES
    decoded = json.loads(encoded)
    assert decoded["accuracy"] == 0.9667
    assert "compressed" not in decoded
    assert "report" not in decoded


def test_stop_summary_truncates_message():
    summary = build_stop_summary("failed", 2, "x" * 10_000)
    assert len(encode_termination_message(summary)) <= MAX_TERMINATION_MESSAGE_BYTES
    assert summary["exitCode"] == 2


def test_preempted_summary_has_step():
    summary = build_stop_summary("preempted", 75, "stopped on SIGTERM", step=43)
    assert summary == {"outcome": "preempted", "exitCode": 75, "message": "stopped on SIGTERM", "step": 43}


def test_termination_message_written_to_env_path(tmp_path):
    path = tmp_path / "termination-log"
    write_termination_message({"outcome": "succeeded"}, {"GPUSCALE_TERMINATION_LOG": str(path)})
    assert json.loads(path.read_text()) == {"outcome": "succeeded"}


def test_unwritable_termination_path_ignored(tmp_path):
    missing = tmp_path / "no-such-dir" / "termination-log"
    write_termination_message({"outcome": "succeeded"}, {"GPUSCALE_TERMINATION_LOG": str(missing)})
    assert not missing.exists()
