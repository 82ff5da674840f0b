"""Small runs of the trace-driven scheduler simulator."""

import pytest

from gpuscale.scheduling import PolicySettings
from gpuscale.sim.engine import SimConfig, simulate
from gpuscale.sim.model import DATA_DIR, load_applications, load_workload
from gpuscale.sim.schedulers import FifoStatic, Gpuscale, Tiresias, gpu_limit_for


@pytest.fixture(scope="module")
def applications():
    return load_applications()


@pytest.fixture(scope="module")
def first_jobs(applications):
    return load_workload(DATA_DIR / "workloads" / "workload-1.csv", applications)[:40]


def test_steps_to_target_shrink_with_batch(applications):
    steps = applications["cifar10"].steps_to_target

    assert steps[128] > steps[1024] > steps[4096] > 0


def test_step_time_falls_with_workers(applications):
    throughput = applications["imagenet"].throughput

    assert throughput.step_seconds(3200, 16) < throughput.step_seconds(3200, 4) < throughput.step_seconds(3200, 1)


@pytest.mark.parametrize("scheduler", [FifoStatic(), Tiresias()], ids=lambda item: item.name)
def test_baselines_finish_every_job(applications, first_jobs, scheduler):
    result = simulate(first_jobs, applications, scheduler, SimConfig(), gpu_limit=64)

    assert len(result.jcts) == len(first_jobs)
    assert all(jct > 0 for jct in result.jcts.values())
    assert result.capacity_violation_s == 0


def test_fifo_static_never_restarts(applications, first_jobs):
    result = simulate(first_jobs, applications, FifoStatic(), SimConfig(), gpu_limit=64)

    assert result.restarts == 0


def test_gpuscale_under_half_price_ceiling(applications, first_jobs):
    config = SimConfig(price_per_gpu_hour=2.0, ceiling_per_hour=64.0)
    limit = gpu_limit_for(config.ceiling_per_hour, config.price_per_gpu_hour, config.cluster_gpus)
    scheduler = Gpuscale(applications, config.price_per_gpu_hour, PolicySettings())

    result = simulate(first_jobs, applications, scheduler, config, gpu_limit=limit)

    assert limit == 32
    assert len(result.jcts) == len(first_jobs)
    assert result.ceiling_violation_s == 0
    assert result.capacity_violation_s == 0


def test_gpuscale_beats_fifo_static_on_workload(applications):
    jobs = load_workload(DATA_DIR / "workloads" / "workload-1.csv", applications)

    fifo = simulate(jobs, applications, FifoStatic(), SimConfig(), gpu_limit=64)
    elastic = simulate(jobs, applications, Gpuscale(applications, 2.5), SimConfig(), gpu_limit=64)

    assert elastic.mean_jct < fifo.mean_jct
    assert elastic.gpu_hours <= fifo.gpu_hours * 1.05
