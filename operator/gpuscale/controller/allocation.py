"""The allocation loop: one pass decides every job's worker count from the queue and the ceilings.

Each pass lists the cluster, builds the policy's input (`scheduling.snapshot`), calls the pure
policy (`scheduling.policy.allocate`), accounts cost, and returns one `Allocation` per job for the
reconciler. It also returns the status of every CostPolicy. Only one operator instance may run it:
the Deployment runs one replica, and kopf's peering keeps a second instance paused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from gpuscale.api.models import COST_POLICY_PLURAL, GROUP, VERSION
from gpuscale.api.parsing import InvalidObjectError, parse_training_job_spec
from gpuscale.controller.kube import KubeApi
from gpuscale.controller.reconcile import Allocation
from gpuscale.planning.names import LABEL_JOB_NAME
from gpuscale.scheduling.policy import JobDecision, WaitReason, allocate
from gpuscale.scheduling.snapshot import Snapshot, build_snapshot

log = logging.getLogger("gpuscale.allocation")

WAIT_REASONS = {
    WaitReason.CAPACITY: "InsufficientGPUs",
    WaitReason.CEILING: "CostCeiling",
    WaitReason.PRIORITY: "HigherPriorityWaiting",
    WaitReason.OWN_CEILING: "CostCeilingBelowMinimum",
}


@dataclass
class CostLedger:
    """Dollars spent per job, accumulated between passes from the spend rate observed at each pass.

    NOTE: spend while the operator is down is not counted; the total resumes from status.totalCost.
    """

    totals: dict[str, float] = field(default_factory=dict)
    last_seen: dict[str, datetime] = field(default_factory=dict)

    def add(self, key: str, spend_per_hour: float, now: datetime, recorded_total: float) -> float:
        total = max(self.totals.get(key, 0.0), recorded_total)
        previous = self.last_seen.get(key)
        if previous is not None:
            total += spend_per_hour * max((now - previous).total_seconds(), 0.0) / 3600.0
        self.totals[key] = total
        self.last_seen[key] = now
        return total


@dataclass
class PassResult:
    """The outcome of one allocation pass."""

    allocations: dict[str, Allocation]
    decisions: dict[str, JobDecision]
    policy_status: dict[str, dict]
    interval_seconds: int
    jobs: dict[str, dict]


def _dollars(value: float) -> str:
    return f"{value:.4f}"


def _list_cluster(api: KubeApi) -> tuple[list[dict], list[dict], list[dict], list[dict], list[dict]]:
    jobs = api.list_jobs()
    pods = api.list_all_pods(selector="")
    nodes = api.list_nodes()
    namespaces = api._decode(api.core.list_namespace(_preload_content=False))["items"]
    policies = api._decode(api.custom.list_cluster_custom_object(
        GROUP, VERSION, COST_POLICY_PLURAL, _preload_content=False))["items"]
    return jobs, pods, nodes, namespaces, policies


def run_pass(api: KubeApi, ledger: CostLedger, now: datetime) -> PassResult:
    """List the cluster, decide every job's workers, and account the cost since the last pass."""
    jobs, pods, nodes, namespaces, policies = _list_cluster(api)
    # Unbound pods of other workloads hold no GPU yet; the operator's own pods always count.
    pods = [p for p in pods if LABEL_JOB_NAME in (p["metadata"].get("labels") or {}) or "nodeName" in p["spec"]]
    snapshot = build_snapshot(jobs, pods, nodes, namespaces, policies, now)
    decision_set = allocate(snapshot.jobs, snapshot.pools, snapshot.ceilings, snapshot.settings)
    bodies = {f"{j['metadata']['namespace']}/{j['metadata']['name']}": j for j in jobs}

    allocations: dict[str, Allocation] = {}
    for key, body in bodies.items():
        allocations[key] = _job_allocation(key, body, snapshot, decision_set.decisions.get(key), ledger, now)
    _log_pass(snapshot, decision_set.decisions)
    return PassResult(allocations, decision_set.decisions, _policy_status(snapshot, decision_set.decisions),
                      snapshot.interval_seconds, bodies)


def _job_allocation(key: str, body: dict, snapshot: Snapshot, decision: JobDecision | None,
                    ledger: CostLedger, now: datetime) -> Allocation:
    status = body.get("status") or {}
    spend = snapshot.spend_now.get(key, 0.0)
    recorded = float(status.get("totalCost") or 0)
    total = ledger.add(key, spend, now, recorded)
    costs = {"cost_per_hour": _dollars(spend), "total_cost": _dollars(total)}

    # A job over its budget is suspended, keeping its checkpoint, until the budget is raised.
    try:
        spec = parse_training_job_spec(body.get("spec") or {}, body["metadata"]["name"])
    except InvalidObjectError:
        return Allocation(workers=0, **costs)
    if spec.max_total_cost is not None and total >= float(spec.max_total_cost):
        message = (f"spent ${total:.4f} of maxTotalCost ${float(spec.max_total_cost):.4f}; "
                   "raise spec.maxTotalCost to resume from the checkpoint")
        return Allocation(workers=0, blocked=("Suspended", "BudgetExceeded", message),
                          waiting_reason="BudgetExceeded", **costs)

    if key in snapshot.oversized_jobs:
        return Allocation(workers=0, blocked=("Queued", "WorkerLargerThanNodes", snapshot.oversized_jobs[key]),
                          waiting_reason="WorkerLargerThanNodes", **costs)
    if key in snapshot.cpu_only_jobs:
        return Allocation(workers=spec.workers.min, **costs)
    if decision is None:
        return Allocation(workers=0, **costs)
    if decision.wait is not None:
        reason = WAIT_REASONS.get(decision.wait.reason, decision.wait.reason.value)
        message = f"queue position {decision.wait.position}: {decision.wait.message}"
        never_fits = _ceiling_below_minimum(key, decision, snapshot)
        if never_fits is not None:
            reason, message = "PolicyCeilingBelowMinimum", f"queue position {decision.wait.position}: {never_fits}"
        if decision.wait.reason == WaitReason.OWN_CEILING:
            return Allocation(workers=0, blocked=("Queued", reason, decision.wait.message), waiting_reason=reason,
                              queue_position=decision.wait.position, **costs)
        return Allocation(workers=0, waiting=(reason, message), waiting_reason=reason,
                          queue_position=decision.wait.position, **costs)
    return Allocation(workers=decision.target_workers, **costs)


def _ceiling_below_minimum(key: str, decision: JobDecision, snapshot: Snapshot) -> str | None:
    """Explain a wait on a CostPolicy ceiling that is lower than the job's minimum could ever cost."""
    if decision.wait is None or decision.wait.reason != WaitReason.CEILING:
        return None
    request = next((r for r in snapshot.jobs if r.key == key), None)
    ceiling = next((c for c in snapshot.ceilings if c.name == decision.wait.ceiling), None)
    if request is None or ceiling is None or not snapshot.pools:
        return None
    cheapest = min(p.price_per_gpu_hour for p in snapshot.pools)
    minimum_cost = request.min_workers * request.gpus_per_worker * cheapest
    if minimum_cost <= ceiling.limit_per_hour:
        return None
    return (f"its minimum of {request.min_workers} workers costs at least ${minimum_cost:.2f}/h, above the "
            f"${ceiling.limit_per_hour:.2f}/h ceiling of CostPolicy {ceiling.name!r}; raise that ceiling or lower "
            "spec.workers.min")


def _policy_status(snapshot: Snapshot, decisions: dict[str, JobDecision]) -> dict[str, dict]:
    statuses = {}
    requests = {r.key: r for r in snapshot.jobs}
    for view in snapshot.policies:
        keys = [k for k in snapshot.spend_now if k.split("/", 1)[0] in view.namespaces]
        waiting = [k for k in keys if k in decisions and decisions[k].target_workers == 0]
        admitted = [k for k in keys if k in decisions and decisions[k].target_workers > 0]
        ceiling = f"${view.ceiling_per_hour:.2f}/h" if view.ceiling_per_hour is not None else "no ceiling"
        statuses[view.name] = {
            "spendPerHour": _dollars(sum(snapshot.spend_now[k] for k in keys)),
            "gpusInUse": sum(snapshot.gpus_now.get(k, 0) for k in keys),
            "queuedJobs": len(waiting),
            "queuedGpus": sum(requests[k].min_workers * requests[k].gpus_per_worker for k in waiting),
            "admittedJobs": len(admitted),
            "conditions": [{"type": "Valid", "status": "True", "reason": "Parsed",
                            "message": f"governs {len(keys)} jobs under {ceiling}"}],
        }
    for name, message in snapshot.invalid_policies.items():
        statuses[name] = {"conditions": [{"type": "Valid", "status": "False", "reason": "InvalidSpec",
                                          "message": message[:1024]}]}
    return statuses


def _log_pass(snapshot: Snapshot, decisions: dict[str, JobDecision]) -> None:
    changes = [d for d in decisions.values() if d.change is not None]
    if not changes:
        return
    capacity = ", ".join(f"{p.name}: {p.capacity_gpus} GPUs at ${p.price_per_gpu_hour:.2f}" for p in snapshot.pools)
    ceilings = ", ".join(f"{c.name}: ${c.limit_per_hour:.2f}/h" for c in snapshot.ceilings) or "none"
    waiting = sum(1 for d in decisions.values() if d.target_workers == 0)
    log.info("allocation: %d changes; %d jobs, %d waiting; pools %s; ceilings %s",
             len(changes), len(decisions), waiting, capacity, ceilings)
