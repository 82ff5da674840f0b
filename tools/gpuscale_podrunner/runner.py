"""The pod runner's loop: watch pods, start and stop local processes, report exits to pod status.

One thread watches pods and queues the events; the main thread owns every process and every write
to the API server, so no lock is needed. A pod the runner adopts carries the finalizer
`training.gpuscale.io/dev-pod-runner`, which keeps kwok from removing a deleted pod before its
process has stopped and its exit status has been written.
"""

from __future__ import annotations

import base64
import ctypes
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from gpuscale_podrunner.launch import (
    GroupKey,
    HostPaths,
    LaunchError,
    LaunchPlan,
    build_launch_plan,
    cluster_addresses,
    extend_address_map,
    find_container,
    group_key,
    parse_tf_config,
)
from gpuscale_podrunner.status import (
    LOST_EXIT_CODE,
    LOST_REASON,
    build_exit_status,
    describe_exit,
    exit_code_from_returncode,
    termination_message,
    terminated_reason,
)

FINALIZER = "training.gpuscale.io/dev-pod-runner"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
DEFAULT_IMAGE_PREFIX = "gpuscale/trainer"
DEFAULT_COMMAND = ("python", "-m", "gpuscale_trainer")
# The exit code and reason containerd reports when a container's process cannot be started.
START_ERROR_EXIT_CODE = 128
START_ERROR_REASON = "StartError"
LOG_TAIL_READ_BYTES = 16384
WATCH_TIMEOUT_SECONDS = 300
NODE_REFRESH_INTERVAL_SECONDS = 2.0

log = logging.getLogger("gpuscale_podrunner")


@dataclass
class RunnerConfig:
    """Settings of the runner: which pods it adopts and where it keeps their files."""

    state_dir: Path
    image_prefix: str = DEFAULT_IMAGE_PREFIX
    namespace: str | None = None
    python: str = sys.executable
    default_command: tuple[str, ...] = DEFAULT_COMMAND
    poll_interval_seconds: float = 0.5


@dataclass
class PodProcess:
    """One adopted pod and the local process that runs its container."""

    plan: LaunchPlan
    uid: str
    group: GroupKey
    process: subprocess.Popen
    log_file: IO[bytes]
    started_at: datetime
    pod: dict
    kill_deadline: float | None = None
    exit_code: int | None = None
    finished_at: datetime | None = None
    status_written: bool = False
    report_failures: int = 0

    @property
    def name(self) -> str:
        return f"{self.plan.namespace}/{self.plan.pod}"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_container_session() -> None:
    """Run in the child before exec: its own process group, and SIGKILL if the runner dies."""
    os.setsid()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class PodRunner:
    """Runs adopted pods as local processes until `stop` is set."""

    def __init__(self, core: client.CoreV1Api, watch_core: client.CoreV1Api, config: RunnerConfig,
                 allocate_port: Callable[[], int] = free_port) -> None:
        # Two clients: the watch thread streams on its own, the main thread makes every other call.
        self.core = core
        self.watch_core = watch_core
        self.config = config
        self.paths = HostPaths(config.state_dir)
        self.allocate_port = allocate_port
        self.events: queue.Queue[tuple[str, dict]] = queue.Queue()
        self.processes: dict[tuple[str, str], PodProcess] = {}
        # Pods whose process has ended and been reported, by (namespace, name) -> uid; their later
        # events are ignored so that a stale event never adopts a pod twice.
        self.finished: dict[tuple[str, str], str] = {}
        self.address_maps: dict[GroupKey, dict[str, str]] = {}
        self.fake_nodes: set[str] = set()
        self._nodes_refreshed_at = 0.0
        self.base_env = {
            "PATH": os.pathsep.join([os.path.dirname(config.python), os.environ.get("PATH", "/usr/bin:/bin")]),
            "LANG": "C.UTF-8",
            # Python buffers stdout in full when it is a file; unbuffered, the log file follows progress.
            "PYTHONUNBUFFERED": "1",
        }

    # --- The loop ---

    def run(self, stop: threading.Event) -> None:
        """Watch and run pods until `stop` is set, then stop every process and report it."""
        watcher = threading.Thread(target=self._watch_pods, args=(stop,), name="pod-watch", daemon=True)
        watcher.start()
        log.info("pod runner started: image prefix %r, namespace %s, state in %s",
                 self.config.image_prefix, self.config.namespace or "(all)", self.config.state_dir)
        while not stop.is_set():
            self._drain_events(timeout=self.config.poll_interval_seconds)
            self._check_processes()
        self.shutdown()

    def _drain_events(self, timeout: float) -> None:
        try:
            event_type, pod = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._handle_safely(event_type, pod)
            try:
                event_type, pod = self.events.get_nowait()
            except queue.Empty:
                return

    def _watch_pods(self, stop: threading.Event) -> None:
        """List, then watch, pods; on any error or expiry list again. Runs in its own thread."""
        namespace = self.config.namespace
        while not stop.is_set():
            try:
                if namespace:
                    response = self.watch_core.list_namespaced_pod(namespace, _preload_content=False)
                else:
                    response = self.watch_core.list_pod_for_all_namespaces(_preload_content=False)
                listing = json.loads(response.data)
                for pod in listing["items"]:
                    self.events.put(("LISTED", pod))
                watcher = watch.Watch()
                function = self.watch_core.list_namespaced_pod if namespace else self.watch_core.list_pod_for_all_namespaces
                arguments = (namespace,) if namespace else ()
                for event in watcher.stream(function, *arguments, resource_version=listing["metadata"]["resourceVersion"],
                                            timeout_seconds=WATCH_TIMEOUT_SECONDS):
                    if stop.is_set():
                        watcher.stop()
                        break
                    if event["type"] == "ERROR":
                        log.info("pod watch ended (%s); listing again", event["raw_object"].get("message"))
                        break
                    self.events.put((event["type"], event["raw_object"]))
            except Exception as error:  # noqa: BLE001 - the watch must outlive API outages
                if stop.is_set():
                    return
                log.warning("pod watch failed, retrying in 1 s: %s", error)
                stop.wait(1.0)

    def _handle_safely(self, event_type: str, pod: dict) -> None:
        name = f"{pod['metadata'].get('namespace')}/{pod['metadata'].get('name')}"
        try:
            self.handle_pod_event(event_type, pod)
        except ApiException as error:
            log.error("pod %s: API error %s %s: %s", name, error.status, error.reason, (error.body or "")[:300])
        except OSError as error:
            log.error("pod %s: %s while handling a %s event", name, error, event_type)
        except Exception:  # noqa: BLE001 - one bad pod must not stop the runner
            log.exception("pod %s: unexpected error while handling a %s event", name, event_type)

    # --- Pod events ---

    def handle_pod_event(self, event_type: str, pod: dict) -> None:
        metadata = pod["metadata"]
        key = (metadata["namespace"], metadata["name"])
        running = self.processes.get(key)

        if event_type == "DELETED":
            self._forget_group_pod(pod)
            self.finished.pop(key, None)
            if running is not None and running.exit_code is None:
                log.warning("pod %s was removed while its process ran; killing the process", running.name)
                self._kill(running)
            return
        if self.finished.get(key) == metadata["uid"]:
            return
        if running is not None and running.uid == metadata["uid"]:
            running.pod = pod
            if metadata.get("deletionTimestamp") and running.kill_deadline is None and running.exit_code is None:
                self._terminate(running, pod)
            return
        if FINALIZER in (metadata.get("finalizers") or []):
            self._report_lost(pod)
            return
        container = find_container(pod, self.config.image_prefix)
        if container is not None and self._should_adopt(pod, container):
            self._adopt(pod, container)

    def _should_adopt(self, pod: dict, container: Mapping[str, Any]) -> bool:
        status = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp") or status.get("phase") != "Running":
            return False
        for entry in status.get("containerStatuses") or []:
            if entry.get("name") == container["name"] and "terminated" in (entry.get("state") or {}):
                return False
        return self._is_fake_node((pod.get("spec") or {}).get("nodeName"))

    def _is_fake_node(self, node_name: str | None) -> bool:
        if not node_name:
            return False
        if node_name not in self.fake_nodes and time.monotonic() - self._nodes_refreshed_at > NODE_REFRESH_INTERVAL_SECONDS:
            self._nodes_refreshed_at = time.monotonic()
            nodes = json.loads(self.core.list_node(_preload_content=False).data)["items"]
            self.fake_nodes = {
                node["metadata"]["name"] for node in nodes
                if (node["metadata"].get("annotations") or {}).get(FAKE_NODE_ANNOTATION) == "fake"
            }
        return node_name in self.fake_nodes

    # --- Start ---

    def _adopt(self, pod: dict, container: Mapping[str, Any]) -> None:
        metadata = pod["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        started_at = _utc_now()

        # 1. Plan the launch; a pod that cannot run is reported as a start error.
        try:
            plan = self._plan(pod, container)
        except LaunchError as error:
            log.error("pod %s/%s cannot start: %s", namespace, name, error)
            self._write_status(pod, container["name"], START_ERROR_EXIT_CODE, START_ERROR_REASON, str(error),
                               started_at)
            self.finished[(namespace, name)] = metadata["uid"]
            return

        # 2. Hold the pod with the finalizer; a conflict means a newer event of the pod is on its way.
        finalizers = [*(metadata.get("finalizers") or []), FINALIZER]
        try:
            self.core.patch_namespaced_pod(
                name, namespace, {"metadata": {"finalizers": finalizers, "resourceVersion": metadata["resourceVersion"]}},
                _content_type="application/merge-patch+json")
        except ApiException as error:
            if error.status in (404, 409, 422):
                log.info("pod %s/%s not adopted (%s %s); waiting for its next event", namespace, name,
                         error.status, error.reason)
                return
            raise

        # 3. Start the process with fresh per-pod files.
        for folder in plan.folders:
            folder.mkdir(parents=True, exist_ok=True)
        plan.termination_log.write_bytes(b"")
        plan.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(plan.log_path, "wb")
        try:
            process = subprocess.Popen(
                plan.argv, env=plan.env, cwd=plan.cwd, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, preexec_fn=_start_container_session,
            )
        except OSError as error:
            log_file.close()
            message = f"failed to start {plan.argv[0]!r}: {error}"
            log.error("pod %s/%s: %s", namespace, name, message)
            self._write_status(pod, container["name"], START_ERROR_EXIT_CODE, START_ERROR_REASON, message, started_at)
            self._remove_finalizer(namespace, name)
            self.finished[(namespace, name)] = metadata["uid"]
            return
        self.processes[(namespace, name)] = PodProcess(
            plan=plan, uid=metadata["uid"], group=group_key(pod), process=process, log_file=log_file,
            started_at=started_at, pod=pod,
        )
        log.info("pod %s/%s started: pid %d, log %s, command %s", namespace, name, process.pid, plan.log_path,
                 " ".join(plan.argv))

    def _plan(self, pod: dict, container: Mapping[str, Any]) -> LaunchPlan:
        env_list = {item["name"]: item.get("value") for item in container.get("env") or [] if "name" in item}
        tf_config = parse_tf_config(env_list.get("TF_CONFIG"))
        key = group_key(pod)
        if tf_config is not None:
            # All workers of one (namespace, job, generation) share one map, allocated by the first.
            self.address_maps[key] = extend_address_map(
                self.address_maps.get(key, {}), cluster_addresses(tf_config), self.allocate_port)
        return build_launch_plan(
            pod, container, paths=self.paths, address_map=self.address_maps.get(key, {}),
            resolve_source=self._resolve_source, python=self.config.python,
            default_command=self.config.default_command, base_env=self.base_env,
        )

    def _resolve_source(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        try:
            if kind == "configMap":
                return dict(self.core.read_namespaced_config_map(name, namespace).data or {})
            secret = self.core.read_namespaced_secret(name, namespace)
            return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    # --- Stop ---

    def _terminate(self, running: PodProcess, pod: dict) -> None:
        grace = pod["metadata"].get("deletionGracePeriodSeconds")
        grace = running.plan.grace_period_seconds if grace is None else int(grace)
        running.kill_deadline = time.monotonic() + grace
        log.info("pod %s is being deleted: sending SIGTERM to pid %d, SIGKILL in %d s",
                 running.name, running.process.pid, grace)
        self._signal(running, signal.SIGTERM, group=False)

    def _kill(self, running: PodProcess) -> None:
        self._signal(running, signal.SIGKILL, group=True)

    @staticmethod
    def _signal(running: PodProcess, signum: int, group: bool) -> None:
        # SIGTERM goes to the main process only, as the kubelet sends it to PID 1 of the container.
        try:
            if group:
                os.killpg(running.process.pid, signum)
            else:
                running.process.send_signal(signum)
        except ProcessLookupError:
            pass

    # --- Exit ---

    def _check_processes(self) -> None:
        for key, running in list(self.processes.items()):
            if running.exit_code is None:
                returncode = running.process.poll()
                if returncode is None:
                    if running.kill_deadline is not None and time.monotonic() > running.kill_deadline:
                        log.warning("pod %s did not exit within its grace period; sending SIGKILL", running.name)
                        self._kill(running)
                        running.kill_deadline = float("inf")
                    continue
                self._collect_exit(running, returncode)
            try:
                self._report_exit(running)
            except Exception as error:  # noqa: BLE001 - API errors and connection failures are retried
                running.report_failures += 1
                if running.report_failures in (1, 10) or running.report_failures % 100 == 0:
                    log.error("pod %s: failed to report its exit (attempt %d, will retry): %s",
                              running.name, running.report_failures, _describe_error(error))
                continue
            del self.processes[key]
            self.finished[key] = running.uid

    def _collect_exit(self, running: PodProcess, returncode: int) -> None:
        running.exit_code = exit_code_from_returncode(returncode)
        running.finished_at = _utc_now()
        running.log_file.close()
        # A container's exit ends every process in it.
        self._kill(running)
        log.info("pod %s exited with %s after %.1f s", running.name, describe_exit(running.exit_code),
                 (running.finished_at - running.started_at).total_seconds())

    def _report_exit(self, running: PodProcess) -> None:
        """Write the exit to pod status (once), then release the pod. Raises ApiException to retry."""
        assert running.exit_code is not None and running.finished_at is not None
        if not running.status_written:
            message = termination_message(
                _read_bytes(running.plan.termination_log), running.exit_code,
                running.plan.termination_message_policy, _read_tail(running.plan.log_path, LOG_TAIL_READ_BYTES))
            self._write_status(running.pod, running.plan.container, running.exit_code,
                               terminated_reason(running.exit_code), message, running.started_at, running.finished_at)
            running.status_written = True
        self._remove_finalizer(running.plan.namespace, running.plan.pod)

    def _report_lost(self, pod: dict) -> None:
        """Fail a pod this runner adopted earlier but runs no process for (the runner restarted)."""
        metadata = pod["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        container = find_container(pod, self.config.image_prefix)
        if container is not None and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
            message = ("the dev pod runner restarted and no longer runs this pod's process, "
                       "so its exit status is unknown; the pod cannot continue")
            log.warning("pod %s/%s: %s; marking it Failed", namespace, name, message)
            self._write_status(pod, container["name"], LOST_EXIT_CODE, LOST_REASON, message, _utc_now())
        self._remove_finalizer(namespace, name)
        self.finished[(namespace, name)] = metadata["uid"]

    def _write_status(self, pod: dict, container_name: str, exit_code: int, reason: str, message: str,
                      started_at: datetime, finished_at: datetime | None = None) -> None:
        metadata = pod["metadata"]
        patch = build_exit_status(pod, container_name, exit_code=exit_code, reason=reason, message=message,
                                  started_at=started_at, finished_at=finished_at or _utc_now())
        try:
            self.core.patch_namespaced_pod_status(metadata["name"], metadata["namespace"], patch,
                                                  _content_type="application/merge-patch+json")
        except ApiException as error:
            if error.status != 404:
                raise

    def _remove_finalizer(self, namespace: str, name: str) -> None:
        """Remove this runner's finalizer; the JSON patch's test op rejects a stale index."""
        for _ in range(5):
            try:
                pod = json.loads(self.core.read_namespaced_pod(name, namespace, _preload_content=False).data)
            except ApiException as error:
                if error.status == 404:
                    return
                raise
            finalizers = pod["metadata"].get("finalizers") or []
            if FINALIZER not in finalizers:
                return
            index = finalizers.index(FINALIZER)
            patch = [{"op": "test", "path": f"/metadata/finalizers/{index}", "value": FINALIZER},
                     {"op": "remove", "path": f"/metadata/finalizers/{index}"}]
            try:
                self.core.patch_namespaced_pod(name, namespace, patch, _content_type="application/json-patch+json")
                return
            except ApiException as error:
                if error.status == 404:
                    return
                if error.status not in (409, 422):
                    raise
        raise ApiException(status=409, reason=f"finalizer of pod {namespace}/{name} kept changing")

    def _forget_group_pod(self, pod: dict) -> None:
        """Drop a group's address map once no pod of the group is left in the cache of this runner."""
        key = group_key(pod)
        if key not in self.address_maps:
            return
        name = pod["metadata"]["name"]
        if not any(running.group == key and running.plan.pod != name for running in self.processes.values()):
            self.address_maps.pop(key, None)

    # --- Shutdown ---

    def shutdown(self) -> None:
        """SIGTERM every process, wait up to each pod's grace period, then report what happened."""
        alive = [running for running in self.processes.values() if running.exit_code is None]
        if alive:
            log.info("stopping %d pod processes", len(alive))
        for running in alive:
            running.kill_deadline = time.monotonic() + running.plan.grace_period_seconds
            self._signal(running, signal.SIGTERM, group=False)
        while any(running.exit_code is None for running in self.processes.values()):
            self._check_processes()
            time.sleep(0.2)
        # Reporting is best effort here: the API server may already be gone.
        for running in list(self.processes.values()):
            try:
                self._report_exit(running)
            except Exception as error:  # noqa: BLE001 - shutdown must finish
                log.warning("pod %s: could not report its exit during shutdown: %s", running.name, error)
        self.processes.clear()
        log.info("pod runner stopped")


def _describe_error(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"API error {error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _read_tail(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - size))
            return file.read()
    except OSError:
        return b""
