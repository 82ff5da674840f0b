"""Build the pod status a kubelet would report when a container has exited.

Pure functions: the runner passes in the exit status, the termination file's bytes and the log
tail, and sends the returned patch to the pod's status subresource.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

# The kubelet reads at most this many bytes of the termination message file.
MAX_TERMINATION_MESSAGE_BYTES = 4096
# With FallbackToLogsOnError the kubelet uses the last 80 lines or 2048 bytes of the log, whichever
# is smaller (Kubernetes documentation, "Determine the Reason for Pod Failure").
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
# The exit code and reason the kubelet reports for a container it can no longer find.
LOST_EXIT_CODE = 137
LOST_REASON = "ContainerStatusUnknown"


def exit_code_from_returncode(returncode: int) -> int:
    """Map Popen's returncode to a container exit code: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def log_tail(log_bytes: bytes) -> str:
    """Return the last 80 lines or 2048 bytes of a log, whichever is smaller."""
    lines = log_bytes.splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
    tail = b"".join(lines)[-FALLBACK_LOG_BYTES:]
    return tail.decode("utf-8", errors="replace")


def termination_message(file_bytes: bytes, exit_code: int, policy: str, log_bytes: bytes) -> str:
    """Return the container's termination message, as the kubelet chooses it.

    The file comes first (at most 4096 bytes). With the FallbackToLogsOnError policy, an empty file
    and a non-zero exit code give the log tail instead.
    """
    message = file_bytes[:MAX_TERMINATION_MESSAGE_BYTES].decode("utf-8", errors="replace")
    if not message.strip() and exit_code != 0 and policy == "FallbackToLogsOnError":
        return log_tail(log_bytes)
    return message


def terminated_reason(exit_code: int) -> str:
    return "Completed" if exit_code == 0 else "Error"


def format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_exit_status(pod: Mapping[str, Any], container_name: str, *, exit_code: int, reason: str, message: str,
                      started_at: datetime, finished_at: datetime) -> dict[str, Any]:
    """Return the status patch for a pod whose container `container_name` has exited.

    The pod's phase follows from this container alone (restartPolicy Never): Succeeded on exit 0,
    else Failed. Other containers of the pod keep the status they have.
    """
    status = pod.get("status") or {}
    previous = {entry.get("name"): entry for entry in status.get("containerStatuses") or []}
    container_statuses = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        name = container["name"]
        if name != container_name:
            if name in previous:
                container_statuses.append(previous[name])
            continue
        container_statuses.append({
            "name": name,
            "image": container.get("image", ""),
            "imageID": (previous.get(name) or {}).get("imageID", ""),
            "ready": False,
            "started": False,
            "restartCount": (previous.get(name) or {}).get("restartCount", 0),
            "state": {"terminated": {
                "exitCode": exit_code,
                "reason": reason,
                "message": message,
                "startedAt": format_time(started_at),
                "finishedAt": format_time(finished_at),
            }},
        })
    now = format_time(finished_at)
    conditions = [
        condition for condition in status.get("conditions") or []
        if condition.get("type") not in ("Ready", "ContainersReady")
    ]
    for condition_type in ("Ready", "ContainersReady"):
        conditions.append({"type": condition_type, "status": "False", "reason": "PodCompleted",
                           "lastTransitionTime": now})
    return {"status": {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "conditions": conditions,
        "containerStatuses": container_statuses,
    }}


def describe_exit(exit_code: int) -> str:
    """Return a short description of an exit code for log lines, naming the signal if there was one."""
    if exit_code > 128:
        try:
            return f"exit code {exit_code} ({signal.Signals(exit_code - 128).name})"
        except ValueError:
            pass
    return f"exit code {exit_code}"
