"""Discrete-event replay of a workload under one scheduler.

Time advances from one scheduling interval to the next (60 s by default). At each interval the
scheduler sees the jobs submitted so far that have not finished and returns target worker
counts; between intervals allocations are fixed. Every allocation change that leaves a job with
workers costs it `restart_cost_s` with its new GPUs held and no progress (the first start too,
for every policy alike). A job that finishes mid-interval frees its GPUs at the next interval.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from gpuscale.sim.model import Application, SimJob
from gpuscale.sim.schedulers import JobRun, Scheduler


MAX_SIMULATED_DAYS = 30


@dataclass(frozen=True)
class SimConfig:
    """Cluster and cost settings of one simulation."""

    cluster_gpus: int = 64
    interval_s: float = 60.0
    restart_cost_s: float = 30.0
    price_per_gpu_hour: float = 2.5
    ceiling_per_hour: float | None = None


@dataclass
class SimResult:
    """Outcome of replaying one workload under one scheduler."""

    scheduler: str
    jcts: dict[str, float]
    makespan_s: float
    gpu_hours: float
    dollars: float
    ceiling_violation_s: float
    """Simulated seconds during which spend was above the ceiling."""
    capacity_violation_s: float
    restarts: int
    """Allocations beyond each job's first start."""
    restart_gpu_hours: float
    decision_seconds: list[float] = field(default_factory=list)

    @property
    def mean_jct(self) -> float:
        return sum(self.jcts.values()) / len(self.jcts)

    @property
    def p99_jct(self) -> float:
        values = sorted(self.jcts.values())
        return values[min(len(values) - 1, math.ceil(0.99 * len(values)) - 1)]


def simulate(
    jobs: list[SimJob],
    applications: dict[str, Application],
    scheduler: Scheduler,
    config: SimConfig,
    gpu_limit: int,
) -> SimResult:
    """Replay `jobs` under `scheduler` on the cluster in `config`; `gpu_limit` caps GPUs in use."""
    runs = [JobRun(job) for job in jobs]
    step_seconds = {
        (job.application, job.batch_size, n): applications[job.application].throughput.step_seconds(job.batch_size, n)
        for job in jobs
        for n in range(1, config.cluster_gpus + 1)
    }
    ceiling_violation = capacity_violation = 0.0
    decision_seconds = []
    next_arrival = 0
    active: list[JobRun] = []
    now = 0.0

    give_up_at = max(job.submitted_at for job in jobs) + MAX_SIMULATED_DAYS * 86_400
    while next_arrival < len(runs) or active:
        if now > give_up_at:
            stuck = ", ".join(run.job.name for run in active[:5])
            raise RuntimeError(
                f"{scheduler.name}: jobs still unfinished {MAX_SIMULATED_DAYS} days after the last "
                f"submission ({stuck}); a job may need more GPUs than the limit of {gpu_limit}"
            )
        # Admit the jobs submitted by now; when nothing runs, jump to the next submission.
        if not active and next_arrival < len(runs):
            first = runs[next_arrival].job.submitted_at
            now = max(now, math.ceil(first / config.interval_s) * config.interval_s)
        while next_arrival < len(runs) and runs[next_arrival].job.submitted_at <= now:
            active.append(runs[next_arrival])
            next_arrival += 1

        started = time.perf_counter()
        targets = scheduler.decide(now, active, gpu_limit)
        decision_seconds.append(time.perf_counter() - started)
        _apply(active, targets, now, config)

        in_use = sum(run.workers for run in active)
        if in_use > config.cluster_gpus:
            capacity_violation += config.interval_s
        if config.ceiling_per_hour is not None and in_use * config.price_per_gpu_hour > config.ceiling_per_hour + 1e-9:
            ceiling_violation += config.interval_s

        end = now + config.interval_s
        for run in active:
            _advance(run, now, end, step_seconds)
        active = [run for run in active if run.finished_at is None]
        now = end

    jcts = {run.job.name: run.finished_at - run.job.submitted_at for run in runs}
    gpu_hours = sum(run.gpu_seconds for run in runs) / 3600
    return SimResult(
        scheduler=scheduler.name,
        jcts=jcts,
        makespan_s=max(run.finished_at for run in runs) - min(run.job.submitted_at for run in runs),
        gpu_hours=gpu_hours,
        dollars=gpu_hours * config.price_per_gpu_hour,
        ceiling_violation_s=ceiling_violation,
        capacity_violation_s=capacity_violation,
        restarts=sum(max(0, run.starts - 1) for run in runs),
        restart_gpu_hours=sum(run.restart_gpu_seconds for run in runs) / 3600,
        decision_seconds=decision_seconds,
    )


def _apply(active: list[JobRun], targets: dict[str, int], now: float, config: SimConfig) -> None:
    for run in active:
        target = targets.get(run.job.name, 0)
        if target == run.workers:
            continue
        run.workers = target
        run.last_change_at = now
        if target == 0:
            continue
        run.starts += 1
        run.restart_until = now + config.restart_cost_s
        if run.starts > 1:
            run.restart_gpu_seconds += config.restart_cost_s * target


def _advance(run: JobRun, start: float, end: float, step_seconds: dict) -> None:
    """Move one job from `start` to `end`, finishing it when its steps are done."""
    if run.workers == 0:
        return
    busy_from = min(end, max(start, run.restart_until))
    seconds_per_step = step_seconds[(run.job.application, run.job.batch_size, run.workers)]
    steps_possible = (end - busy_from) / seconds_per_step
    remaining = run.job.steps - run.steps_done
    stop = end
    if steps_possible >= remaining:
        stop = busy_from + remaining * seconds_per_step
        run.steps_done = run.job.steps
        run.finished_at = stop
    else:
        run.steps_done += steps_possible
    held = run.workers * (stop - start)
    run.gpu_seconds += held
    run.attained_gpu_seconds += held
