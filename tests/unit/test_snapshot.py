"""Building the allocation policy's input from cluster objects, and budgets on the way back."""

from __future__ import annotations

from datetime import datetime, timedelta

from gpuscale.controller.allocation import CostLedger, _job_allocation
from gpuscale.scheduling.policy import allocate
from gpuscale.scheduling.snapshot import build_snapshot, selector_matches

NOW = datetime(2026, 12, 1, 12, 0, 0)


def node(name: str, gpus: int, product: str = "NVIDIA-A100-SXM4-80GB", unschedulable: bool = False) -> dict:
    return {"metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product}},
            "spec": {"unschedulable": unschedulable},
            "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}}}


def namespace(name: str, **labels) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}}}


def job(name: str, ns: str = "team-a", minimum: int = 1, maximum: int = 4, gpus: int = 1, **spec) -> dict:
    return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-12-01T11:00:00Z"},
            "spec": {"image": "trainer:1", "workers": {"min": minimum, "max": maximum}, "gpusPerWorker": gpus, **spec},
            "status": {"generation": 1}}


def pod(job_name: str, index: int, generation: int = 1, ns: str = "team-a", node_name: str = "n1",
        gpus: int = 1, deleting: bool = False, size: int = 2) -> dict:
    metadata = {"name": f"{job_name}-g{generation}-w{index}", "namespace": ns,
                "creationTimestamp": "2026-12-01T11:50:00Z",
                "labels": {"training.gpuscale.io/job-name": job_name, "training.gpuscale.io/generation": str(generation)},
                "annotations": {"training.gpuscale.io/num-workers": str(size)}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-01T11:59:00Z"
    return {"metadata": metadata, "spec": {"nodeName": node_name, "containers": [
        {"name": "trainer", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}, "status": {"phase": "Running"}}


def policy(name: str, ceiling: str | None = "10.00", selector: dict | None = None, price: str = "2.00") -> dict:
    spec = {"gpuPricing": {"defaultPrice": price}}
    if ceiling is not None:
        spec["ceilingPerHour"] = ceiling
    if selector is not None:
        spec["namespaceSelector"] = selector
    return {"metadata": {"name": name}, "spec": spec}


def test_pools_count_schedulable_gpus_by_product() -> None:
    nodes = [node("n1", 4), node("n2", 4), node("n3", 8, "NVIDIA-H100"), node("n4", 4, unschedulable=True)]

    snapshot = build_snapshot([], [], nodes, [namespace("team-a")], [policy("p")], NOW)

    capacity = {p.name: p.capacity_gpus for p in snapshot.pools}
    assert capacity == {"NVIDIA-A100-SXM4-80GB": 8, "NVIDIA-H100": 8}


def test_foreign_gpu_pods_are_not_free() -> None:
    foreign = pod("other", 0)
    foreign["metadata"]["labels"] = {}

    snapshot = build_snapshot([], [foreign], [node("n1", 4)], [namespace("team-a")], [], NOW)

    assert snapshot.pools[0].stopping_gpus == 1


def test_running_job_request_reads_pods() -> None:
    pods = [pod("a", 0), pod("a", 1), pod("a", 0, generation=0, deleting=True)]

    snapshot = build_snapshot([job("a")], pods, [node("n1", 8)], [namespace("team-a")], [policy("p")], NOW)

    request = snapshot.jobs[0]
    assert request.current_workers == 2
    assert request.stopping_gpus == 1
    assert request.seconds_since_rescale == 600
    assert request.price_class == "NVIDIA-A100-SXM4-80GB"
    assert snapshot.spend_now["team-a/a"] == 3 * 2.0


def test_ceiling_covers_selected_namespaces_only() -> None:
    jobs = [job("a", "team-a"), job("b", "team-b")]
    namespaces = [namespace("team-a", team="research"), namespace("team-b")]
    team_policy = policy("research", "4.00", {"matchLabels": {"team": "research"}})

    snapshot = build_snapshot(jobs, [], [node("n1", 8)], namespaces, [team_policy, policy("all", "20.00")], NOW)

    ceilings = {c.name: c.job_keys for c in snapshot.ceilings}
    assert ceilings["research"] == frozenset({"team-a/a"})
    assert ceilings["all"] == frozenset({"team-a/a", "team-b/b"})


def test_allocation_respects_every_ceiling() -> None:
    jobs = [job("a", "team-a", 1, 4), job("b", "team-b", 1, 4)]
    namespaces = [namespace("team-a", team="research"), namespace("team-b")]
    policies = [policy("research", "2.00", {"matchLabels": {"team": "research"}}), policy("all", "6.00")]
    snapshot = build_snapshot(jobs, [], [node("n1", 8)], namespaces, policies, NOW)

    result = allocate(snapshot.jobs, snapshot.pools, snapshot.ceilings, snapshot.settings)

    assert result.decisions["team-a/a"].target_workers == 1
    assert result.decisions["team-a/a"].target_workers + result.decisions["team-b/b"].target_workers <= 3


def test_cpu_only_job_runs_outside_policy() -> None:
    snapshot = build_snapshot([job("cpu", gpus=0, minimum=2, maximum=3)], [], [node("n1", 4)],
                              [namespace("team-a")], [], NOW)

    assert snapshot.jobs == []
    assert snapshot.cpu_only_jobs == ["team-a/cpu"]
    allocation = _job_allocation("team-a/cpu", job("cpu", gpus=0, minimum=2, maximum=3), snapshot, None,
                                 CostLedger(), NOW)
    assert allocation.workers == 2


def test_budget_exceeded_suspends_job() -> None:
    body = job("a", maxTotalCost="1.00")
    body["status"]["totalCost"] = "0.9900"
    pods = [pod("a", 0), pod("a", 1)]
    snapshot = build_snapshot([body], pods, [node("n1", 8)], [namespace("team-a")], [policy("p")], NOW)
    ledger = CostLedger()
    decision = allocate(snapshot.jobs, snapshot.pools, snapshot.ceilings, snapshot.settings).decisions["team-a/a"]

    first = _job_allocation("team-a/a", body, snapshot, decision, ledger, NOW)
    later = _job_allocation("team-a/a", body, snapshot, decision, ledger, NOW + timedelta(minutes=6))

    assert first.blocked is None
    assert first.cost_per_hour == "4.0000"
    assert later.blocked is not None
    assert later.blocked[:2] == ("Suspended", "BudgetExceeded")
    assert "raise spec.maxTotalCost" in later.blocked[2]


def test_label_selector_expressions() -> None:
    labels = {"team": "research", "tier": "gold"}

    assert selector_matches(None, labels)
    assert selector_matches({"matchExpressions": [{"key": "team", "operator": "In", "values": ["research"]}]}, labels)
    assert not selector_matches({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]}, labels)
    assert not selector_matches({"matchExpressions": [{"key": "owner", "operator": "Exists"}]}, labels)
    assert selector_matches({"matchExpressions": [{"key": "owner", "operator": "DoesNotExist"}]}, labels)


def test_worker_larger_than_every_node_is_blocked() -> None:
    body = job("big", gpus=5, minimum=1, maximum=1)
    snapshot = build_snapshot([body], [], [node("n1", 4), node("n2", 4)], [namespace("team-a")], [policy("p")], NOW)

    allocation = _job_allocation("team-a/big", body, snapshot, None, CostLedger(), NOW)

    assert snapshot.jobs == []
    assert allocation.workers == 0
    assert allocation.blocked[:2] == ("Queued", "WorkerLargerThanNodes")
    assert "the largest schedulable node has 4" in allocation.blocked[2]


def test_job_billed_at_governing_policy_price() -> None:
    namespaces = [namespace("team-a", team="research"), namespace("team-b")]
    policies = [policy("research", None, {"matchLabels": {"team": "research"}}, price="1.00"),
                policy("other", None, {"matchLabels": {"team": "other"}}, price="3.00")]
    pods = [pod("a", 0, ns="team-a", size=1), pod("b", 0, ns="team-b", size=1)]

    snapshot = build_snapshot([job("a", "team-a"), job("b", "team-b")], pods, [node("n1", 8)], namespaces,
                              policies, NOW)

    assert snapshot.spend_now["team-a/a"] == 1.0
    assert snapshot.spend_now["team-b/b"] == 3.0


def test_stopping_pods_of_finished_job_hold_gpus() -> None:
    done = job("done")
    done["status"]["phase"] = "Succeeded"
    pods = [pod("done", 0, deleting=True), pod("done", 1, deleting=True)]

    snapshot = build_snapshot([done], pods, [node("n1", 8)], [namespace("team-a")], [policy("p")], NOW)

    assert snapshot.pools[0].stopping_gpus == 2


def test_ceiling_below_minimum_named_in_wait() -> None:
    body = job("a", minimum=2, maximum=2)
    snapshot = build_snapshot([body], [], [node("n1", 8)], [namespace("team-a")], [policy("tight", "1.00")], NOW)
    decision = allocate(snapshot.jobs, snapshot.pools, snapshot.ceilings, snapshot.settings).decisions["team-a/a"]

    allocation = _job_allocation("team-a/a", body, snapshot, decision, CostLedger(), NOW)

    assert allocation.workers == 0
    assert allocation.waiting_reason == "PolicyCeilingBelowMinimum"
    assert "costs at least $4.00/h" in allocation.waiting[1]
    assert "CostPolicy 'tight'" in allocation.waiting[1]
