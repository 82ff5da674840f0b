"""The dev pod runner's exit reporting: termination message choice and the pod status patch."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gpuscale_podrunner.status import (
    build_exit_status,
    describe_exit,
    exit_code_from_returncode,
    log_tail,
    termination_message,
)

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
FINISHED = datetime(2026, 1, 2, 3, 6, 7, tzinfo=timezone.utc)


def running_pod() -> dict:
    return {
        "metadata": {"name": "digits-g1-w0", "namespace": "ns"},
        "spec": {"containers": [
            {"name": "trainer", "image": "gpuscale/trainer:0.1.0"},
            {"name": "sidecar", "image": "busybox"},
        ]},
        "status": {
            "phase": "Running",
            "podIP": "10.244.0.5",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
            ],
            "containerStatuses": [
                {"name": "trainer", "ready": True, "restartCount": 0, "state": {"running": {}}},
                {"name": "sidecar", "ready": True, "restartCount": 0, "state": {"running": {}}},
            ],
        },
    }


@pytest.mark.parametrize(("returncode", "exit_code"), [(0, 0), (75, 75), (-15, 143), (-9, 137)])
def test_exit_code_from_returncode(returncode: int, exit_code: int) -> None:
    assert exit_code_from_returncode(returncode) == exit_code


def test_describe_exit_names_signal() -> None:
    assert describe_exit(137) == "exit code 137 (SIGKILL)"
    assert describe_exit(75) == "exit code 75"


def test_message_from_file() -> None:
    assert termination_message(b'{"accuracy":0.97}', 0, "FallbackToLogsOnError", b"log") == '{"accuracy":0.97}'


def test_message_file_capped_at_4096_bytes() -> None:
    message = termination_message(b"x" * 5000, 1, "File", b"")
    assert len(message.encode()) == 4096


def test_message_falls_back_to_log_on_error() -> None:
    assert termination_message(b"", 2, "FallbackToLogsOnError", b"line 1\nbad input\n") == "line 1\nbad input\n"


def test_message_no_fallback_on_success() -> None:
    assert termination_message(b"", 0, "FallbackToLogsOnError", b"log") == ""


def test_message_no_fallback_with_file_policy() -> None:
    assert termination_message(b"", 1, "File", b"log") == ""


def test_log_tail_keeps_last_80_lines() -> None:
    log = b"".join(f"{i}\n".encode() for i in range(200))
    tail = log_tail(log)
    assert tail.splitlines()[0] == "120"
    assert tail.splitlines()[-1] == "199"


def test_log_tail_keeps_last_2048_bytes() -> None:
    tail = log_tail(b"y" * 10000 + b"\n")
    assert len(tail.encode()) == 2048


def test_exit_status_succeeded() -> None:
    patch = build_exit_status(running_pod(), "trainer", exit_code=0, reason="Completed", message='{"ok":1}',
                              started_at=STARTED, finished_at=FINISHED)
    status = patch["status"]
    assert status["phase"] == "Succeeded"
    trainer = status["containerStatuses"][0]
    assert trainer["name"] == "trainer"
    assert trainer["ready"] is False
    assert trainer["state"] == {"terminated": {
        "exitCode": 0, "reason": "Completed", "message": '{"ok":1}',
        "startedAt": "2026-01-02T03:04:05Z", "finishedAt": "2026-01-02T03:06:07Z",
    }}


def test_exit_status_failed_on_nonzero() -> None:
    patch = build_exit_status(running_pod(), "trainer", exit_code=75, reason="Error", message="preempted",
                              started_at=STARTED, finished_at=FINISHED)
    assert patch["status"]["phase"] == "Failed"
    assert patch["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 75


def test_exit_status_keeps_other_containers() -> None:
    patch = build_exit_status(running_pod(), "trainer", exit_code=0, reason="Completed", message="",
                              started_at=STARTED, finished_at=FINISHED)
    sidecar = patch["status"]["containerStatuses"][1]
    assert sidecar == {"name": "sidecar", "ready": True, "restartCount": 0, "state": {"running": {}}}


def test_exit_status_marks_pod_not_ready() -> None:
    patch = build_exit_status(running_pod(), "trainer", exit_code=0, reason="Completed", message="",
                              started_at=STARTED, finished_at=FINISHED)
    conditions = {condition["type"]: condition for condition in patch["status"]["conditions"]}
    assert conditions["Initialized"]["status"] == "True"
    assert conditions["Ready"]["status"] == "False"
    assert conditions["ContainersReady"]["status"] == "False"
    assert len(patch["status"]["conditions"]) == 3


def test_exit_status_without_previous_status() -> None:
    pod = running_pod()
    del pod["status"]
    patch = build_exit_status(pod, "trainer", exit_code=1, reason="Error", message="boom",
                              started_at=STARTED, finished_at=FINISHED)
    assert [entry["name"] for entry in patch["status"]["containerStatuses"]] == ["trainer"]
