"""The operator on the real control plane, driven with kubectl and the files in manifests/examples/."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.kube import Kubectl, wait_until
from tests.e2e.operator_process import OperatorProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"

# Each invalid example and a phrase that the API server's rejection must contain.
REJECTIONS = {
    "negative-workers.yaml": "spec.workers.min",
    "zero-workers.yaml": "spec.workers.min",
    "min-greater-than-max.yaml": "workers.min must be less than or equal to workers.max",
    "fractional-gpus.yaml": "spec.gpusPerWorker",
    "negative-gpus.yaml": "spec.gpusPerWorker",
    "port-22.yaml": "spec.port",
    "port-70000.yaml": "spec.port",
    "misspelled-gpu-per-worker.yaml": 'unknown field "spec.gpuPerWorker"',
    "missing-image.yaml": "spec.image: Required value",
    "name-70-characters.yaml": "at most 40 characters",
    "name-not-dns-1035.yaml": "must be a DNS-1035 label",
    "costpolicy-negative-price.yaml": "is not an amount of US dollars",
    "costpolicy-non-number-ceiling.yaml": "is not an amount of US dollars",
}


def example(name: str, **spec_changes) -> dict:
    manifest = yaml.safe_load((EXAMPLES / name).read_text())
    manifest["spec"].update(spec_changes)
    return manifest


def job_status(kubectl: Kubectl, namespace: str, name: str = "three-workers") -> dict:
    return kubectl.get("trainingjob", name, namespace).get("status") or {}


def worker_pods(kubectl: Kubectl, namespace: str, name: str = "three-workers") -> list[dict]:
    pods = kubectl.get("pods", namespace=namespace, selector=f"training.gpuscale.io/job-name={name}")["items"]
    return sorted(pods, key=lambda p: p["metadata"]["name"])


def live_pods(kubectl: Kubectl, namespace: str, generation: int, name: str = "three-workers") -> list[dict]:
    return [p for p in worker_pods(kubectl, namespace, name)
            if not p["metadata"].get("deletionTimestamp")
            and p["metadata"]["labels"]["training.gpuscale.io/generation"] == str(generation)]


def wait_for_phase(kubectl: Kubectl, namespace: str, phase: str, name: str = "three-workers", timeout: float = 60) -> dict:
    return wait_until(lambda: (s := job_status(kubectl, namespace, name)).get("phase") == phase and s,
                      timeout=timeout, what=f"TrainingJob {name} to reach phase {phase}")


def exit_pod(kubectl: Kubectl, namespace: str, pod: str, code: int, message: str = "") -> None:
    kubectl.run("annotate", "pod", pod, "-n", namespace, f"kwok.gpuscale.io/exit-code={code}",
                f"kwok.gpuscale.io/termination-message={message}")


def condition(status: dict, type_: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == type_)


@pytest.mark.parametrize("file_name", sorted(REJECTIONS))
def test_invalid_manifest_rejected(kubectl: Kubectl, operator: OperatorProcess, namespace: str, file_name: str) -> None:
    result = kubectl.run("apply", "-n", namespace, "-f", str(EXAMPLES / "invalid" / file_name), check=False)

    assert result.returncode != 0
    assert REJECTIONS[file_name] in result.stderr
    assert operator.alive()


def test_update_to_min_above_max_rejected(kubectl: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    kubectl.apply(example("three-workers.yaml"), namespace)

    result = kubectl.run("apply", "-n", namespace, "-f", str(EXAMPLES / "invalid" / "update-min-greater-than-max.yaml"),
                         check=False)

    assert result.returncode != 0
    assert "workers.min must be less than or equal to workers.max" in result.stderr
    assert kubectl.get("trainingjob", "three-workers", namespace)["spec"]["workers"]["max"] == 3
    assert operator.alive()


def test_three_workers_start_with_tf_config(kubectl: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    kubectl.apply(example("three-workers.yaml"), namespace)

    status = wait_for_phase(kubectl, namespace, "Running")

    assert status["workers"] == 3
    assert status["generation"] == 1
    assert "waitingReason" not in status
    assert "queuePosition" not in status
    service = kubectl.get("service", "three-workers", namespace)
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    pods = worker_pods(kubectl, namespace)
    assert [p["metadata"]["name"] for p in pods] == [f"three-workers-g1-w{i}" for i in range(3)]
    assert all(service["metadata"]["creationTimestamp"] <= p["metadata"]["creationTimestamp"] for p in pods)
    expected_cluster = [f"three-workers-g1-w{i}.three-workers.{namespace}.svc:2222" for i in range(3)]
    for index, pod in enumerate(pods):
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        tf_config = json.loads(env["TF_CONFIG"])
        assert tf_config["cluster"]["worker"] == expected_cluster
        assert tf_config["task"] == {"type": "worker", "index": index}
        assert env["GPUSCALE_NUM_WORKERS"] == "3"
        assert pod["spec"]["hostname"] == pod["metadata"]["name"]
        assert pod["spec"]["subdomain"] == "three-workers"
        assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        owner = pod["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "TrainingJob"
        assert owner["controller"] is True


def test_chief_success_finishes_job(kubectl: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    kubectl.apply(example("three-workers.yaml"), namespace)
    wait_for_phase(kubectl, namespace, "Running")

    exit_pod(kubectl, namespace, "three-workers-g1-w2", 0)
    wait_until(lambda: job_status(kubectl, namespace)["workers"] == 2, what="worker 2 to finish")
    assert job_status(kubectl, namespace)["phase"] == "Running"

    exit_pod(kubectl, namespace, "three-workers-g1-w0", 0, '{"accuracy": 0.97, "steps": 120}')
    status = wait_for_phase(kubectl, namespace, "Succeeded")

    assert status["result"] == {"accuracy": 0.97, "steps": 120}
    assert condition(status, "Succeeded")["status"] == "True"
    wait_until(lambda: not worker_pods(kubectl, namespace), what="the worker pods to be removed")
    wait_until(lambda: not kubectl.exists("service", "three-workers", namespace), what="the Service to be removed")


def test_backoff_limit_counts_across_operator_restart(kubectl: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    kubectl.apply(example("three-workers.yaml", backoffLimit=2), namespace)
    wait_for_phase(kubectl, namespace, "Running")

    # 1. First failure: the whole group restarts as generation 2.
    exit_pod(kubectl, namespace, "three-workers-g1-w1", 137)
    wait_until(lambda: len(live_pods(kubectl, namespace, 2)) == 3, what="generation 2 to start")
    assert job_status(kubectl, namespace)["restarts"] == 1
    assert not live_pods(kubectl, namespace, 1)

    # 2. The operator restarts; the count survives in status and no pod is duplicated.
    operator.stop()
    operator.start()
    wait_for_phase(kubectl, namespace, "Running")
    time.sleep(3)  # the restarted operator's first events and allocation pass
    assert [p["metadata"]["name"] for p in worker_pods(kubectl, namespace)] == [
        f"three-workers-g2-w{i}" for i in range(3)], "the restart replaced the running group"
    assert job_status(kubectl, namespace)["restarts"] == 1

    # 3. Second failure: generation 3. Third failure: over backoffLimit=2, so the job fails.
    exit_pod(kubectl, namespace, "three-workers-g2-w0", 137)
    wait_until(lambda: len(live_pods(kubectl, namespace, 3)) == 3, what="generation 3 to start")
    wait_for_phase(kubectl, namespace, "Running")
    exit_pod(kubectl, namespace, "three-workers-g3-w2", 137)
    status = wait_for_phase(kubectl, namespace, "Failed")

    assert status["restarts"] == 3
    assert condition(status, "Failed")["reason"] == "BackoffLimitExceeded"
    wait_until(lambda: not worker_pods(kubectl, namespace), what="the worker pods to be removed")
    reasons = [e["reason"] for e in kubectl.events(namespace, "three-workers")]
    assert "WorkerFailed" in reasons
    assert "Failed" in reasons


def test_suspend_and_resume(kubectl: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    kubectl.apply(example("three-workers.yaml"), namespace)
    wait_for_phase(kubectl, namespace, "Running")

    kubectl.run("patch", "trainingjob", "three-workers", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    status = wait_for_phase(kubectl, namespace, "Suspended")
    wait_until(lambda: not worker_pods(kubectl, namespace), what="the worker pods to be removed")
    assert status["restarts"] == 0

    kubectl.run("patch", "trainingjob", "three-workers", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    status = wait_for_phase(kubectl, namespace, "Running")

    assert status["generation"] == 2
    assert status["restarts"] == 0
    assert len(live_pods(kubectl, namespace, 2)) == 3


def test_delete_while_operator_down(kubectl: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    kubectl.apply(example("three-workers.yaml"), namespace)
    wait_for_phase(kubectl, namespace, "Running")

    operator.stop()
    try:
        kubectl.run("delete", "trainingjob", "three-workers", "-n", namespace, "--wait=true", "--timeout=30s")
        wait_until(lambda: not worker_pods(kubectl, namespace), timeout=90,
                   what="the garbage collector to remove the worker pods")
        wait_until(lambda: not kubectl.exists("service", "three-workers", namespace), timeout=90,
                   what="the garbage collector to remove the Service")
    finally:
        operator.start()

    # Give the restarted operator a resync interval to (wrongly) recreate anything.
    time.sleep(12)
    assert not worker_pods(kubectl, namespace)
    assert not kubectl.exists("trainingjob", "three-workers", namespace)


def test_image_change_rolls_out_new_generation(kubectl: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    kubectl.apply(example("three-workers.yaml"), namespace)
    wait_for_phase(kubectl, namespace, "Running")

    kubectl.run("patch", "trainingjob", "three-workers", "-n", namespace, "--type=merge",
                "-p", '{"spec":{"image":"gpuscale/trainer:0.2.0"}}')

    wait_until(lambda: len(live_pods(kubectl, namespace, 2)) == 3, what="generation 2 to start")
    status = wait_for_phase(kubectl, namespace, "Running")
    assert status["restarts"] == 0
    images = {p["spec"]["containers"][0]["image"] for p in live_pods(kubectl, namespace, 2)}
    assert images == {"gpuscale/trainer:0.2.0"}
    assert "SpecChanged" in [e["reason"] for e in kubectl.events(namespace, "three-workers")]


def test_worker_larger_than_nodes_waits_with_reason(kubectl: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    kubectl.apply(example("three-workers.yaml", gpusPerWorker=5), namespace)

    status = wait_until(lambda: (s := job_status(kubectl, namespace)).get("waitingReason") == "WorkerLargerThanNodes" and s,
                        what="the job to report that no node fits a worker")

    assert status["phase"] == "Queued"
    assert "the largest schedulable node has 4" in condition(status, "Admitted")["message"]
    assert not worker_pods(kubectl, namespace)
