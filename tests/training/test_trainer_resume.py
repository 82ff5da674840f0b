"""SIGTERM stops 2 real workers at an agreed step; 3 workers then resume from the checkpoint."""

import re
import signal
import time

import pytest

from gpuscale_trainer.local_workers import start_workers

pytestmark = pytest.mark.training

EPOCHS = 12
STEPS_PER_EPOCH = 14  # 1,437 training digits // global batch 96, at any worker count
CHECKPOINT_EVERY = 10
GRACE_PERIOD_S = 60


def logged_steps(log_text: str) -> list[int]:
    return [int(step) for step in re.findall(r"epoch=\d+/\d+ step=(\d+)", log_text)]


@pytest.fixture(scope="module")
def preempted_then_resumed(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("resume")
    checkpoint_dir = str(run_dir / "checkpoints")
    args = [
        "--epochs", str(EPOCHS),
        "--checkpoint-every-steps", str(CHECKPOINT_EVERY),
        "--output-dir", str(run_dir / "output"),
        "--compress", "none",
    ]

    first = start_workers(2, args, str(run_dir), generation=1, checkpoint_dir=checkpoint_dir)
    try:
        first.wait_for_log("epoch=2/", timeout_s=120)
        # Staggered like signals from separate kubelets, so the workers see them at different steps.
        sent_at = first.send_sigterm(stagger_s=0.3)
        first_codes = first.wait(timeout_s=GRACE_PERIOD_S)
    finally:
        first.kill()
    stop_seconds = max(worker.exited_at for worker in first.workers) - sent_at

    second = start_workers(3, args, str(run_dir), generation=2, checkpoint_dir=checkpoint_dir)
    try:
        second_codes = second.wait(timeout_s=240)
    finally:
        second.kill()
    return first, first_codes, stop_seconds, second, second_codes


def test_sigterm_exits_75_within_grace(preempted_then_resumed):
    first, first_codes, stop_seconds, _, _ = preempted_then_resumed
    assert first_codes == [75, 75], first.workers[1].log_text()[-3000:]
    assert stop_seconds < GRACE_PERIOD_S


def test_workers_agree_on_saved_step(preempted_then_resumed):
    first, _, _, _, _ = preempted_then_resumed
    messages = [worker.termination_message() for worker in first.workers]
    assert [message["outcome"] for message in messages] == ["preempted", "preempted"]
    assert messages[0]["step"] == messages[1]["step"]
    assert 0 < messages[0]["step"] < EPOCHS * STEPS_PER_EPOCH


def test_three_workers_resume_and_finish(preempted_then_resumed):
    first, _, _, second, second_codes = preempted_then_resumed
    assert second_codes == [0, 0, 0], second.workers[0].log_text()[-3000:]
    saved_step = first.workers[0].termination_message()["step"]
    for worker in second.workers:
        assert f"training starts: step={saved_step} (resumed from checkpoint)" in worker.log_text()
    summary = second.workers[0].termination_message()
    assert summary["startStep"] == saved_step
    assert summary["steps"] == EPOCHS * STEPS_PER_EPOCH
    assert summary["workers"] == 3
    assert summary["accuracy"] >= 0.90


def test_steps_not_repeated_beyond_interval(preempted_then_resumed):
    first, _, _, second, _ = preempted_then_resumed
    last_step_before_stop = max(logged_steps(first.workers[0].log_text()))
    resumed_step = second.workers[0].termination_message()["startStep"]
    assert last_step_before_stop - resumed_step <= CHECKPOINT_EVERY
    second_steps = logged_steps(second.workers[0].log_text())
    assert min(second_steps) > resumed_step
    assert max(second_steps) == EPOCHS * STEPS_PER_EPOCH


def test_hung_peer_bounded_by_watchdog(tmp_path):
    """A worker stuck in a collective with a frozen peer still exits 75 at --stop-timeout."""
    args = ["--epochs", "200", "--compress", "none", "--output-dir", str(tmp_path / "output"),
            "--stop-timeout", "5"]
    group = start_workers(2, args, str(tmp_path), checkpoint_dir=str(tmp_path / "checkpoints"))
    try:
        group.wait_for_log("epoch=2/", timeout_s=120)
        group.workers[1].process.send_signal(signal.SIGSTOP)  # Frozen mid-training, like a hung node.
        time.sleep(1)
        sent_at = time.monotonic()
        group.workers[0].process.send_signal(signal.SIGTERM)
        exit_code = group.workers[0].process.wait(timeout=GRACE_PERIOD_S)
        stop_seconds = time.monotonic() - sent_at
    finally:
        group.kill()
    assert exit_code == 75
    assert 5 <= stop_seconds < 15
    summary = group.workers[0].termination_message()
    assert summary["outcome"] == "preempted"
    assert "did not stop within 5 s of SIGTERM" in summary["message"]
