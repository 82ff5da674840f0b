"""Turn cluster objects (as plain dicts) into the allocation policy's input.

Pure: the allocation loop in the controller lists TrainingJobs, pods, nodes, namespaces and
CostPolicies, and this module does the rest, so the translation is unit-tested without a cluster.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from gpuscale.api.parsing import InvalidObjectError, parse_cost_policy_spec, parse_training_job_spec
from gpuscale.planning.names import ANNOTATION_NUM_WORKERS, LABEL_GENERATION, LABEL_JOB_NAME
from gpuscale.scheduling.policy import Ceiling, GpuPool, JobRequest, PolicySettings

GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_POOL = "default"
FINISHED_PHASES = ("Succeeded", "Failed")


@dataclass
class PolicyView:
    """A CostPolicy reduced to what the allocation needs."""

    name: str
    ceiling_per_hour: float | None
    namespaces: frozenset[str]
    price_label: str
    prices: dict[str, float]
    default_price: float
    interval_seconds: int
    stabilization_window_seconds: int
    restart_cost_seconds: int


@dataclass
class Snapshot:
    """The policy's input plus what the controller needs to act on the result."""

    jobs: list[JobRequest]
    pools: list[GpuPool]
    ceilings: list[Ceiling]
    settings: PolicySettings
    policies: list[PolicyView]
    # Dollars per hour that each job spends now: GPUs of all its pods, pending and stopping included.
    spend_now: dict[str, float] = field(default_factory=dict)
    gpus_now: dict[str, int] = field(default_factory=dict)
    invalid_policies: dict[str, str] = field(default_factory=dict)
    interval_seconds: int = 30
    # Jobs with gpusPerWorker 0: they run at their minimum, outside the policy.
    cpu_only_jobs: list[str] = field(default_factory=list)
    # Jobs whose single worker needs more GPUs than any node has, with the message saying so.
    oversized_jobs: dict[str, str] = field(default_factory=dict)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def selector_matches(selector: dict | None, labels: dict[str, str]) -> bool:
    """Return True when a Kubernetes LabelSelector (matchLabels, matchExpressions) selects `labels`."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def pod_gpus(pod: dict) -> int:
    """Return the GPUs a pod requests (limits, as the device plugin counts them)."""
    total = 0
    for container in pod["spec"].get("containers", []):
        resources = container.get("resources") or {}
        value = (resources.get("limits") or {}).get(GPU_RESOURCE) or (resources.get("requests") or {}).get(GPU_RESOURCE)
        if value:
            total += int(value)
    return total


def view_policies(policies: list[dict], namespaces: list[dict]) -> tuple[list[PolicyView], dict[str, str]]:
    """Parse the CostPolicies; return the valid ones and an error message for each invalid one."""
    views, invalid = [], {}
    for body in sorted(policies, key=lambda p: p["metadata"]["name"]):
        name = body["metadata"]["name"]
        try:
            spec = parse_cost_policy_spec(body.get("spec") or {}, name)
        except InvalidObjectError as error:
            invalid[name] = str(error)
            continue
        selector = body.get("spec", {}).get("namespaceSelector")
        selected = frozenset(
            ns["metadata"]["name"] for ns in namespaces
            if selector_matches(selector, ns["metadata"].get("labels") or {})
        )
        pricing = spec.gpu_pricing
        views.append(PolicyView(
            name=name,
            ceiling_per_hour=float(spec.ceiling_per_hour) if spec.ceiling_per_hour is not None else None,
            namespaces=selected,
            price_label=pricing.node_label,
            prices={k: float(v) for k, v in (pricing.prices or {}).items()},
            default_price=float(pricing.default_price),
            interval_seconds=spec.rescaling.scheduling_interval_seconds,
            stabilization_window_seconds=spec.rescaling.stabilization_window_seconds,
            restart_cost_seconds=spec.rescaling.restart_cost_seconds,
        ))
    return views, invalid


def node_pool(node: dict, policies: list[PolicyView]) -> str:
    """Name the price class of a node: its value of the first policy's price label."""
    label = policies[0].price_label if policies else "nvidia.com/gpu.product"
    return (node["metadata"].get("labels") or {}).get(label) or DEFAULT_POOL


def pool_price(pool: str, policies: list[PolicyView]) -> float:
    """Return the price of a GPU-hour in a class.

    NOTE: the policy takes one price per class, so when several policies price a class differently
    the highest price is used for every ceiling, which may keep a job out that a cheaper policy
    would admit. Spend in status uses the prices of the policies that govern the job.
    """
    if not policies:
        return 0.0
    return max(p.prices.get(pool, p.default_price) for p in policies)


def build_snapshot(jobs: list[dict], pods: list[dict], nodes: list[dict], namespaces: list[dict],
                   policies: list[dict], now: datetime) -> Snapshot:
    """Build the allocation input from the objects of the cluster."""
    views, invalid = view_policies(policies, namespaces)

    # 1. Pools: allocatable GPUs per price class on schedulable nodes, less GPUs of foreign pods.
    node_class = {}
    node_gpus: dict[str, int] = {}
    capacity: dict[str, int] = defaultdict(int)
    for node in nodes:
        gpus = int((node.get("status", {}).get("allocatable") or {}).get(GPU_RESOURCE, 0) or 0)
        if gpus <= 0 or node.get("spec", {}).get("unschedulable"):
            continue
        pool = node_pool(node, views)
        node_class[node["metadata"]["name"]] = pool
        node_gpus[node["metadata"]["name"]] = gpus
        capacity[pool] += gpus
    # Pods of finished or deleted jobs may still be stopping: they count as foreign GPUs below.
    job_keys = {f"{j['metadata']['namespace']}/{j['metadata']['name']}" for j in jobs
                if not j["metadata"].get("deletionTimestamp")
                and (j.get("status") or {}).get("phase") not in FINISHED_PHASES}
    pods_by_job: dict[str, list[dict]] = defaultdict(list)
    stopping_foreign: dict[str, int] = defaultdict(int)
    for pod in pods:
        if pod.get("status", {}).get("phase") in FINISHED_PHASES:
            continue
        labels = pod["metadata"].get("labels") or {}
        key = f"{pod['metadata']['namespace']}/{labels.get(LABEL_JOB_NAME)}"
        if LABEL_JOB_NAME in labels and key in job_keys:
            pods_by_job[key].append(pod)
            continue
        pool = node_class.get(pod["spec"].get("nodeName") or "")
        if pool is not None:
            # GPUs of other workloads, and of pods whose TrainingJob is gone, are not free.
            stopping_foreign[pool] += pod_gpus(pod)
    pools = [GpuPool(name, pool_price(name, views), capacity[name], stopping_gpus=min(stopping_foreign[name], capacity[name]))
             for name in sorted(capacity)]
    if not pools:
        pools = [GpuPool(DEFAULT_POOL, pool_price(DEFAULT_POOL, views), 0)]
    first_pool = min(pools, key=lambda p: (p.price_per_gpu_hour, p.name)).name

    # 2. Jobs: every TrainingJob that may hold or want GPUs.
    requests, spend_now, gpus_now, cpu_only, too_large = [], {}, {}, [], {}
    largest_node_gpus = max(node_gpus.values(), default=0)
    for body in jobs:
        metadata = body["metadata"]
        key = f"{metadata['namespace']}/{metadata['name']}"
        status = body.get("status") or {}
        if metadata.get("deletionTimestamp") or status.get("phase") in FINISHED_PHASES:
            continue
        try:
            spec = parse_training_job_spec(body.get("spec") or {}, metadata["name"])
        except InvalidObjectError:
            continue
        request, held = _job_request(key, spec, status, pods_by_job[key], node_class, first_pool, metadata, now,
                                     {p.name for p in pools})
        gpus_now[key] = held
        # A job is billed at the prices of the policies that select its namespace, when any do.
        governing = [v for v in views if metadata["namespace"] in v.namespaces] or views
        spend_now[key] = held * pool_price(request.price_class or first_pool, governing)
        if spec.suspend:
            continue
        if spec.gpus_per_worker > largest_node_gpus:
            # The scheduler places each worker pod on one node, so a worker larger than every node
            # never runs. Admitting it would reserve (and bill) GPUs that no pod can use.
            too_large[key] = (f"each worker needs {spec.gpus_per_worker} {GPU_RESOURCE}, but the largest "
                              f"schedulable node has {largest_node_gpus}; lower spec.gpusPerWorker or add "
                              "larger nodes")
            continue
        if spec.gpus_per_worker == 0:
            # A CPU-only job uses no GPU and costs nothing under a GPU price, so the policy has
            # nothing to decide: it runs at its minimum.
            cpu_only.append(key)
            continue
        requests.append(request)

    # 3. Ceilings: one per CostPolicy with a ceiling, over the jobs in the namespaces it selects.
    ceilings = []
    for view in views:
        if view.ceiling_per_hour is None:
            continue
        keys = frozenset(r.key for r in requests if r.key.split("/", 1)[0] in view.namespaces)
        # Suspended jobs still pay for pods that are stopping; they are not in the request.
        committed = sum(spend for key, spend in spend_now.items()
                        if key.split("/", 1)[0] in view.namespaces and key not in keys)
        ceilings.append(Ceiling(view.name, view.ceiling_per_hour, keys, committed_per_hour=committed))

    settings = PolicySettings(
        stabilisation_window_s=float(max((v.stabilization_window_seconds for v in views), default=300)),
        restart_cost_s=float(max((v.restart_cost_seconds for v in views), default=120)),
    )
    interval = min((v.interval_seconds for v in views), default=30)
    return Snapshot(requests, pools, ceilings, settings, views, spend_now, gpus_now, invalid, interval, cpu_only,
                    too_large)


def _job_request(key, spec, status, pods, node_class, first_pool, metadata, now, pool_names):
    generation = status.get("generation", 0)
    current = [p for p in pods if not p["metadata"].get("deletionTimestamp")
               and p["metadata"].get("labels", {}).get(LABEL_GENERATION) == str(generation)]
    stopping = [p for p in pods if p not in current]
    current_workers = 0
    if current:
        current_workers = int(current[0]["metadata"].get("annotations", {}).get(ANNOTATION_NUM_WORKERS, len(current)))
    classes = [node_class[p["spec"]["nodeName"]] for p in pods if p["spec"].get("nodeName") in node_class]
    if classes:
        price_class = classes[0]
    elif pods:
        price_class = first_pool
    else:
        price_class = None
    if price_class is not None and price_class not in pool_names:
        price_class = first_pool
    started = [parse_time(p["metadata"]["creationTimestamp"]) for p in current]
    since_rescale = (now - min(started)).total_seconds() if started else None
    held = sum(pod_gpus(p) for p in pods)
    request = JobRequest(
        key=key,
        min_workers=spec.workers.min,
        max_workers=spec.workers.max,
        gpus_per_worker=spec.gpus_per_worker,
        priority=spec.priority,
        submitted_at=parse_time(metadata["creationTimestamp"]).timestamp(),
        current_workers=current_workers,
        price_class=price_class,
        seconds_since_rescale=since_rescale,
        stopping_gpus=sum(pod_gpus(p) for p in stopping),
        cost_ceiling_per_hour=float(spec.cost_ceiling_per_hour) if spec.cost_ceiling_per_hour is not None else None,
    )
    return request, held
