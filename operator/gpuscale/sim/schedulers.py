"""Schedulers the simulator compares: two fixed-size baselines and gpuscale's policy.

Each scheduler maps the active jobs (submitted, not finished) to target worker counts once per
scheduling interval. The baselines run every job at its hand-tuned `num_replicas`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from gpuscale.scheduling import Ceiling, GpuPool, JobRequest, PolicySettings, ScalingModel, allocate
from gpuscale.sim.model import Application, SimJob


@dataclass
class JobRun:
    """Simulated state of one job."""

    job: SimJob
    steps_done: float = 0.0
    workers: int = 0
    restart_until: float = 0.0
    """No progress before this time: the job is restarting from its checkpoint."""
    last_change_at: float | None = None
    starts: int = 0
    """Allocations of workers, the first start included."""
    attained_gpu_seconds: float = 0.0
    """GPUs times seconds the job has held, for least-attained-service ordering."""
    gpu_seconds: float = 0.0
    restart_gpu_seconds: float = 0.0
    """GPU-seconds spent restarting, the first start excluded."""
    finished_at: float | None = None


class Scheduler(Protocol):
    name: str

    def decide(self, now: float, runs: list[JobRun], gpu_limit: int) -> dict[str, int]:
        """Return target workers per job name; at most `gpu_limit` GPUs in total."""
        ...


class FifoStatic:
    """Best-effort FIFO at tuned sizes: start in submission order whatever fits, never resize."""

    name = "fifo-static"

    def decide(self, now: float, runs: list[JobRun], gpu_limit: int) -> dict[str, int]:
        targets = {run.job.name: run.workers for run in runs}
        free = gpu_limit - sum(run.workers for run in runs)
        for run in runs:
            size = fixed_size(run.job, gpu_limit)
            if run.workers == 0 and size <= free:
                targets[run.job.name] = size
                free -= size
        return targets


class Tiresias:
    """Discretized two-dimensional least-attained-service at tuned sizes, with preemption.

    As in Tiresias (Gu et al., NSDI 2019): a job's attained service is GPUs times seconds held.
    Jobs below `queue_threshold_gpu_seconds` are in the high-priority queue, the others in the
    low one; within a queue jobs run in submission order. Every interval the scheduler walks the
    queues and runs each job whose tuned size still fits, preempting running jobs it passes over.
    NOTE: the paper's starvation guard (promoting a job that waited long relative to its last
    run) is not modelled.
    """

    name = "tiresias"

    def __init__(self, queue_threshold_gpu_seconds: float = 8 * 3600.0) -> None:
        self.queue_threshold = queue_threshold_gpu_seconds

    def decide(self, now: float, runs: list[JobRun], gpu_limit: int) -> dict[str, int]:
        def order(run: JobRun) -> tuple:
            queue = 0 if run.attained_gpu_seconds < self.queue_threshold else 1
            return (queue, run.job.submitted_at, run.job.name)

        targets = {}
        free = gpu_limit
        for run in sorted(runs, key=order):
            size = fixed_size(run.job, gpu_limit)
            if size <= free:
                targets[run.job.name] = size
                free -= size
            else:
                targets[run.job.name] = 0
        return targets


class Gpuscale:
    """gpuscale's allocation policy, fed the same dataclasses the operator builds.

    Every job may run between `min_workers` (1) and the most workers whose local batch stays at
    or above the smallest measured one (at most the cluster size). The policy gets a scaling
    model computed from the simulator's throughput model and the exact remaining run time;
    NOTE: both are oracles here, while the operator has only what jobs report.
    """

    name = "gpuscale"

    def __init__(
        self,
        applications: dict[str, Application],
        price_per_gpu_hour: float,
        settings: PolicySettings | None = None,
        use_remaining_time: bool = True,
        cluster_gpus: int = 64,
    ) -> None:
        self.cluster_gpus = cluster_gpus
        self.applications = applications
        self.price = price_per_gpu_hour
        self.settings = settings or PolicySettings()
        self.use_remaining_time = use_remaining_time
        self._scaling: dict[tuple[str, int, int], ScalingModel] = {}

    def job_limits(self, job: SimJob, cluster_gpus: int) -> tuple[int, int]:
        """Return the (min, max) workers a user would declare for this job."""
        throughput = self.applications[job.application].throughput
        largest = max(1, min(cluster_gpus, job.batch_size // throughput.min_local_batch))
        return 1, max(largest, 1)

    def scaling_model(self, job: SimJob, max_workers: int) -> ScalingModel:
        key = (job.application, job.batch_size, max_workers)
        model = self._scaling.get(key)
        if model is None:
            throughput = self.applications[job.application].throughput
            one = throughput.step_seconds(job.batch_size, 1)
            model = ScalingModel(
                tuple(one / throughput.step_seconds(job.batch_size, n) for n in range(1, max_workers + 1))
            )
            self._scaling[key] = model
        return model

    def decide(self, now: float, runs: list[JobRun], gpu_limit: int) -> dict[str, int]:
        cluster_gpus = self.cluster_gpus
        requests = [self._request(now, run, cluster_gpus) for run in runs]
        pools = [GpuPool("gpu", self.price, cluster_gpus)]
        ceilings = []
        if gpu_limit < cluster_gpus:
            ceilings.append(Ceiling("sim", gpu_limit * self.price, frozenset(run.job.name for run in runs)))
        return allocate(requests, pools, ceilings, self.settings).targets

    def _request(self, now: float, run: JobRun, cluster_gpus: int) -> JobRequest:
        job = run.job
        minimum, maximum = self.job_limits(job, cluster_gpus)
        remaining = None
        if self.use_remaining_time:
            throughput = self.applications[job.application].throughput
            workers = run.workers or minimum
            remaining = (job.steps - run.steps_done) * throughput.step_seconds(job.batch_size, workers)
        since = None if run.last_change_at is None else now - run.last_change_at
        return JobRequest(
            key=job.name,
            min_workers=minimum,
            max_workers=maximum,
            submitted_at=job.submitted_at,
            current_workers=run.workers,
            price_class="gpu" if run.workers else None,
            seconds_since_rescale=since if run.workers else None,
            scaling=self.scaling_model(job, maximum),
            expected_remaining_s=remaining,
        )


def fixed_size(job: SimJob, gpu_limit: int) -> int:
    """Return the tuned size, cut to what a ceiling pays for so that the job can run at all."""
    return min(job.num_replicas, gpu_limit)


def gpu_limit_for(ceiling_per_hour: float | None, price_per_gpu_hour: float, cluster_gpus: int) -> int:
    """Return the GPUs a cost ceiling pays for, at most the cluster."""
    if ceiling_per_hour is None:
        return cluster_gpus
    return min(cluster_gpus, math.floor(ceiling_per_hour / price_per_gpu_hour + 1e-9))
