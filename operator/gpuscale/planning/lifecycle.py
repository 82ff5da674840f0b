"""The TrainingJob lifecycle as a pure planner: observed state in, desired changes and status out.

The kopf handlers read the job and its pods, call `plan_job`, and apply the returned `Plan`. Nothing
here talks to the API server, so every transition is unit-tested with plain data.

A job runs one worker group at a time. A group is identified by `status.generation` and every pod
of it carries that number in a label. Restarting after a failure, rescaling and resuming after a
suspension all start a new generation. The planner records the new number in status first, then
deletes the old group, waits until its pods are gone, and only then creates the new pods. So two
generations never run at once and an operator restart at any point reaches the same state.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gpuscale.planning.conditions import set_condition

# The trainer's exit code for "SIGTERM received, checkpoint saved": a preemption, not a failure.
EXIT_CODE_PREEMPTED = 75

QUEUED = "Queued"
PENDING = "Pending"
RUNNING = "Running"
RESCALING = "Rescaling"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
SUSPENDED = "Suspended"
FINISHED_PHASES = (SUCCEEDED, FAILED)


@dataclass(frozen=True)
class ObservedPod:
    """A worker pod as the planner needs it; built from the API object by the controller."""

    name: str
    generation: int
    index: int
    group_size: int
    phase: str
    deleting: bool = False
    exit_code: int | None = None
    termination_message: str | None = None
    # Hash of the spec fields the pod was built from; None for pods created before it was recorded.
    template_hash: str | None = None

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


@dataclass(frozen=True)
class JobState:
    """Everything the planner reads about one TrainingJob."""

    name: str
    min_workers: int
    max_workers: int
    backoff_limit: int
    status: dict
    pods: list[ObservedPod]
    service_exists: bool
    now: datetime
    metadata_generation: int = 1
    suspend: bool = False
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None
    # The allocator's decision; None when no allocator runs, and then the job runs at min_workers.
    allocated_workers: int | None = None
    # True before the allocator's first decision about this job (a new job, or any job right after
    # an operator restart): a running group keeps its size and a job without one waits.
    allocation_pending: bool = False
    # Set when the job must not run: (phase, reason, message), for example ("Suspended",
    # "BudgetExceeded", ...) or ("Queued", "CostCeilingBelowMinimum", ...).
    blocked: tuple[str, str, str] | None = None
    # Why the allocator keeps the job waiting: (reason, message), shown while it is queued.
    waiting: tuple[str, str] | None = None
    # Hash of the spec fields that shape a worker pod; a group built from another hash is replaced.
    template_hash: str | None = None


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the TrainingJob."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class PodToCreate:
    generation: int
    index: int
    group_size: int


@dataclass
class Plan:
    """The changes that bring the cluster to the desired state, and the status to write."""

    status: dict
    create_service: bool = False
    create_pods: list[PodToCreate] = field(default_factory=list)
    delete_pods: list[str] = field(default_factory=list)
    delete_service: bool = False
    delete_job: bool = False
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=None)


def parse_result(message: str | None) -> dict | None:
    """Decode the chief's termination message; a message that is not a JSON object is kept as text."""
    if not message:
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return {"message": message.strip()}
    return value if isinstance(value, dict) else {"message": message.strip()}


class _Planner:
    """One planning pass; a class only so the steps share the job, the plan and the clock."""

    def __init__(self, job: JobState) -> None:
        self.job = job
        self.status = copy.deepcopy(job.status) or {}
        self.status.setdefault("generation", 0)
        self.status.setdefault("restarts", 0)
        self.status.setdefault("conditions", [])
        self.plan = Plan(status=self.status)
        self.generation: int = self.status["generation"]
        self.current = [p for p in job.pods if p.generation == self.generation]
        self.stale = [p for p in job.pods if p.generation != self.generation]

    # --- helpers ---

    def condition(self, type_: str, status: bool, reason: str, message: str) -> None:
        set_condition(self.status["conditions"], type_, status, reason, message,
                      now=_timestamp(self.job.now), observed_generation=self.job.metadata_generation)

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.plan.events.append(Event("Warning" if warning else "Normal", reason, message))

    def set_phase(self, phase: str, message: str) -> None:
        if self.status.get("phase") != phase:
            self.event(phase, message, warning=phase == FAILED)
        self.status["phase"] = phase
        self.status["message"] = message

    def delete(self, pods: list[ObservedPod]) -> None:
        for pod in pods:
            if not pod.deleting and pod.name not in self.plan.delete_pods:
                self.plan.delete_pods.append(pod.name)

    def target_workers(self) -> int:
        if self.job.allocation_pending:
            live = [p for p in self.current if not p.deleting]
            return live[0].group_size if live else 0
        if self.job.allocated_workers is None:
            return self.job.min_workers
        return self.job.allocated_workers

    def start_new_generation(self, phase: str, message: str) -> None:
        """Record generation g+1; its pods are created once every pod of generation g is gone."""
        self.generation += 1
        self.status["generation"] = self.generation
        self.delete(self.current)
        self.stale += self.current
        self.current = []
        self.set_phase(phase, message)

    # --- the pass ---

    def run(self) -> Plan:
        self.status["observedGeneration"] = self.job.metadata_generation
        if self.status.get("phase") in FINISHED_PHASES:
            self.finished()
        elif self.job.blocked is not None:
            self.blocked()
        elif self.job.suspend:
            self.suspended()
        elif self.deadline_passed():
            self.fail("DeadlineExceeded",
                      f"the job ran longer than activeDeadlineSeconds={self.job.active_deadline_seconds}")
        else:
            self.active()
        self.count_workers()
        return self.plan

    def finished(self) -> None:
        # 1. Stop whatever still runs or keeps GPUs: pods and the Service.
        self.delete(self.job.pods)
        self.plan.delete_service = self.job.service_exists

        # 2. Delete the job itself once ttlSecondsAfterFinished has passed.
        ttl = self.job.ttl_seconds_after_finished
        completed = _parse_timestamp(self.status.get("completionTime"))
        if ttl is not None and completed is not None:
            expires = completed + timedelta(seconds=ttl)
            if self.job.now >= expires:
                self.plan.delete_job = True
            else:
                self.plan.requeue_after = (expires - self.job.now).total_seconds()

    def finish(self, phase: str, reason: str, message: str) -> None:
        self.status["completionTime"] = _timestamp(self.job.now)
        self.set_phase(phase, message)
        self.condition("Ready", False, reason, message)
        self.condition(SUCCEEDED if phase == SUCCEEDED else FAILED, True, reason, message)
        self.finished()

    def fail(self, reason: str, message: str) -> None:
        self.finish(FAILED, reason, message)

    def blocked(self) -> None:
        phase, reason, message = self.job.blocked
        if self.current:
            self.start_new_generation(phase, message)
        self.delete(self.stale)
        self.set_phase(phase, message)
        self.status["waitingReason"] = reason
        self.condition("Admitted", False, reason, message)
        if phase == SUSPENDED:
            self.condition("Suspended", True, reason, message)

    def suspended(self) -> None:
        # Pods the operator deletes here never count as failures; resuming starts a new generation.
        if self.current:
            self.start_new_generation(SUSPENDED, "suspended: spec.suspend is true; the checkpoint is kept")
        self.delete(self.stale)
        self.set_phase(SUSPENDED, "suspended: spec.suspend is true; the checkpoint is kept")
        self.condition("Suspended", True, "SuspendRequested", "spec.suspend is true")
        self.condition("Ready", False, "Suspended", "the job is suspended")

    def deadline_passed(self) -> bool:
        deadline = self.job.active_deadline_seconds
        started = _parse_timestamp(self.status.get("startTime"))
        if deadline is None or started is None:
            return False
        remaining = (started + timedelta(seconds=deadline) - self.job.now).total_seconds()
        if remaining > 0:
            self.plan.requeue_after = remaining
            return False
        return True

    def active(self) -> None:
        self.condition("Suspended", False, "Resumed", "spec.suspend is false")
        target = self.target_workers()

        # 1. Read what the current group's pods report: success, failure, loss.
        if self.current and self.handle_exits():
            return

        # 2. No allocation: wait in the queue. Before the first decision after an operator restart,
        # a job between groups (rescaling, restarting) keeps its phase instead of showing Queued.
        if target == 0 and self.job.allocation_pending and self.status.get("phase") in (PENDING, RESCALING):
            self.delete(self.stale)
            return
        if target == 0:
            reason, message = self.job.waiting or ("Queued", "waiting for GPUs or budget")
            if self.current:
                self.start_new_generation(QUEUED, f"{message}; the workers were stopped")
            else:
                self.set_phase(QUEUED, message)
            self.condition("Admitted", False, reason, message)
            self.delete(self.stale)
            return
        self.condition("Admitted", True, "Admitted", f"admitted at {target} workers")

        # 3. The group runs at another size than the target: start a new generation at the target.
        group_size = self.current[0].group_size if self.current else None
        if group_size is not None and group_size != target:
            self.start_new_generation(RESCALING, f"rescaling from {group_size} to {target} workers as generation "
                                                 f"{self.generation + 1}; workers checkpoint before they stop")
            group_size = None

        # 3b. The spec that shapes the pods changed (image, args, resources...): roll it out as a
        # new generation, because a running group cannot change in place.
        if group_size is not None and self.job.template_hash is not None and any(
                p.template_hash not in (None, self.job.template_hash) for p in self.current):
            self.event("SpecChanged", f"the pod spec changed; replacing the {group_size} workers with generation "
                                      f"{self.generation + 1}")
            self.start_new_generation(PENDING, "rolling out the changed spec; workers checkpoint before they stop")
            group_size = None

        # 4. Old pods still stopping: wait, so that generations never overlap.
        self.delete(self.stale)
        if self.stale:
            if self.status.get("phase") not in (RESCALING, PENDING):
                self.set_phase(PENDING, "waiting for the previous worker group to stop")
            return

        # 5. Create the group: the Service first, then every missing pod.
        if self.generation == 0:
            self.generation = 1
            self.status["generation"] = 1
        if not self.job.service_exists:
            self.plan.create_service = True
        size = group_size if group_size is not None else target
        present = {p.index for p in self.current}
        self.plan.create_pods = [PodToCreate(self.generation, i, size) for i in range(size) if i not in present]
        self.status.setdefault("startTime", _timestamp(self.job.now))

        # 6. Running once every worker of the group runs. A worker other than the chief may finish
        # first: it still counts, because the job ends only when the chief does.
        running = sum(1 for p in self.current if p.phase in ("Running", "Succeeded")) if not self.plan.create_pods else 0
        if running == size:
            if self.status.get("phase") != RUNNING:
                self.set_phase(RUNNING, f"{size} workers running (generation {self.generation})")
            self.condition("Ready", True, "AllWorkersRunning", f"{size} of {size} workers running")
            self.condition("Rescaling", False, "AtTarget", f"running at {size} workers")
        else:
            if self.status.get("phase") not in (PENDING, RESCALING):
                self.set_phase(PENDING, f"starting {size} workers (generation {self.generation})")
            self.condition("Ready", False, "WorkersStarting", f"{running} of {size} workers running")
        if self.status.get("phase") == RESCALING:
            self.condition("Rescaling", True, "Rescaling", self.status["message"])

    def handle_exits(self) -> bool:
        """Act on finished or lost pods of the current group; return True when the pass is done."""
        chief = next((p for p in self.current if p.index == 0), None)

        # a. The chief finished successfully: the job is done, whatever the other workers do.
        if chief is not None and chief.phase == "Succeeded":
            self.status["result"] = parse_result(chief.termination_message)
            self.finish(SUCCEEDED, "ChiefSucceeded", "worker 0 (the chief) exited with status 0")
            return True

        # b. A worker failed. A preempted worker (exit 75) restarts the group without counting.
        failed = [p for p in self.current if p.phase == "Failed"]
        if failed:
            first = min(failed, key=lambda p: p.index)
            if all(p.exit_code == EXIT_CODE_PREEMPTED for p in failed):
                self.event("Preempted", f"worker {first.index} stopped after saving a checkpoint "
                                        f"(exit {EXIT_CODE_PREEMPTED}); restarting the group")
                self.start_new_generation(PENDING, "restarting after a preemption")
                return False
            detail = f": {first.termination_message.strip()[:300]}" if first.termination_message else ""
            return self.count_failure(
                f"worker {first.index} ({first.name}) failed with exit code {first.exit_code}{detail}")

        # c. A pod of a group that was fully running disappeared (deleted or evicted by someone else):
        # the group's collective is broken, so restart it, without counting, as for a preemption.
        size = self.current[0].group_size
        present = {p.index for p in self.current if not p.deleting}
        lost = sorted(set(range(size)) - present)
        if lost and self.status.get("phase") == RUNNING:
            self.event("WorkerLost", f"worker {lost[0]} disappeared; restarting the group", warning=True)
            self.start_new_generation(PENDING, f"restarting: worker {lost[0]} disappeared")
        return False

    def count_failure(self, message: str) -> bool:
        restarts = self.status["restarts"] + 1
        self.status["restarts"] = restarts
        limit = self.job.backoff_limit
        if restarts > limit:
            self.fail("BackoffLimitExceeded", f"{message}; that is failure {restarts}, over backoffLimit={limit}")
            return True
        self.event("WorkerFailed", f"{message}; restarting the group as generation {self.generation + 1} "
                                   f"(restart {restarts} of {limit})", warning=True)
        self.start_new_generation(PENDING, f"restarting after a failure: {message}")
        return False

    def count_workers(self) -> None:
        self.status["workers"] = sum(1 for p in self.current if p.phase == "Running" and not p.deleting
                                     and p.generation == self.status["generation"])
        if self.status.get("phase") in FINISHED_PHASES or self.job.suspend:
            self.status["targetWorkers"] = 0
        else:
            self.status["targetWorkers"] = self.target_workers()


def plan_job(job: JobState) -> Plan:
    """Return the changes and the status that move one TrainingJob toward its desired state."""
    return _Planner(job).run()
