"""Bad input makes a real trainer process exit with 2 and a message that names the problem."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.training

BROKEN_DATASET_MODULE = '''
import numpy as np
from gpuscale_trainer.data import ArrayDataset

def unreadable(seed):
    with open("/nonexistent/digits.csv") as file:
        return file.read()

def wrong_labels(seed):
    features = np.zeros((10, 4), dtype=np.float32)
    return ArrayDataset(features, np.full(10, 7), features, np.zeros(10, dtype=np.int64), num_classes=3)
'''


def write_corrupt_state_file(checkpoint_dir: Path) -> None:
    chief = checkpoint_dir / "chief"
    chief.mkdir(parents=True)
    (chief / "checkpoint").write_text("this is not a checkpoint state {{{\n")


def write_corrupt_checkpoint_files(checkpoint_dir: Path) -> None:
    chief = checkpoint_dir / "chief"
    chief.mkdir(parents=True)
    (chief / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-3"\nall_model_checkpoint_paths: "ckpt-3"\n'
    )
    (chief / "ckpt-3.index").write_bytes(b"\x00garbage index" * 20)
    (chief / "ckpt-3.data-00000-of-00001").write_bytes(b"\x01garbage data" * 20)


def tree_digest(path: Path) -> dict[str, str]:
    return {
        str(file.relative_to(path)): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


CASES = {
    "corrupt-state-file": {"checkpoint": write_corrupt_state_file},
    "corrupt-checkpoint-files": {"checkpoint": write_corrupt_checkpoint_files},
    "unreadable-dataset": {"args": ["--dataset", "broken_dataset:unreadable"]},
    "missing-dataset-module": {"args": ["--dataset", "no_such_module:load"]},
    "malformed-dataset": {"args": ["--dataset", "broken_dataset:wrong_labels"]},
    "missing-task-index": {
        "env": {"TF_CONFIG": json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                         "task": {"type": "worker"}})},
    },
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """Start every case at once (each is one short process), then collect the results."""
    root = tmp_path_factory.mktemp("bad-input")
    (root / "broken_dataset.py").write_text(BROKEN_DATASET_MODULE)
    started = {}
    for name, case in CASES.items():
        case_dir = root / name
        checkpoint_dir = case_dir / "checkpoints"
        case_dir.mkdir()
        if "checkpoint" in case:
            case["checkpoint"](checkpoint_dir)
        env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
        env.update(
            PYTHONPATH=os.pathsep.join([str(root), env.get("PYTHONPATH", "")]),
            GPUSCALE_TERMINATION_LOG=str(case_dir / "termination-log"),
            **case.get("env", {}),
        )
        args = ["--checkpoint-dir", str(checkpoint_dir), "--output-dir", str(case_dir / "output"),
                "--epochs", "1", "--compress", "none", *case.get("args", [])]
        before = tree_digest(checkpoint_dir) if checkpoint_dir.exists() else {}
        process = subprocess.Popen([sys.executable, "-m", "gpuscale_trainer", *args], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started[name] = (process, case_dir, checkpoint_dir, before)

    results = {}
    for name, (process, case_dir, checkpoint_dir, before) in started.items():
        output, _ = process.communicate(timeout=180)
        termination = case_dir / "termination-log"
        results[name] = {
            "code": process.returncode,
            "output": output,
            "summary": json.loads(termination.read_text()) if termination.exists() else None,
            "before": before,
            "after": tree_digest(checkpoint_dir) if checkpoint_dir.exists() else {},
        }
    return results


@pytest.mark.parametrize(
    ("case", "expected_text"),
    [
        ("corrupt-state-file", "is corrupt or unreadable"),
        ("corrupt-checkpoint-files", "is corrupt or unreadable"),
        ("unreadable-dataset", "--dataset 'broken_dataset:unreadable' failed: FileNotFoundError"),
        ("missing-dataset-module", "cannot import module 'no_such_module'"),
        ("malformed-dataset", "train labels span 7..7; expected 0..2"),
        ("missing-task-index", "TF_CONFIG task.index is missing"),
    ],
)
def test_bad_input_exits_2(bad_runs, case, expected_text):
    result = bad_runs[case]
    assert result["code"] == 2, result["output"][-3000:]
    assert expected_text in result["output"]
    assert result["summary"]["outcome"] == "failed"
    assert result["summary"]["exitCode"] == 2
    assert expected_text in result["summary"]["message"]


@pytest.mark.parametrize("case", ["corrupt-state-file", "corrupt-checkpoint-files"])
def test_corrupt_checkpoint_left_untouched(bad_runs, case):
    result = bad_runs[case]
    assert result["before"]
    assert result["after"] == result["before"]


def test_example_hooks_train(tmp_path):
    """The documented `--dataset`/`--model` example trains one worker to a useful accuracy."""
    trainer_image = Path(__file__).resolve().parents[2] / "trainer-image"
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    env.update(PYTHONPATH=str(trainer_image), GPUSCALE_TERMINATION_LOG=str(tmp_path / "termination-log"))
    args = ["--dataset", "examples.wine:load_dataset", "--model", "examples.wine:build_model",
            "--global-batch-size", "16", "--epochs", "40", "--compress", "none",
            "--output-dir", str(tmp_path / "output")]
    completed = subprocess.run([sys.executable, "-m", "gpuscale_trainer", *args], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stdout[-3000:]
    summary = json.loads((tmp_path / "termination-log").read_text())
    assert summary["accuracy"] >= 0.85
    assert summary["steps"] == 40 * (133 // 16)
