"""Table-style tests of the pure TrainingJob lifecycle planner."""

from __future__ import annotations

from datetime import datetime, timedelta

from gpuscale.planning.lifecycle import JobState, ObservedPod, PodToCreate, plan_job

NOW = datetime(2026, 12, 1, 12, 0, 0)


def job(status: dict | None = None, pods: list[ObservedPod] | None = None, **overrides) -> JobState:
    values = dict(name="mnist", min_workers=3, max_workers=4, backoff_limit=2, status=status or {},
                  pods=pods or [], service_exists=True, now=NOW)
    values.update(overrides)
    return JobState(**values)


def group(generation: int, size: int, phase: str = "Running", **by_index) -> list[ObservedPod]:
    """Pods of one generation; by_index maps 'w<i>' to (phase, exit_code, message) overrides."""
    pods = []
    for index in range(size):
        override = by_index.get(f"w{index}", (phase, None, None))
        pods.append(ObservedPod(f"mnist-g{generation}-w{index}", generation, index, size, override[0],
                                exit_code=override[1], termination_message=override[2]))
    return pods


def running_status(generation: int = 1, restarts: int = 0) -> dict:
    return {"phase": "Running", "generation": generation, "restarts": restarts, "conditions": [],
            "startTime": "2026-12-01T11:00:00Z"}


def condition(plan, type_: str) -> dict:
    return next(c for c in plan.status["conditions"] if c["type"] == type_)


def test_new_job_creates_service_and_all_pods() -> None:
    plan = plan_job(job(service_exists=False))

    assert plan.create_service
    assert plan.create_pods == [PodToCreate(1, i, 3) for i in range(3)]
    assert plan.status["phase"] == "Pending"
    assert plan.status["generation"] == 1
    assert plan.status["targetWorkers"] == 3


def test_all_pods_running_makes_job_running() -> None:
    plan = plan_job(job({"phase": "Pending", "generation": 1}, group(1, 3)))

    assert plan.status["phase"] == "Running"
    assert plan.status["workers"] == 3
    assert condition(plan, "Ready")["status"] == "True"
    assert not plan.create_pods
    assert not plan.delete_pods


def test_partly_created_group_gets_missing_pods() -> None:
    pods = group(1, 3)[:2]

    plan = plan_job(job({"phase": "Pending", "generation": 1}, pods))

    assert plan.create_pods == [PodToCreate(1, 2, 3)]
    assert plan.status["phase"] == "Pending"


def test_chief_success_finishes_job_and_stops_others() -> None:
    pods = group(1, 3, w0=("Succeeded", 0, '{"accuracy": 0.95}'))

    plan = plan_job(job(running_status(), pods))

    assert plan.status["phase"] == "Succeeded"
    assert plan.status["result"] == {"accuracy": 0.95}
    assert sorted(plan.delete_pods) == ["mnist-g1-w0", "mnist-g1-w1", "mnist-g1-w2"]
    assert plan.delete_service
    assert plan.status["completionTime"] == "2026-12-01T12:00:00Z"


def test_non_chief_success_keeps_job_running() -> None:
    pods = group(1, 3, w2=("Succeeded", 0, None))

    plan = plan_job(job(running_status(), pods))

    assert plan.status["phase"] == "Running"
    assert not plan.delete_pods


def test_worker_failure_restarts_group_as_new_generation() -> None:
    pods = group(1, 3, w1=("Failed", 137, None))

    plan = plan_job(job(running_status(), pods))

    assert plan.status["generation"] == 2
    assert plan.status["restarts"] == 1
    assert sorted(plan.delete_pods) == ["mnist-g1-w0", "mnist-g1-w1", "mnist-g1-w2"]
    assert not plan.create_pods, "the new group waits until the old pods are gone"
    assert plan.status["phase"] == "Pending"


def test_failure_counted_once_while_old_pods_stop() -> None:
    first = plan_job(job(running_status(), group(1, 3, w1=("Failed", 137, None))))

    second = plan_job(job(first.status, group(1, 3, w1=("Failed", 137, None))))

    assert second.status["restarts"] == 1
    assert second.status["generation"] == 2


def test_new_generation_created_after_old_pods_gone() -> None:
    status = running_status(generation=2, restarts=1)
    status["phase"] = "Pending"

    plan = plan_job(job(status, []))

    assert plan.create_pods == [PodToCreate(2, i, 3) for i in range(3)]


def test_backoff_limit_exceeded_fails_job() -> None:
    pods = group(3, 3, w0=("Failed", 137, None))

    plan = plan_job(job(running_status(generation=3, restarts=2), pods))

    assert plan.status["phase"] == "Failed"
    assert plan.status["restarts"] == 3
    assert condition(plan, "Failed")["reason"] == "BackoffLimitExceeded"
    assert plan.delete_service


def test_preempted_worker_does_not_count() -> None:
    pods = group(1, 3, w0=("Failed", 75, None), w1=("Failed", 75, None), w2=("Failed", 75, None))

    plan = plan_job(job(running_status(), pods))

    assert plan.status["restarts"] == 0
    assert plan.status["generation"] == 2


def test_lost_pod_restarts_running_group_without_counting() -> None:
    pods = group(1, 3)[:2]

    plan = plan_job(job(running_status(), pods))

    assert plan.status["generation"] == 2
    assert plan.status["restarts"] == 0


def test_suspend_stops_pods_and_resume_starts_new_generation() -> None:
    suspended = plan_job(job(running_status(), group(1, 3), suspend=True))

    assert suspended.status["phase"] == "Suspended"
    assert len(suspended.delete_pods) == 3
    assert suspended.status["restarts"] == 0

    resumed = plan_job(job(suspended.status, [], suspend=False))

    assert resumed.create_pods == [PodToCreate(2, i, 3) for i in range(3)]
    assert condition(resumed, "Suspended")["status"] == "False"


def test_allocation_change_rescales_as_new_generation() -> None:
    plan = plan_job(job(running_status(), group(1, 3), allocated_workers=4))

    assert plan.status["phase"] == "Rescaling"
    assert plan.status["generation"] == 2
    assert len(plan.delete_pods) == 3
    assert plan.status["restarts"] == 0

    after = plan_job(job(plan.status, [], allocated_workers=4))

    assert after.create_pods == [PodToCreate(2, i, 4) for i in range(4)]
    assert after.status["phase"] == "Rescaling"


def test_zero_allocation_keeps_job_queued() -> None:
    plan = plan_job(job(allocated_workers=0))

    assert plan.status["phase"] == "Queued"
    assert not plan.create_pods
    assert condition(plan, "Admitted")["status"] == "False"


def test_deadline_exceeded_fails_job() -> None:
    status = running_status()
    status["startTime"] = "2026-12-01T11:00:00Z"

    plan = plan_job(job(status, group(1, 3), active_deadline_seconds=600))

    assert plan.status["phase"] == "Failed"
    assert condition(plan, "Failed")["reason"] == "DeadlineExceeded"


def test_ttl_deletes_finished_job() -> None:
    status = {"phase": "Succeeded", "generation": 1, "completionTime": "2026-12-01T11:59:00Z"}

    early = plan_job(job(status, [], ttl_seconds_after_finished=120, service_exists=False))
    late = plan_job(job(status, [], ttl_seconds_after_finished=30, service_exists=False))

    assert not early.delete_job
    assert early.requeue_after == 60
    assert late.delete_job


def test_unchanged_state_plans_nothing() -> None:
    first = plan_job(job({"phase": "Pending", "generation": 1}, group(1, 3)))

    second = plan_job(job(first.status, group(1, 3), now=NOW + timedelta(seconds=30)))

    assert second.status == first.status
    assert not second.events
    assert not second.create_pods
    assert not second.delete_pods


def test_status_patch_clears_dropped_fields() -> None:
    from gpuscale.controller.reconcile import status_patch

    patch = status_patch({"phase": "Queued", "queuePosition": 2, "waitingReason": "CostCeiling"},
                         {"phase": "Running"})

    assert patch == {"phase": "Running", "queuePosition": None, "waitingReason": None}


def test_changed_pod_spec_rolls_out_new_generation() -> None:
    pods = [ObservedPod(f"mnist-g1-w{i}", 1, i, 3, "Running", template_hash="old") for i in range(3)]

    plan = plan_job(job(running_status(), pods, template_hash="new"))

    assert plan.status["generation"] == 2
    assert plan.status["restarts"] == 0
    assert len(plan.delete_pods) == 3
    assert "SpecChanged" in [e.reason for e in plan.events]


def test_unchanged_pod_spec_keeps_group() -> None:
    pods = [ObservedPod(f"mnist-g1-w{i}", 1, i, 3, "Running", template_hash="same") for i in range(3)]

    plan = plan_job(job(running_status(), pods, template_hash="same"))

    assert plan.status["generation"] == 1
    assert not plan.delete_pods


def test_pending_allocation_keeps_running_group() -> None:
    plan = plan_job(job(running_status(), group(1, 3), allocated_workers=0, allocation_pending=True))

    assert plan.status["phase"] == "Running"
    assert plan.status["generation"] == 1
    assert not plan.delete_pods


def test_pending_allocation_queues_new_job() -> None:
    plan = plan_job(job(allocated_workers=0, allocation_pending=True, waiting=("Scheduling", "waiting")))

    assert plan.status["phase"] == "Queued"
    assert not plan.create_pods


def test_pending_allocation_keeps_rescaling_phase() -> None:
    status = running_status(generation=2)
    status["phase"] = "Rescaling"

    plan = plan_job(job(status, group(1, 3), allocated_workers=0, allocation_pending=True))

    assert plan.status["phase"] == "Rescaling"
    assert not plan.create_pods
    assert not plan.events
