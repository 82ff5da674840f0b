"""Queue- and cost-aware allocation of workers to elastic training jobs.

`allocate` takes a snapshot of the jobs, the GPU pools and the cost ceilings and returns the
target worker count of every job. It is a pure function of its input, so the operator's
allocation loop and the simulator run the same decisions. docs/scheduling.md explains the
reasoning; the rules it enforces are:

- no ceiling and no pool capacity is ever exceeded, counting GPUs held by stopping pods;
- a job starts only at its full minimum (no partial gangs), in priority order and then in
  submission order; a job that does not fit is skipped and later jobs of the same priority may
  start (best-effort FIFO), but no job starts while a job of higher priority waits for the same
  resources;
- running jobs are shrunk toward their minimum to make room for waiting jobs, and a running job
  is stopped only for a job of higher priority or when capacity or a ceiling drops;
- a job that shrinks restarts anyway, so it is refilled worker by worker in competition with
  the growth of other jobs: a new arrival that gains more per GPU keeps what the shrinking job
  gave up;
- when nothing waits, idle GPUs and idle money go to the jobs whose scaling model gains most
  from one more worker, and only while that worker adds at least `min_step_efficiency` of an
  average worker's throughput;
- a change costs a checkpoint-restart: a job inside its stabilisation window keeps its size
  (unless capacity, a ceiling or a higher-priority job forces it down), and a running job grows
  only when the estimated time saved exceeds `gain_margin` restarts.

Simplification: all workers of one job run in a single price class (mixing GPU models in one
synchronous data-parallel job would let the slowest set the pace). A running job stays in its
class; a starting job goes to the cheapest class where its minimum fits. GPUs are counted per
class, not per node: packing workers onto nodes is left to the Kubernetes scheduler, so a job
whose workers need several GPUs each may still find its class fragmented across nodes.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

# Slack for comparing dollar amounts, so that a sum of prices equal to a ceiling still fits.
_MONEY_EPSILON = 1e-9


class WaitReason(str, Enum):
    """Reason a job stays queued."""

    CAPACITY = "Capacity"
    """Not enough free GPUs for the job's minimum, even after shrinking running jobs."""
    CEILING = "Ceiling"
    """A cost ceiling that governs the job has no room for its minimum."""
    PRIORITY = "Priority"
    """A job of higher priority waits for the same resources, or took them."""
    OWN_CEILING = "OwnCeiling"
    """The job's minimum alone costs more than its own ceiling, so it never starts."""


class ChangeReason(str, Enum):
    """Reason a job's worker count changes."""

    ADMIT = "Admit"
    GROW = "Grow"
    SHRINK = "Shrink"
    PREEMPT = "Preempt"


@dataclass(frozen=True)
class ScalingModel:
    """Estimated throughput of a job against its worker count, relative to one worker.

    `speedups[i]` is the throughput with i + 1 workers divided by the throughput with one
    worker, so `speedups[0]` is 1.0. Beyond the end of the table the speed-up stays flat. For a
    job that trains on a fixed global batch the ratio of goodputs equals the ratio of
    throughputs, so either may be given.
    """

    speedups: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.speedups:
            raise ValueError("ScalingModel.speedups is empty; give at least the 1-worker entry 1.0")
        for workers, value in enumerate(self.speedups, start=1):
            if not value > 0 or math.isinf(value):
                raise ValueError(
                    f"ScalingModel.speedups has {value!r} for {workers} workers; "
                    "each speed-up must be a finite number above 0"
                )

    def speedup(self, workers: int) -> float:
        """Return the speed-up at `workers` workers (0.0 for none)."""
        if workers <= 0:
            return 0.0
        return self.speedups[min(workers, len(self.speedups)) - 1]

    @classmethod
    def amdahl(cls, parallel_fraction: float, max_workers: int) -> ScalingModel:
        """Build Amdahl's-law speed-ups: 1 / ((1 - p) + p / n) for n = 1 .. max_workers."""
        if not 0.0 <= parallel_fraction <= 1.0:
            raise ValueError(
                f"parallel_fraction {parallel_fraction!r} is outside [0, 1]; "
                "use the share of a step that parallelises, such as 0.95"
            )
        serial = 1.0 - parallel_fraction
        return cls(tuple(1.0 / (serial + parallel_fraction / n) for n in range(1, max_workers + 1)))


@dataclass(frozen=True)
class JobRequest:
    """One TrainingJob as input to the policy, waiting or running."""

    key: str
    """Unique id, such as "namespace/name"."""
    min_workers: int
    max_workers: int
    gpus_per_worker: int = 1
    priority: int = 0
    """Higher runs first."""
    submitted_at: float = 0.0
    """Submission time in seconds on any clock shared by all jobs; earlier runs first."""
    current_workers: int = 0
    """Workers of the current generation (0 when queued or suspended)."""
    price_class: str | None = None
    """Pool of the current workers or stopping pods; required when either is non-zero."""
    seconds_since_rescale: float | None = None
    """Seconds since the job last started or changed size; None when it never did."""
    stopping_gpus: int = 0
    """GPUs still held by the job's terminating pods. The operator must start a new
    generation's pods only after these are gone, so the job holds at most the larger of the
    two amounts at any moment."""
    scaling: ScalingModel | None = None
    """Speed-up per worker count; None uses Amdahl's law with the settings' parallel fraction."""
    expected_remaining_s: float | None = None
    """Estimated run time left at the current size (at `min_workers` when not running); None
    uses the settings' horizon."""
    cost_ceiling_per_hour: float | None = None
    """The job's own limit in dollars per hour; None for no limit."""


@dataclass(frozen=True)
class GpuPool:
    """GPUs of one price class (for example one GPU model)."""

    name: str
    price_per_gpu_hour: float
    capacity_gpus: int
    """Allocatable GPUs that training jobs may use, including those they use now."""
    stopping_gpus: int = 0
    """GPUs held by terminating pods of jobs that are not in the request (deleted or done)."""


@dataclass(frozen=True)
class Ceiling:
    """A dollars-per-hour limit over a set of jobs, such as one CostPolicy."""

    name: str
    limit_per_hour: float
    job_keys: frozenset[str]
    committed_per_hour: float = 0.0
    """Spend inside this ceiling that no listed job accounts for, such as stopping pods of
    deleted jobs."""


@dataclass(frozen=True)
class PolicySettings:
    """Tuning of the policy; the defaults suit jobs that run for hours."""

    stabilisation_window_s: float = 300.0
    """A job keeps its size for this long after a start or rescale unless it is forced down."""
    restart_cost_s: float = 30.0
    """Expected seconds of no progress that one checkpoint-restart costs a job."""
    horizon_s: float = 3600.0
    """Run time assumed left for a job without `expected_remaining_s`."""
    gain_margin: float = 2.0
    """A running job grows only when the time saved exceeds this many restart costs."""
    default_parallel_fraction: float = 0.95
    """Amdahl parallel fraction for jobs without a scaling model."""
    min_step_efficiency: float = 0.4
    """Growth adds a worker only when it raises throughput by at least this share of what an
    average worker contributes at the job's size, so idle GPUs are not spent on steps with
    little return (they cost the same as productive ones)."""


@dataclass(frozen=True)
class Change:
    """A change of one job's worker count, with the numbers behind it."""

    reason: ChangeReason
    from_workers: int
    to_workers: int
    message: str


@dataclass(frozen=True)
class WaitInfo:
    """Why a job stays queued and where it stands."""

    position: int
    """1-based place among the waiting jobs, in priority then submission order."""
    reason: WaitReason
    message: str
    ceiling: str | None = None
    """Name of the ceiling that blocks the job, for CEILING waits."""


@dataclass(frozen=True)
class JobDecision:
    """The policy's output for one job."""

    key: str
    target_workers: int
    """Workers the job should run; 0 keeps it queued or stops it."""
    price_class: str | None
    cost_per_hour: float
    """Price of the target workers, excluding GPUs of pods that are still stopping."""
    change: Change | None = None
    """Set when the target differs from the current workers."""
    wait: WaitInfo | None = None
    """Set when the target is 0."""


@dataclass(frozen=True)
class Allocation:
    """The policy's output for one decision."""

    decisions: dict[str, JobDecision]
    gpus_used: dict[str, int]
    """GPUs per pool after the decision, stopping pods included."""
    spend_per_hour: dict[str, float]
    """Dollars per hour per ceiling after the decision, stopping pods included."""
    queue: tuple[str, ...]
    """Keys of the waiting jobs in queue order."""

    @property
    def targets(self) -> dict[str, int]:
        """Target workers per job key."""
        return {key: decision.target_workers for key, decision in self.decisions.items()}


@dataclass
class _JobState:
    """Mutable working state of one job during `allocate`."""

    request: JobRequest
    ceilings: tuple[int, ...]
    scaling: ScalingModel
    horizon_s: float
    pool: str | None
    target: int = 0
    cap: int = 0
    pinned: bool = False
    wait_reason: WaitReason | None = None
    wait_message: str = ""
    wait_ceiling: str | None = None
    shrink_cause: str = ""

    @property
    def running(self) -> bool:
        return self.request.current_workers > 0


@dataclass
class _Blocker:
    """A waiting job that holds back lower-priority jobs."""

    priority: int
    ceilings: frozenset[int] | None
    """Ceilings it waits for; None when it waits for GPUs."""


@dataclass
class _Ledger:
    """Free GPUs per pool and free dollars per ceiling, updated as workers are placed."""

    pools: dict[str, GpuPool]
    free_gpus: dict[str, int]
    budgets: list[float]
    ceiling_names: list[str]

    def extra_gpus(self, job: _JobState, pool: str, workers: int) -> int:
        """Return GPUs that `workers` workers in `pool` need beyond the job's stopping pods."""
        credit = job.request.stopping_gpus if pool == job.request.price_class else 0
        return max(0, workers * job.request.gpus_per_worker - credit)

    def check(self, job: _JobState, pool: str, from_workers: int, to_workers: int) -> str | None:
        """Return None when growing the job from one size to another fits, else the blocker.

        The blocker is "capacity" or the index of the full ceiling as a string prefixed by
        "ceiling:".
        """
        gpus = self.extra_gpus(job, pool, to_workers) - self.extra_gpus(job, pool, from_workers)
        if gpus <= 0:
            return None
        if gpus > self.free_gpus[pool]:
            return "capacity"
        dollars = gpus * self.pools[pool].price_per_gpu_hour
        for index in job.ceilings:
            if dollars > self.budgets[index] + _MONEY_EPSILON:
                return f"ceiling:{index}"
        return None

    def move(self, job: _JobState, pool: str, from_workers: int, to_workers: int) -> None:
        """Book the GPUs and dollars of changing the job from one size to another."""
        gpus = self.extra_gpus(job, pool, to_workers) - self.extra_gpus(job, pool, from_workers)
        self.free_gpus[pool] -= gpus
        dollars = gpus * self.pools[pool].price_per_gpu_hour
        for index in job.ceilings:
            self.budgets[index] -= dollars


def allocate(
    jobs: Sequence[JobRequest],
    pools: Sequence[GpuPool],
    ceilings: Sequence[Ceiling] = (),
    settings: PolicySettings | None = None,
) -> Allocation:
    """Decide the target worker count of every job.

    Raises ValueError on inconsistent input (duplicate keys, a minimum above the maximum, a
    running job without a known pool, negative prices or limits).
    """
    settings = settings or PolicySettings()
    _validate(jobs, pools, ceilings)
    ledger = _open_ledger(jobs, pools, ceilings)
    states = _build_states(jobs, pools, ceilings, ledger, settings)
    ordered = sorted(states, key=_queue_order)

    # Phase 1: walk the queue once, keeping running jobs at their floor and starting waiting
    # jobs at their minimum; a job that no longer fits is stopped.
    admitted = _place_floors(ordered, ledger, settings)

    # Phase 2: give shrunk running jobs back as many workers as the room left allows.
    _restore_running(ordered, ledger, admitted)

    # Phase 3: refill jobs that shrink anyway and, when nothing waits, spread idle GPUs and
    # money, both by marginal gain per GPU.
    growth_allowed = not any(_blocks_growth(job, pools) for job in ordered)
    _grow(ordered, ledger, settings, growth_allowed)

    return _build_allocation(ordered, ledger, ceilings)


def _validate(jobs: Sequence[JobRequest], pools: Sequence[GpuPool], ceilings: Sequence[Ceiling]) -> None:
    pool_names = set()
    for pool in pools:
        if pool.name in pool_names:
            raise ValueError(f"GPU pool {pool.name!r} is listed twice; merge its capacity into one entry")
        pool_names.add(pool.name)
        if not pool.price_per_gpu_hour >= 0 or math.isinf(pool.price_per_gpu_hour):
            raise ValueError(
                f"GPU pool {pool.name!r} has price {pool.price_per_gpu_hour!r}; use a finite price >= 0"
            )
        if pool.capacity_gpus < 0 or pool.stopping_gpus < 0:
            raise ValueError(f"GPU pool {pool.name!r} has a negative GPU count; counts must be >= 0")
    for ceiling in ceilings:
        if not ceiling.limit_per_hour >= 0 or ceiling.committed_per_hour < 0:
            raise ValueError(
                f"ceiling {ceiling.name!r} has limit {ceiling.limit_per_hour!r} and committed "
                f"{ceiling.committed_per_hour!r}; both must be numbers >= 0"
            )
    keys = set()
    for job in jobs:
        if job.key in keys:
            raise ValueError(f"job key {job.key!r} is listed twice; keys must be unique")
        keys.add(job.key)
        if not 1 <= job.min_workers <= job.max_workers:
            raise ValueError(
                f"job {job.key!r} has min_workers {job.min_workers} and max_workers "
                f"{job.max_workers}; need 1 <= min_workers <= max_workers"
            )
        if job.gpus_per_worker < 1 or job.current_workers < 0 or job.stopping_gpus < 0:
            raise ValueError(
                f"job {job.key!r} has gpus_per_worker {job.gpus_per_worker}, current_workers "
                f"{job.current_workers}, stopping_gpus {job.stopping_gpus}; need >= 1, >= 0, >= 0"
            )
        holds_gpus = job.current_workers > 0 or job.stopping_gpus > 0
        if holds_gpus and job.price_class not in pool_names:
            raise ValueError(
                f"job {job.key!r} holds GPUs in pool {job.price_class!r}, which is not among the "
                f"pools {sorted(pool_names)}; pass the pool its pods run in"
            )
        if job.cost_ceiling_per_hour is not None and not job.cost_ceiling_per_hour >= 0:
            raise ValueError(
                f"job {job.key!r} has cost_ceiling_per_hour {job.cost_ceiling_per_hour!r}; "
                "use a number >= 0 or None for no limit"
            )


def _open_ledger(jobs: Sequence[JobRequest], pools: Sequence[GpuPool], ceilings: Sequence[Ceiling]) -> _Ledger:
    """Start from all capacity and money, less what stopping pods still hold."""
    by_name = {pool.name: pool for pool in pools}
    free_gpus = {pool.name: pool.capacity_gpus - pool.stopping_gpus for pool in pools}
    budgets = [ceiling.limit_per_hour - ceiling.committed_per_hour for ceiling in ceilings]
    for job in jobs:
        if job.stopping_gpus == 0:
            continue
        free_gpus[job.price_class] -= job.stopping_gpus
        dollars = job.stopping_gpus * by_name[job.price_class].price_per_gpu_hour
        for index, ceiling in enumerate(ceilings):
            if job.key in ceiling.job_keys:
                budgets[index] -= dollars
    return _Ledger(by_name, free_gpus, budgets, [ceiling.name for ceiling in ceilings])


def _build_states(
    jobs: Sequence[JobRequest],
    pools: Sequence[GpuPool],
    ceilings: Sequence[Ceiling],
    ledger: _Ledger,
    settings: PolicySettings,
) -> list[_JobState]:
    ceilings_of: dict[str, list[int]] = {}
    for index, ceiling in enumerate(ceilings):
        for key in ceiling.job_keys:
            ceilings_of.setdefault(key, []).append(index)
    default_models: dict[int, ScalingModel] = {}

    states = []
    for job in jobs:
        scaling = job.scaling
        if scaling is None:
            scaling = default_models.get(job.max_workers)
            if scaling is None:
                scaling = ScalingModel.amdahl(settings.default_parallel_fraction, job.max_workers)
                default_models[job.max_workers] = scaling
        horizon = job.expected_remaining_s if job.expected_remaining_s is not None else settings.horizon_s
        pool = job.price_class if job.current_workers > 0 or job.stopping_gpus > 0 else None
        states.append(
            _JobState(
                request=job,
                ceilings=tuple(ceilings_of.get(job.key, ())),
                scaling=scaling,
                horizon_s=max(0.0, horizon),
                pool=pool,
            )
        )
    return states


def _queue_order(job: _JobState) -> tuple:
    """Priority first; within a priority running jobs keep their place, then submission order."""
    request = job.request
    return (-request.priority, 0 if job.running else 1, request.submitted_at, request.key)


def _own_cap(request: JobRequest, price: float) -> int:
    """Return the most workers the job's own ceiling pays for in a pool of this price."""
    if request.cost_ceiling_per_hour is None or price <= 0:
        return request.max_workers
    affordable = math.floor(request.cost_ceiling_per_hour / (price * request.gpus_per_worker) + _MONEY_EPSILON)
    return min(request.max_workers, affordable)


def _place_floors(ordered: list[_JobState], ledger: _Ledger, settings: PolicySettings) -> list[_JobState]:
    """Place every running job at its floor and start waiting jobs; return the started ones."""
    pools_by_price = sorted(ledger.pools.values(), key=lambda pool: (pool.price_per_gpu_hour, pool.name))
    blockers: list[_Blocker] = []
    admitted: list[_JobState] = []
    placed_priorities: list[int] = []

    for job in ordered:
        request = job.request
        if job.running:
            _place_running(job, ledger, settings, placed_priorities)
            if job.target > 0:
                placed_priorities.append(request.priority)
            continue

        cheapest = pools_by_price[0].price_per_gpu_hour if pools_by_price else 0.0
        if _own_cap(request, cheapest) < request.min_workers:
            _set_wait(job, WaitReason.OWN_CEILING, _own_ceiling_message(request, cheapest))
            continue

        blocker = _find_blocker(job, blockers)
        if blocker is not None:
            _set_wait(job, WaitReason.PRIORITY, f"a job of higher priority {blocker.priority} waits for the same resources")
            continue

        if _admit(job, pools_by_price, ledger):
            admitted.append(job)
            placed_priorities.append(request.priority)
            continue

        _record_wait_for_room(job, pools_by_price, ledger, placed_priorities)
        failed_ceilings = None if job.wait_reason is not WaitReason.CEILING else frozenset(job.ceilings)
        blockers.append(_Blocker(request.priority, failed_ceilings))
    return admitted


def _place_running(job: _JobState, ledger: _Ledger, settings: PolicySettings, placed_priorities: list[int]) -> None:
    request = job.request
    pool = ledger.pools[job.pool]
    job.cap = _own_cap(request, pool.price_per_gpu_hour)
    if job.cap < request.min_workers:
        _set_wait(job, WaitReason.OWN_CEILING, _own_ceiling_message(request, pool.price_per_gpu_hour))
        job.shrink_cause = "its own cost ceiling no longer pays for its minimum"
        return

    in_window = (
        request.seconds_since_rescale is not None
        and request.seconds_since_rescale < settings.stabilisation_window_s
    )
    job.pinned = (in_window or request.stopping_gpus > 0) and request.min_workers <= request.current_workers <= job.cap

    floors = [request.current_workers, request.min_workers] if job.pinned else [request.min_workers]
    blocked_by = None
    for floor in floors:
        blocked_by = ledger.check(job, job.pool, 0, floor)
        if blocked_by is None:
            ledger.move(job, job.pool, 0, floor)
            job.target = floor
            if floor != request.current_workers:
                job.pinned = False
            return
        job.pinned = False
        job.shrink_cause = _cause_text(blocked_by, ledger)

    # Not even the minimum fits any more: stop the job and queue it again.
    if any(priority > request.priority for priority in placed_priorities):
        _set_wait(job, WaitReason.PRIORITY, "stopped for jobs of higher priority")
    elif blocked_by == "capacity":
        _set_wait(job, WaitReason.CAPACITY, f"pool {job.pool!r} has too few GPUs left for its minimum")
    else:
        _set_ceiling_wait(job, blocked_by, ledger)


def _admit(job: _JobState, pools_by_price: list[GpuPool], ledger: _Ledger) -> bool:
    """Start the job at its minimum in the cheapest pool where it fits."""
    request = job.request
    for pool in pools_by_price:
        cap = _own_cap(request, pool.price_per_gpu_hour)
        if cap < request.min_workers:
            continue
        if ledger.check(job, pool.name, 0, request.min_workers) is None:
            job.pool = pool.name
            job.cap = cap
            job.target = request.min_workers
            ledger.move(job, pool.name, 0, request.min_workers)
            return True
    return False


def _record_wait_for_room(
    job: _JobState, pools_by_price: list[GpuPool], ledger: _Ledger, placed_priorities: list[int]
) -> None:
    """Set why a job that was considered did not start: GPUs, a ceiling or priority."""
    request = job.request
    needed = request.min_workers * request.gpus_per_worker
    ceiling_blocker = None
    for pool in pools_by_price:
        if _own_cap(request, pool.price_per_gpu_hour) < request.min_workers:
            continue
        blocked_by = ledger.check(job, pool.name, 0, request.min_workers)
        if blocked_by is not None and blocked_by.startswith("ceiling:"):
            ceiling_blocker = blocked_by
            break
    if ceiling_blocker is not None:
        _set_ceiling_wait(job, ceiling_blocker, ledger)
        return
    free = ", ".join(f"{name} {gpus}" for name, gpus in sorted(ledger.free_gpus.items()))
    if any(priority > request.priority for priority in placed_priorities):
        _set_wait(job, WaitReason.PRIORITY, f"needs {needed} GPUs; jobs of higher priority hold them (free: {free})")
    else:
        _set_wait(job, WaitReason.CAPACITY, f"needs {needed} GPUs at its minimum; free after shrinking running jobs: {free}")


def _find_blocker(job: _JobState, blockers: list[_Blocker]) -> _Blocker | None:
    for blocker in blockers:
        if blocker.priority <= job.request.priority:
            continue
        if blocker.ceilings is None or blocker.ceilings & set(job.ceilings):
            return blocker
    return None


def _set_wait(job: _JobState, reason: WaitReason, message: str) -> None:
    job.target = 0
    job.wait_reason = reason
    job.wait_message = message


def _set_ceiling_wait(job: _JobState, blocked_by: str, ledger: _Ledger) -> None:
    index = int(blocked_by.split(":", 1)[1])
    name = ledger.ceiling_names[index]
    _set_wait(job, WaitReason.CEILING, f"ceiling {name!r} has ${max(0.0, ledger.budgets[index]):.2f}/h left")
    job.wait_ceiling = name


def _own_ceiling_message(request: JobRequest, price: float) -> str:
    minimum_cost = request.min_workers * request.gpus_per_worker * price
    return (
        f"its minimum of {request.min_workers} workers costs ${minimum_cost:.2f}/h, above its own "
        f"ceiling of ${request.cost_ceiling_per_hour:.2f}/h; raise the ceiling or lower min_workers"
    )


def _cause_text(blocked_by: str | None, ledger: _Ledger) -> str:
    if blocked_by is None:
        return ""
    if blocked_by == "capacity":
        return "its pool has fewer free GPUs"
    index = int(blocked_by.split(":", 1)[1])
    return f"ceiling {ledger.ceiling_names[index]!r} has less room"


def _restore_running(ordered: list[_JobState], ledger: _Ledger, admitted: list[_JobState]) -> None:
    """Give running jobs back their current size where room is left, whole jobs first.

    Jobs whose whole restore is worth most per GPU are restored first, so the shrinks that
    remain fall on few jobs (each shrink is a restart). The growth phase refills the jobs that
    restart anyway, worker by worker.
    """
    candidates = []
    for job in ordered:
        if not job.running or job.target == 0 or job.pinned:
            continue
        goal = min(job.request.current_workers, job.cap)
        if job.target < goal:
            candidates.append((job, goal))

    def block_value(item: tuple[_JobState, int]) -> float:
        job, goal = item
        gpus = (goal - job.target) * job.request.gpus_per_worker
        return _completion_gain(job, job.target, goal) / gpus

    for job, goal in sorted(candidates, key=block_value, reverse=True):
        blocked_by = ledger.check(job, job.pool, job.target, goal)
        if blocked_by is None:
            ledger.move(job, job.pool, job.target, goal)
            job.target = goal
        else:
            job.shrink_cause = _shrink_cause(admitted, blocked_by, ledger)


def _shrink_cause(admitted: list[_JobState], blocked_by: str, ledger: _Ledger) -> str:
    if admitted:
        keys = ", ".join(job.request.key for job in admitted[:3])
        more = f" and {len(admitted) - 3} more" if len(admitted) > 3 else ""
        return f"to admit {len(admitted)} waiting job(s) ({keys}{more})"
    return _cause_text(blocked_by, ledger)


def _completion_gain(job: _JobState, from_workers: int, to_workers: int) -> float:
    """Estimate how much faster the job completes its remaining work: the share of that work
    done per second at `to_workers` minus the share at `from_workers`.

    Dividing by the remaining run time favours jobs that are close to done, as shortest
    remaining time first does, which lowers the mean completion time.
    """
    reference = job.request.current_workers if job.running else job.request.min_workers
    remaining_at_reference = max(job.horizon_s, 1.0)
    reference_speedup = job.scaling.speedup(reference)
    gained = job.scaling.speedup(to_workers) - job.scaling.speedup(from_workers)
    return gained / (reference_speedup * remaining_at_reference)


def _time_saved(job: _JobState, from_workers: int, to_workers: int) -> float:
    """Estimate seconds saved over the job's horizon by running at `to_workers` instead."""
    before = job.scaling.speedup(from_workers)
    after = job.scaling.speedup(to_workers)
    if after <= 0 or before <= 0:
        return 0.0
    return job.horizon_s * (1.0 - before / after)


def _blocks_growth(job: _JobState, pools: Sequence[GpuPool]) -> bool:
    """Return whether a waiting job holds back growth: only jobs that could ever start do."""
    if job.target > 0 or job.wait_reason is WaitReason.OWN_CEILING:
        return False
    needed = job.request.min_workers * job.request.gpus_per_worker
    return any(pool.capacity_gpus >= needed for pool in pools)


def _grow(ordered: list[_JobState], ledger: _Ledger, settings: PolicySettings, growth_allowed: bool) -> None:
    """Hand the room left to the steps with the highest completion gain per GPU.

    A job that shrinks now restarts anyway, so it is refilled worker by worker toward its
    current size, in competition with the growth steps of other jobs: a new short job may keep
    GPUs that a long job held. Steps beyond a job's current size are taken only when
    `growth_allowed` and only while one more worker adds at least `min_step_efficiency` of the
    throughput of an average worker at the job's size. A job that restarts anyway (it starts or
    shrinks now) grows worker by worker. A job that keeps its size must first clear the
    restart: it enters as one block, from its size to the smallest size whose time saved
    exceeds `gain_margin` restarts.
    """
    restart_threshold = settings.gain_margin * settings.restart_cost_s
    heap: list[tuple[float, int, int, int]] = []
    sequence = 0

    def push(index: int, job: _JobState, to_workers: int) -> None:
        nonlocal sequence
        refill = to_workers <= job.request.current_workers
        if not refill and not (growth_allowed and _efficient_step(job, to_workers, settings)):
            return
        gpus = (to_workers - job.target) * job.request.gpus_per_worker
        value = _completion_gain(job, job.target, to_workers) / gpus
        if value > 0:
            heapq.heappush(heap, (-value, sequence, index, to_workers))
            sequence += 1

    for index, job in enumerate(ordered):
        if job.target == 0 or job.pinned or job.target >= job.cap:
            continue
        if job.target != job.request.current_workers:
            push(index, job, job.target + 1)
            continue
        for size in range(job.target + 1, job.cap + 1):
            if _time_saved(job, job.target, size) > restart_threshold:
                push(index, job, size)
                break

    while heap:
        _, _, index, to_workers = heapq.heappop(heap)
        job = ordered[index]
        if ledger.check(job, job.pool, job.target, to_workers) is not None:
            continue
        ledger.move(job, job.pool, job.target, to_workers)
        job.target = to_workers
        if to_workers < job.cap:
            push(index, job, to_workers + 1)


def _efficient_step(job: _JobState, to_workers: int, settings: PolicySettings) -> bool:
    """Return whether each worker added from the job's target to `to_workers` adds at least
    `min_step_efficiency` of the speed-up per worker that the job has at its target."""
    before = job.scaling.speedup(job.target)
    added = (job.scaling.speedup(to_workers) - before) / (to_workers - job.target)
    return added >= settings.min_step_efficiency * before / job.target


def _build_allocation(ordered: list[_JobState], ledger: _Ledger, ceilings: Sequence[Ceiling]) -> Allocation:
    decisions: dict[str, JobDecision] = {}
    queue = []
    for job in ordered:
        request = job.request
        price = ledger.pools[job.pool].price_per_gpu_hour if job.pool is not None else 0.0
        cost = job.target * request.gpus_per_worker * price
        wait = None
        if job.target == 0:
            queue.append(request.key)
            wait = WaitInfo(len(queue), job.wait_reason or WaitReason.CAPACITY, job.wait_message, job.wait_ceiling)
        change = None
        if job.target != request.current_workers:
            change = _describe_change(job, price)
        decisions[request.key] = JobDecision(
            key=request.key,
            target_workers=job.target,
            price_class=job.pool if job.target > 0 else None,
            cost_per_hour=cost,
            change=change,
            wait=wait,
        )

    gpus_used = {name: pool.capacity_gpus - ledger.free_gpus[name] for name, pool in ledger.pools.items()}
    spend = {
        ceiling.name: ceiling.limit_per_hour - ledger.budgets[index] for index, ceiling in enumerate(ceilings)
    }
    return Allocation(decisions=decisions, gpus_used=gpus_used, spend_per_hour=spend, queue=tuple(queue))


def _describe_change(job: _JobState, price: float) -> Change:
    request = job.request
    before, after = request.current_workers, job.target
    gpus_per_worker = request.gpus_per_worker
    cost_text = f"${before * gpus_per_worker * price:.2f}/h -> ${after * gpus_per_worker * price:.2f}/h"
    if before == 0:
        noun = "worker" if after == 1 else "workers"
        message = f"start {after} {noun} ({after * gpus_per_worker} GPUs in pool {job.pool!r}, ${after * gpus_per_worker * price:.2f}/h)"
        return Change(ChangeReason.ADMIT, before, after, message)
    if after == 0:
        message = f"stop {before} {'worker' if before == 1 else 'workers'}: {job.wait_message}"
        return Change(ChangeReason.PREEMPT, before, after, message)
    if after > before:
        saved = _time_saved(job, before, after)
        message = (
            f"grow {before} -> {after} workers into idle GPUs: speed-up "
            f"{job.scaling.speedup(before):.2f}x -> {job.scaling.speedup(after):.2f}x saves an estimated "
            f"{saved:.0f} s of {job.horizon_s:.0f} s against a restart, {cost_text}"
        )
        return Change(ChangeReason.GROW, before, after, message)
    cause = job.shrink_cause or "its maximum or own ceiling went down"
    message = f"shrink {before} -> {after} workers {cause}, {cost_text}"
    if not cause.startswith("to "):
        message = f"shrink {before} -> {after} workers because {cause}, {cost_text}"
    return Change(ChangeReason.SHRINK, before, after, message)


def summarize(allocation: Allocation) -> Iterable[str]:
    """Yield one log line per changed or waiting job."""
    for decision in allocation.decisions.values():
        if decision.change is not None:
            yield f"{decision.key}: {decision.change.message}"
        elif decision.wait is not None:
            yield f"{decision.key}: waits at position {decision.wait.position} ({decision.wait.reason.value}): {decision.wait.message}"
