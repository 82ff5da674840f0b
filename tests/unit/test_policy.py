"""Table tests of the pure allocation policy."""

import itertools
import random

import pytest

from gpuscale.scheduling import (
    Ceiling,
    ChangeReason,
    GpuPool,
    JobRequest,
    PolicySettings,
    ScalingModel,
    WaitReason,
    allocate,
)

LINEAR = ScalingModel(tuple(float(n) for n in range(1, 65)))
FLAT = ScalingModel((1.0,))


def pool(capacity=8, price=1.0, name="gpu", stopping=0):
    return GpuPool(name=name, price_per_gpu_hour=price, capacity_gpus=capacity, stopping_gpus=stopping)


def job(key, min_workers=1, max_workers=4, current=0, submitted=0.0, since=None, **fields):
    fields.setdefault("scaling", LINEAR)
    if current or fields.get("stopping_gpus"):
        fields.setdefault("price_class", "gpu")
        if since is None:
            since = 10_000.0
    return JobRequest(
        key=key,
        min_workers=min_workers,
        max_workers=max_workers,
        current_workers=current,
        submitted_at=submitted,
        seconds_since_rescale=since,
        **fields,
    )


def test_lone_job_grows_to_max():
    result = allocate([job("a", 1, 4)], [pool(8)])

    decision = result.decisions["a"]
    assert decision.target_workers == 4
    assert decision.change.reason is ChangeReason.ADMIT
    assert result.gpus_used == {"gpu": 4}


def test_ceiling_caps_growth():
    ceiling = Ceiling("team", limit_per_hour=3.0, job_keys=frozenset({"a"}))

    result = allocate([job("a", 1, 8)], [pool(8, price=1.0)], [ceiling])

    assert result.targets == {"a": 3}
    assert result.spend_per_hour == {"team": pytest.approx(3.0)}


def test_ceiling_blocks_admission():
    ceiling = Ceiling("team", limit_per_hour=3.0, job_keys=frozenset({"a", "b"}))
    jobs = [job("a", 2, 2, current=2), job("b", 2, 2, submitted=5.0)]

    result = allocate(jobs, [pool(8)], [ceiling])

    wait = result.decisions["b"].wait
    assert result.targets == {"a": 2, "b": 0}
    assert wait.reason is WaitReason.CEILING
    assert wait.ceiling == "team"
    assert wait.position == 1


def test_multiple_ceilings_all_respected():
    cluster = Ceiling("cluster", limit_per_hour=10.0, job_keys=frozenset({"a", "b"}))
    team = Ceiling("team-a", limit_per_hour=2.0, job_keys=frozenset({"a"}))

    result = allocate([job("a", 1, 8), job("b", 1, 8, submitted=1.0)], [pool(16)], [cluster, team])

    assert result.targets["a"] == 2
    assert result.targets["b"] == 8
    assert result.spend_per_hour["team-a"] <= 2.0
    assert result.spend_per_hour["cluster"] <= 10.0


def test_stopping_pods_count_against_capacity():
    result = allocate([job("a", 2, 8)], [pool(8, stopping=5)])

    assert result.targets == {"a": 3}
    assert result.gpus_used == {"gpu": 8}


def test_stopping_pods_count_against_ceiling():
    ceiling = Ceiling("c", limit_per_hour=6.0, job_keys=frozenset({"a", "b"}))
    jobs = [job("a", 1, 1, current=1, stopping_gpus=4, since=5.0), job("b", 1, 8, submitted=1.0)]

    result = allocate(jobs, [pool(16)], [ceiling])

    # a keeps its 1 worker inside its 4 stopping GPUs; b gets the 2 dollars that are left.
    assert result.targets == {"a": 1, "b": 2}
    assert result.spend_per_hour["c"] == pytest.approx(6.0)


def test_no_partial_gang():
    result = allocate([job("a", 6, 8)], [pool(5)])

    wait = result.decisions["a"].wait
    assert result.targets == {"a": 0}
    assert wait.reason is WaitReason.CAPACITY
    assert "needs 6 GPUs" in wait.message


def test_gpus_per_worker_counted():
    result = allocate([job("a", 1, 8, gpus_per_worker=4)], [pool(10)])

    assert result.targets == {"a": 2}
    assert result.gpus_used == {"gpu": 8}


def test_priority_then_submission_order():
    jobs = [
        job("late-low", 4, 4, submitted=1.0),
        job("early-low", 4, 4, submitted=0.0),
        job("high", 4, 4, submitted=9.0, priority=10),
    ]

    result = allocate(jobs, [pool(8)])

    assert result.targets == {"high": 4, "early-low": 4, "late-low": 0}
    assert result.queue == ("late-low",)


def test_smaller_job_backfills_same_priority():
    jobs = [job("big", 6, 6, submitted=0.0), job("small", 2, 2, submitted=1.0)]

    result = allocate(jobs, [pool(4)])

    assert result.targets == {"big": 0, "small": 2}
    assert result.decisions["big"].wait.position == 1


def test_waiting_high_priority_blocks_lower():
    jobs = [job("high", 6, 6, priority=5), job("low", 2, 2, submitted=1.0)]

    result = allocate(jobs, [pool(4)])

    assert result.targets == {"high": 0, "low": 0}
    assert result.decisions["low"].wait.reason is WaitReason.PRIORITY
    assert result.decisions["low"].wait.position == 2


def test_higher_priority_preempts_running():
    jobs = [job("low", 4, 4, current=4, since=1.0), job("high", 4, 4, submitted=5.0, priority=1)]

    result = allocate(jobs, [pool(4)])

    assert result.targets == {"low": 0, "high": 4}
    assert result.decisions["low"].change.reason is ChangeReason.PREEMPT
    assert result.decisions["low"].wait.reason is WaitReason.PRIORITY


def test_same_priority_never_preempts_running():
    jobs = [job("running", 4, 4, current=4), job("new", 4, 4, submitted=5.0)]

    result = allocate(jobs, [pool(4)])

    assert result.targets == {"running": 4, "new": 0}


def test_shrink_to_admit_waiting_job():
    jobs = [job("a", 1, 8, current=8), job("b", 2, 4, submitted=5.0)]

    result = allocate(jobs, [pool(8)])

    # a restarts anyway, so b, which gains more per GPU, keeps the GPUs a gives up.
    assert result.targets == {"a": 4, "b": 4}
    change = result.decisions["a"].change
    assert change.reason is ChangeReason.SHRINK
    assert "to admit 1 waiting job(s) (b)" in change.message


def test_shrinks_fall_on_few_jobs():
    jobs = [job("a", 1, 4, current=4), job("b", 1, 4, current=4), job("c", 2, 2, submitted=5.0)]

    result = allocate(jobs, [pool(8)])

    shrunk = [key for key in ("a", "b") if result.targets[key] < 4]
    assert result.targets["c"] == 2
    assert len(shrunk) == 1


def test_shrinking_job_refills_by_gain():
    jobs = [job("long", 1, 8, current=8, expected_remaining_s=36_000.0), job("short", 4, 8, submitted=5.0, expected_remaining_s=600.0)]

    result = allocate(jobs, [pool(8)])

    assert result.targets == {"long": 1, "short": 7}


def test_refill_continues_while_job_waits():
    jobs = [
        job("a", 1, 6, current=6),
        job("b", 2, 2, submitted=5.0),
        job("huge", 9, 9, submitted=6.0),
    ]

    result = allocate(jobs, [pool(8)])

    assert result.targets == {"a": 6, "b": 2, "huge": 0}


def test_refill_never_grows_past_current_while_job_waits():
    jobs = [
        job("a", 1, 8, current=4),
        job("b", 1, 8, current=4),
        job("c", 4, 4, submitted=5.0),
        job("huge", 10, 10, submitted=6.0),
    ]

    result = allocate(jobs, [pool(10)])

    assert result.targets["c"] == 4
    assert result.targets["huge"] == 0
    assert result.targets["a"] <= 4
    assert result.targets["b"] <= 4
    assert result.targets["a"] + result.targets["b"] == 6


def test_growth_skips_inefficient_steps():
    # The 4th worker adds 0.2 against an average of 2.7 / 3 = 0.9 per worker: below 0.4 of it.
    scaling = ScalingModel((1.0, 1.9, 2.7, 2.9, 3.0))
    jobs = [job("a", 1, 5, scaling=scaling)]

    result = allocate(jobs, [pool(8)])

    assert result.targets == {"a": 3}


def test_growth_efficiency_floor_is_a_setting():
    scaling = ScalingModel((1.0, 1.9, 2.7, 2.9, 3.0))
    jobs = [job("a", 1, 5, scaling=scaling)]

    result = allocate(jobs, [pool(8)], settings=PolicySettings(min_step_efficiency=0.0))

    assert result.targets == {"a": 5}


def test_refill_ignores_efficiency_floor():
    scaling = ScalingModel((1.0, 1.9, 2.7, 2.9, 3.0))
    jobs = [job("a", 1, 5, current=5, scaling=scaling), job("b", 1, 1, submitted=5.0, scaling=FLAT)]

    result = allocate(jobs, [pool(5)])

    assert result.targets == {"a": 4, "b": 1}


def test_no_growth_while_job_waits():
    jobs = [job("a", 3, 8, current=4), job("big", 10, 10, submitted=5.0)]

    result = allocate(jobs, [pool(12)])

    assert result.targets == {"a": 4, "big": 0}


def test_oversized_job_allows_growth():
    jobs = [job("a", 1, 8, current=2), job("huge", 20, 20, submitted=5.0)]

    result = allocate(jobs, [pool(8)])

    assert result.targets == {"a": 8, "huge": 0}


def test_growth_prefers_better_scaling():
    good = ScalingModel((1.0, 2.0, 3.0, 4.0))
    poor = ScalingModel((1.0, 1.1, 1.15, 1.2))
    jobs = [job("poor", 1, 4, scaling=poor), job("good", 1, 4, scaling=good, submitted=1.0)]

    result = allocate(jobs, [pool(5)])

    assert result.targets == {"poor": 1, "good": 4}


def test_flat_scaling_never_grows():
    result = allocate([job("a", 1, 8, scaling=FLAT)], [pool(8)])

    assert result.targets == {"a": 1}


def test_stabilisation_window_keeps_size():
    settings = PolicySettings(stabilisation_window_s=300.0)
    jobs = [job("a", 1, 8, current=6, since=100.0), job("b", 4, 4, submitted=5.0)]

    result = allocate(jobs, [pool(8)], settings=settings)

    assert result.targets == {"a": 6, "b": 0}
    assert result.decisions["a"].change is None


def test_growth_after_window_ends():
    settings = PolicySettings(stabilisation_window_s=300.0)

    inside = allocate([job("a", 1, 8, current=2, since=299.0)], [pool(8)], settings=settings)
    after = allocate([job("a", 1, 8, current=2, since=301.0)], [pool(8)], settings=settings)

    assert inside.targets == {"a": 2}
    assert after.targets == {"a": 8}


def test_growth_must_beat_restart_cost():
    settings = PolicySettings(restart_cost_s=30.0, gain_margin=2.0)
    slight = ScalingModel((1.0, 1.0, 1.01))
    jobs = [job("a", 1, 3, current=2, scaling=slight, expected_remaining_s=3600.0)]

    result = allocate(jobs, [pool(8)], settings=settings)

    # 3600 s * (1 - 1 / 1.01) = 36 s saved, below 2 restarts of 30 s.
    assert result.targets == {"a": 2}


def test_nearly_done_job_does_not_grow():
    jobs = [job("a", 1, 8, current=2, expected_remaining_s=40.0)]

    result = allocate(jobs, [pool(8)])

    assert result.targets == {"a": 2}


def test_capacity_drop_shrinks_even_in_window():
    jobs = [job("a", 2, 8, current=8, since=1.0)]

    result = allocate(jobs, [pool(4)])

    assert result.targets == {"a": 4}
    assert result.decisions["a"].change.reason is ChangeReason.SHRINK


def test_lowered_ceiling_stops_job_below_minimum():
    ceiling = Ceiling("c", limit_per_hour=3.0, job_keys=frozenset({"a"}))
    jobs = [job("a", 4, 8, current=8, since=1.0)]

    result = allocate(jobs, [pool(8)], [ceiling])

    decision = result.decisions["a"]
    assert decision.target_workers == 0
    assert decision.change.reason is ChangeReason.PREEMPT
    assert decision.wait.reason is WaitReason.CEILING


def test_own_ceiling_below_minimum_never_starts():
    jobs = [job("a", 4, 8, cost_ceiling_per_hour=3.0)]

    result = allocate(jobs, [pool(8, price=1.0)])

    wait = result.decisions["a"].wait
    assert result.targets == {"a": 0}
    assert wait.reason is WaitReason.OWN_CEILING
    assert "$4.00/h" in wait.message


def test_own_ceiling_caps_workers():
    result = allocate([job("a", 1, 8, cost_ceiling_per_hour=5.0)], [pool(8, price=1.0)])

    assert result.targets == {"a": 5}


def test_own_ceiling_job_does_not_block_others():
    jobs = [job("capped", 4, 4, cost_ceiling_per_hour=1.0, priority=5), job("other", 1, 1, submitted=2.0)]

    result = allocate(jobs, [pool(8)])

    assert result.targets == {"capped": 0, "other": 1}


def test_cheapest_pool_first():
    pools = [pool(4, price=3.0, name="h100"), pool(4, price=1.0, name="l4")]

    result = allocate([job("a", 2, 2)], pools)

    assert result.decisions["a"].price_class == "l4"
    assert result.decisions["a"].cost_per_hour == pytest.approx(2.0)


def test_running_job_stays_in_its_pool():
    pools = [pool(8, price=3.0, name="h100"), pool(8, price=1.0, name="l4")]
    jobs = [job("a", 1, 4, current=2, price_class="h100")]

    result = allocate(jobs, pools)

    assert result.decisions["a"].price_class == "h100"
    assert result.gpus_used == {"h100": 4, "l4": 0}


def test_oscillating_demand_causes_no_flapping():
    """A small job that appears and vanishes every 60 s changes the big job at most once per window."""
    settings = PolicySettings(stabilisation_window_s=300.0)
    workers, since, rescales = 8, 10_000.0, []
    for step in range(20):
        now = step * 60.0
        jobs = [job("big", 1, 8, current=workers, since=since)]
        if step % 2 == 1:
            jobs.append(job(f"burst-{step}", 2, 2, submitted=now))
        target = allocate(jobs, [pool(8)], settings=settings).targets["big"]
        if target != workers:
            rescales.append(now)
            workers, since = target, 0.0
        since += 60.0

    gaps = [later - earlier for earlier, later in itertools.pairwise(rescales)]
    assert all(gap >= 300.0 for gap in gaps), rescales
    assert len(rescales) <= 20 * 60 / 300 + 1


@pytest.mark.parametrize("seed", range(30))
def test_random_snapshots_never_exceed_limits(seed):
    rng = random.Random(seed)
    pools = [pool(rng.randint(0, 24), price=price, name=name, stopping=rng.randint(0, 3)) for name, price in (("a", 1.0), ("b", 2.5))]
    jobs = []
    for index in range(rng.randint(1, 25)):
        minimum = rng.randint(1, 4)
        current = rng.choice([0, 0, minimum, minimum + 1])
        jobs.append(
            JobRequest(
                key=f"j{index}",
                min_workers=minimum,
                max_workers=minimum + rng.randint(0, 6),
                gpus_per_worker=rng.choice([1, 1, 2]),
                priority=rng.choice([0, 0, 1]),
                submitted_at=rng.random() * 100,
                current_workers=current,
                price_class=rng.choice(["a", "b"]) if current else None,
                seconds_since_rescale=rng.random() * 600 if current else None,
                cost_ceiling_per_hour=rng.choice([None, None, 5.0]),
            )
        )
    keys = [item.key for item in jobs]
    ceilings = [
        Ceiling("all", rng.uniform(0, 40), frozenset(keys)),
        Ceiling("some", rng.uniform(0, 10), frozenset(rng.sample(keys, k=len(keys) // 2))),
    ]

    result = allocate(jobs, pools, ceilings)

    for item in pools:
        assert result.gpus_used[item.name] <= max(item.capacity_gpus, item.stopping_gpus)
    for ceiling in ceilings:
        assert result.spend_per_hour[ceiling.name] <= ceiling.limit_per_hour + 1e-6
    for item in jobs:
        target = result.targets[item.key]
        assert target == 0 or item.min_workers <= target <= item.max_workers
        decision = result.decisions[item.key]
        if target > 0 and item.cost_ceiling_per_hour is not None:
            assert decision.cost_per_hour <= item.cost_ceiling_per_hour + 1e-9


@pytest.mark.parametrize(
    "bad, message",
    [
        (job("a", 3, 2), "min_workers 3"),
        (job("a", 1, 2, current=1, price_class="missing"), "pool 'missing'"),
        (job("a", 1, 2, cost_ceiling_per_hour=-1.0), "cost_ceiling_per_hour -1.0"),
    ],
)
def test_invalid_job_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        allocate([bad], [pool(8)])


def test_duplicate_keys_rejected():
    with pytest.raises(ValueError, match="listed twice"):
        allocate([job("a"), job("a")], [pool(8)])


def test_scaling_model_rejects_nonpositive():
    with pytest.raises(ValueError, match="above 0"):
        ScalingModel((1.0, 0.0))
