"""Queue- and cost-aware elastic scheduling on the real control plane: 8 fake GPUs, 1 GPU per worker."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.kube import Kubectl, wait_until
from tests.e2e.operator_process import OperatorProcess

PRICE = 1.0  # US dollars per GPU-hour on the fake A100 nodes
INTERVAL = 2  # seconds between allocation passes
WINDOW = 20  # stabilisation window in seconds


def cost_policy(namespace: str, ceiling: str) -> dict:
    return {
        "apiVersion": "training.gpuscale.io/v1alpha1",
        "kind": "CostPolicy",
        "metadata": {"name": f"e2e-{namespace}"[:63]},
        "spec": {
            "ceilingPerHour": ceiling,
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "gpuPricing": {"nodeLabel": "nvidia.com/gpu.product", "defaultPrice": f"{PRICE:.2f}"},
            "rescaling": {"schedulingIntervalSeconds": INTERVAL, "stabilizationWindowSeconds": WINDOW,
                          "restartCostSeconds": 1},
        },
    }


def elastic_job(name: str, minimum: int, maximum: int) -> dict:
    return {
        "apiVersion": "training.gpuscale.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"image": "gpuscale/trainer:0.1.0", "workers": {"min": minimum, "max": maximum}, "gpusPerWorker": 1},
    }


def status(kubectl: Kubectl, namespace: str, name: str) -> dict:
    return kubectl.get("trainingjob", name, namespace).get("status") or {}


def running_at(kubectl: Kubectl, namespace: str, name: str, predicate) -> dict:
    """Wait until the job is Running with a worker count that satisfies predicate."""
    def check():
        current = status(kubectl, namespace, name)
        return current if current.get("phase") == "Running" and predicate(current.get("workers", 0)) else None
    return wait_until(check, timeout=90, what=f"TrainingJob {name} Running at the expected size")


def live_pods(kubectl: Kubectl, namespace: str, name: str) -> list[dict]:
    pods = kubectl.get("pods", namespace=namespace, selector=f"training.gpuscale.io/job-name={name}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def assert_group_consistent(kubectl: Kubectl, namespace: str, name: str) -> None:
    """Every live pod belongs to one generation and carries a TF_CONFIG for that group's size."""
    pods = live_pods(kubectl, namespace, name)
    generations = {p["metadata"]["labels"]["training.gpuscale.io/generation"] for p in pods}
    assert len(generations) == 1, f"{name} mixes generations {generations}"
    for pod in pods:
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert len(json.loads(env["TF_CONFIG"])["cluster"]["worker"]) == len(pods)
        assert env["GPUSCALE_NUM_WORKERS"] == str(len(pods))


def spend(kubectl: Kubectl, namespace: str, names: list[str]) -> float:
    return sum(float(status(kubectl, namespace, n).get("costPerHour") or 0) for n in names)


@pytest.fixture
def policy(kubectl: Kubectl, namespace: str):
    manifest = cost_policy(namespace, "5.00")
    kubectl.apply(manifest)
    yield manifest
    kubectl.run("delete", "costpolicy", manifest["metadata"]["name"], "--ignore-not-found")


def test_elastic_scheduling_under_ceiling(kubectl: Kubectl, operator: OperatorProcess, namespace: str, policy: dict) -> None:
    # 1. Job A alone grows to its maximum of 4 workers ($4/h under a $5/h ceiling).
    kubectl.apply(elastic_job("job-a", 1, 4), namespace)
    running_at(kubectl, namespace, "job-a", lambda n: n == 4)
    assert_group_consistent(kubectl, namespace, "job-a")

    # 2. Job B (min 2) arrives: A shrinks so that B starts, and spend stays under $5/h.
    time.sleep(WINDOW)  # A's stabilisation window after its last rescale
    kubectl.apply(elastic_job("job-b", 2, 4), namespace)
    running_at(kubectl, namespace, "job-b", lambda n: n >= 2)
    a = running_at(kubectl, namespace, "job-a", lambda n: n < 4)
    assert a["generation"] >= 2
    assert_group_consistent(kubectl, namespace, "job-a")
    assert_group_consistent(kubectl, namespace, "job-b")
    assert spend(kubectl, namespace, ["job-a", "job-b"]) <= 5.0

    # 3. Job C (min 3) cannot fit under the ceiling: it waits with a queue position and a reason.
    kubectl.apply(elastic_job("job-c", 3, 3), namespace)
    c = wait_until(lambda: (s := status(kubectl, namespace, "job-c")).get("queuePosition") and s,
                   what="job-c to get a queue position")
    assert c["phase"] == "Queued"
    assert c["queuePosition"] == 1
    assert c["waitingReason"] in ("CostCeiling", "InsufficientGPUs", "HigherPriorityWaiting")

    # 4. Lowering the ceiling to $4/h brings spend under it within a few intervals.
    kubectl.apply(cost_policy(namespace, "4.00"))
    wait_until(lambda: spend(kubectl, namespace, ["job-a", "job-b", "job-c"]) <= 4.0, timeout=6 * INTERVAL + 10,
               what="spend to drop under the new $4/h ceiling")
    policy_status = wait_until(lambda: kubectl.get("costpolicy", policy["metadata"]["name"]).get("status"),
                               what="the CostPolicy status")
    assert float(policy_status["spendPerHour"]) <= 4.0

    # 5. Deleting B frees money: C starts, and A keeps running.
    kubectl.run("delete", "trainingjob", "job-b", "-n", namespace)
    running_at(kubectl, namespace, "job-c", lambda n: n == 3)
    running_at(kubectl, namespace, "job-a", lambda n: n >= 1)
    assert spend(kubectl, namespace, ["job-a", "job-c"]) <= 4.0
    assert_group_consistent(kubectl, namespace, "job-c")


def test_oscillating_demand_causes_no_rescale(kubectl: Kubectl, operator: OperatorProcess, namespace: str, policy: dict) -> None:
    kubectl.apply(elastic_job("job-a", 1, 4), namespace)
    before = running_at(kubectl, namespace, "job-a", lambda n: n == 4)

    # A waiting job that comes and goes within A's stabilisation window must not make A rescale.
    for _ in range(3):
        kubectl.apply(elastic_job("job-d", 2, 2), namespace)
        time.sleep(INTERVAL)
        kubectl.run("delete", "trainingjob", "job-d", "-n", namespace, "--wait=true")
        time.sleep(INTERVAL)

    after = status(kubectl, namespace, "job-a")
    assert after["generation"] == before["generation"]
    assert after["workers"] == 4
