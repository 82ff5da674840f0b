import json

import pytest

from gpuscale_trainer.cli import build_parser, main


def test_bad_tf_config_exits_2_with_message(tmp_path):
    termination_log = tmp_path / "termination-log"
    env = {
        "TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker"}}),
        "GPUSCALE_TERMINATION_LOG": str(termination_log),
    }
    assert main([], env) == 2
    summary = json.loads(termination_log.read_text())
    assert summary["outcome"] == "failed"
    assert summary["exitCode"] == 2
    assert "task.index is missing" in summary["message"]


def test_checkpoint_dir_defaults_to_env():
    options = build_parser({"GPUSCALE_CHECKPOINT_DIR": "/ckpt"}).parse_args([])
    assert options.checkpoint_dir == "/ckpt"
    assert build_parser({}).parse_args([]).checkpoint_dir is None


@pytest.mark.parametrize(
    "argv",
    [["--global-batch-size", "0"], ["--epochs", "-1"], ["--compress", "int4"], ["--learning-rate", "0"]],
)
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as raised:
        build_parser({}).parse_args(argv)
    assert raised.value.code == 2
