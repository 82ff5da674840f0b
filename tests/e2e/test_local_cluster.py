"""The local control plane behaves like a real cluster in the ways the operator depends on."""

from __future__ import annotations

import json
import os
import socket

import pytest

from gpuscale.cluster.launcher import ClusterConfig, FakeNodeSet, LocalCluster
from tests.e2e.kube import Kubectl, wait_until


def pod_manifest(name: str, gpus: int, **extra) -> dict:
    container = {"name": "main", "image": "busybox:1.36", "command": ["true"]}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    manifest = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [container], "restartPolicy": "Never"},
    }
    manifest.update(extra)
    return manifest


def pod_phase(kubectl: Kubectl, name: str, namespace: str) -> str:
    return kubectl.get("pod", name, namespace)["status"].get("phase", "")


def test_fake_nodes_ready_with_gpus(kubectl: Kubectl) -> None:
    nodes = kubectl.get("nodes")["items"]
    assert len(nodes) == 2
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert ready["Ready"] == "True", node["metadata"]["name"]
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"]


def test_gpu_pod_scheduled_and_running(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(pod_manifest("one-gpu", gpus=1), namespace)

    wait_until(lambda: pod_phase(kubectl, "one-gpu", namespace) == "Running", what="pod one-gpu Running")
    pod = kubectl.get("pod", "one-gpu", namespace)
    assert pod["spec"]["nodeName"].startswith("gpu-node")


def test_oversized_gpu_pod_stays_pending(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(pod_manifest("too-many-gpus", gpus=5), namespace)

    def shortage_event() -> dict | None:
        for event in kubectl.events(namespace, "too-many-gpus"):
            if event["reason"] == "FailedScheduling":
                return event
        return None

    event = wait_until(shortage_event, what="a FailedScheduling event for too-many-gpus")
    assert "Insufficient nvidia.com/gpu" in event["message"]
    assert pod_phase(kubectl, "too-many-gpus", namespace) == "Pending"


@pytest.mark.parametrize(("exit_code", "phase", "reason"), [(0, "Succeeded", "Completed"), (137, "Failed", "Error")])
def test_pod_exit_code_from_annotation(kubectl: Kubectl, namespace: str, exit_code: int, phase: str, reason: str) -> None:
    name = f"exits-{exit_code}"
    kubectl.apply(pod_manifest(name, gpus=0), namespace)
    wait_until(lambda: pod_phase(kubectl, name, namespace) == "Running", what=f"pod {name} Running")

    kubectl.run("annotate", "pod", name, "-n", namespace, f"kwok.gpuscale.io/exit-code={exit_code}",
                f"kwok.gpuscale.io/termination-message=finished with {exit_code}")

    wait_until(lambda: pod_phase(kubectl, name, namespace) == phase, what=f"pod {name} {phase}")
    terminated = kubectl.get("pod", name, namespace)["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == exit_code
    assert terminated["reason"] == reason
    assert terminated["message"] == f"finished with {exit_code}"


def test_garbage_collector_removes_dependents(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}, namespace)
    owner_uid = kubectl.get("configmap", "owner", namespace)["metadata"]["uid"]
    dependent = pod_manifest("dependent", gpus=0)
    dependent["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid, "controller": True},
    ]
    kubectl.apply(dependent, namespace)

    kubectl.run("delete", "configmap", "owner", "-n", namespace)

    wait_until(lambda: not kubectl.exists("pod", "dependent", namespace), timeout=90,
               what="the garbage collector to delete pod dependent")


def test_restricted_pod_security_rejects_root_pod(kubectl: Kubectl, namespace: str) -> None:
    kubectl.run("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")

    result = kubectl.apply(pod_manifest("runs-as-root", gpus=0), namespace, check=False)

    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_start_stop_twice_leaves_nothing(tmp_path) -> None:
    for attempt in range(2):
        config = ClusterConfig(node_sets=[FakeNodeSet(count=1)], kubeconfig=tmp_path / f"kubeconfig-{attempt}")
        cluster = LocalCluster(config)
        cluster.start()
        pids = [component.process.pid for component in cluster.components]
        port = cluster.api_port
        state_dir = cluster.state_dir
        nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        assert len(nodes) == 1

        cluster.stop()

        for pid in pids:
            assert not os.path.exists(f"/proc/{pid}"), f"process {pid} is still running"
        assert _port_is_free(port), f"apiserver port {port} is still bound"
        assert not state_dir.exists()
