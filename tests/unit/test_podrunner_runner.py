"""The dev pod runner's event handling against an in-memory API, with real local processes."""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from kubernetes.client.rest import ApiException

from gpuscale_podrunner.runner import FINALIZER, PodRunner, RunnerConfig

FAKE_NODE = {"metadata": {"name": "gpu-node-0", "annotations": {"kwok.x-k8s.io/node": "fake"}}}
REAL_NODE = {"metadata": {"name": "kind-control-plane"}}


class FakeCore:
    """The CoreV1Api calls the runner makes, on an in-memory pod store."""

    def __init__(self, pods: list[dict]) -> None:
        self.pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
        self.status_patches: list[dict] = []

    def list_node(self, _preload_content: bool = True):
        return SimpleNamespace(data=json.dumps({"items": [FAKE_NODE, REAL_NODE]}))

    def read_namespaced_pod(self, name: str, namespace: str, _preload_content: bool = True):
        if (namespace, name) not in self.pods:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(data=json.dumps(self.pods[(namespace, name)]))

    def patch_namespaced_pod(self, name: str, namespace: str, body, _content_type: str):
        metadata = self.pods[(namespace, name)]["metadata"]
        if isinstance(body, list):
            for operation in body:
                index = int(operation["path"].rsplit("/", 1)[1])
                if operation["op"] == "test":
                    assert metadata["finalizers"][index] == operation["value"]
                else:
                    del metadata["finalizers"][index]
        else:
            metadata["finalizers"] = body["metadata"]["finalizers"]

    def patch_namespaced_pod_status(self, name: str, namespace: str, body: dict, _content_type: str):
        self.status_patches.append(body)
        self.pods[(namespace, name)]["status"] = body["status"]


def trainer_pod(name: str, script: str, node: str = "gpu-node-0") -> dict:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "1",
                     "labels": {"training.gpuscale.io/job-name": "job", "training.gpuscale.io/generation": "1"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "trainer", "image": "gpuscale/trainer:0.1.0",
                "command": ["python", "-c", script],
                "env": [
                    {"name": "TF_CONFIG", "value": json.dumps({"cluster": {"worker": ["job-g1-w0.job.ns.svc:2222"]},
                                                               "task": {"type": "worker", "index": 0}})},
                    {"name": "GPUSCALE_TERMINATION_LOG", "value": "/dev/termination-log"},
                ],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }],
        },
        "status": {"phase": "Running", "containerStatuses": [{"name": "trainer", "state": {"running": {}}}]},
    }


@pytest.fixture
def make_runner(tmp_path: Path):
    def build(pods: list[dict]) -> tuple[PodRunner, FakeCore]:
        core = FakeCore(pods)
        config = RunnerConfig(state_dir=tmp_path, python=sys.executable)
        return PodRunner(core, core, config, allocate_port=lambda: 45678), core
    return build


def run_until_reported(runner: PodRunner, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while runner.processes and time.monotonic() < deadline:
        runner._check_processes()
        time.sleep(0.05)
    assert not runner.processes, "the process did not exit and get reported in time"


def terminated(core: FakeCore, name: str) -> dict:
    return core.pods[("ns", name)]["status"]["containerStatuses"][0]["state"]["terminated"]


SUCCESS_SCRIPT = (
    "import json, os; "
    "address = json.loads(os.environ['TF_CONFIG'])['cluster']['worker'][0]; "
    "open(os.environ['GPUSCALE_TERMINATION_LOG'], 'w').write(json.dumps({'address': address}))"
)


def test_runner_reports_success(make_runner) -> None:
    runner, core = make_runner([trainer_pod("job-g1-w0", SUCCESS_SCRIPT)])

    runner.handle_pod_event("ADDED", copy.deepcopy(core.pods[("ns", "job-g1-w0")]))
    assert core.pods[("ns", "job-g1-w0")]["metadata"]["finalizers"] == [FINALIZER]
    run_until_reported(runner)

    pod = core.pods[("ns", "job-g1-w0")]
    assert pod["status"]["phase"] == "Succeeded"
    assert json.loads(terminated(core, "job-g1-w0")["message"]) == {"address": "127.0.0.1:45678"}
    assert pod["metadata"]["finalizers"] == []


def test_runner_falls_back_to_log(make_runner) -> None:
    script = "import sys; print('bad input: no dataset'); sys.exit(2)"
    runner, core = make_runner([trainer_pod("job-g1-w0", script)])

    runner.handle_pod_event("ADDED", copy.deepcopy(core.pods[("ns", "job-g1-w0")]))
    run_until_reported(runner)

    state = terminated(core, "job-g1-w0")
    assert core.pods[("ns", "job-g1-w0")]["status"]["phase"] == "Failed"
    assert state["exitCode"] == 2
    assert state["reason"] == "Error"
    assert "bad input: no dataset" in state["message"]


def test_runner_sigterm_on_deletion(make_runner) -> None:
    runner, core = make_runner([trainer_pod("job-g1-w0", "import time; time.sleep(60)")])
    runner.handle_pod_event("ADDED", copy.deepcopy(core.pods[("ns", "job-g1-w0")]))

    deleting = copy.deepcopy(core.pods[("ns", "job-g1-w0")])
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    deleting["metadata"]["deletionGracePeriodSeconds"] = 5
    runner.handle_pod_event("MODIFIED", deleting)
    run_until_reported(runner, timeout=10)

    assert terminated(core, "job-g1-w0")["exitCode"] == 143
    assert core.pods[("ns", "job-g1-w0")]["metadata"]["finalizers"] == []


def test_runner_ignores_real_node(make_runner) -> None:
    runner, core = make_runner([trainer_pod("job-g1-w0", "pass", node="kind-control-plane")])

    runner.handle_pod_event("ADDED", copy.deepcopy(core.pods[("ns", "job-g1-w0")]))

    assert not runner.processes
    assert "finalizers" not in core.pods[("ns", "job-g1-w0")]["metadata"]


def test_runner_fails_lost_pod(make_runner) -> None:
    pod = trainer_pod("job-g1-w0", "pass")
    pod["metadata"]["finalizers"] = [FINALIZER]
    runner, core = make_runner([pod])

    runner.handle_pod_event("LISTED", copy.deepcopy(pod))

    state = terminated(core, "job-g1-w0")
    assert state["exitCode"] == 137
    assert state["reason"] == "ContainerStatusUnknown"
    assert core.pods[("ns", "job-g1-w0")]["status"]["phase"] == "Failed"
    assert core.pods[("ns", "job-g1-w0")]["metadata"]["finalizers"] == []


def test_runner_reports_start_error(make_runner) -> None:
    pod = trainer_pod("job-g1-w0", "pass")
    pod["spec"]["containers"][0]["command"] = ["/nonexistent/trainer"]
    runner, core = make_runner([pod])

    runner.handle_pod_event("ADDED", copy.deepcopy(pod))

    state = terminated(core, "job-g1-w0")
    assert state["exitCode"] == 128
    assert state["reason"] == "StartError"
    assert "/nonexistent/trainer" in state["message"]
    assert core.pods[("ns", "job-g1-w0")]["metadata"]["finalizers"] == []


def test_runner_survives_bad_pod(make_runner) -> None:
    runner, core = make_runner([])

    runner._handle_safely("ADDED", {"metadata": {"name": "broken", "namespace": "ns"}})

    assert not runner.processes
