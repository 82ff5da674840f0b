"""Reconcile one TrainingJob: read it and its children, plan, apply the plan.

This is the only place that turns a `Plan` into API calls. The order matters for restart safety:
the status (with any new worker-group generation) is written first, then old pods are deleted,
then the Service and new pods are created. A crash between two steps leaves a state from which
the next pass continues without duplicate pods or a miscounted restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from kubernetes.client.rest import ApiException

from gpuscale.api.models import GROUP
from gpuscale.api.parsing import InvalidObjectError, parse_training_job_spec
from gpuscale.controller.kube import KubeApi
from gpuscale.planning.children import CONTAINER_NAME, JobIdentity, build_service, build_worker_pod
from gpuscale.planning.conditions import set_condition
from gpuscale.planning.lifecycle import Event, JobState, ObservedPod, Plan, plan_job
from gpuscale.planning.names import (
    ANNOTATION_NUM_WORKERS,
    LABEL_GENERATION,
    LABEL_WORKER_INDEX,
    job_selector_string,
    service_name,
)

# Spec fields that do not shape a worker pod: changing them never replaces the running group.
NON_TEMPLATE_FIELDS = ("workers", "suspend", "priority", "backoffLimit", "activeDeadlineSeconds",
                       "ttlSecondsAfterFinished", "costCeilingPerHour", "maxTotalCost")
ANNOTATION_TEMPLATE_HASH = f"{GROUP}/template-hash"

# Status fields that kopf or other writers own; the planner neither reads nor compares them.
FOREIGN_STATUS_FIELDS = ("kopf",)


@dataclass(frozen=True)
class Allocation:
    """Decision of the allocation loop for one job."""

    workers: int
    blocked: tuple[str, str, str] | None = None
    waiting: tuple[str, str] | None = None
    # No decision yet: the job keeps its running group, or waits when it has none.
    pending: bool = False
    queue_position: int | None = None
    waiting_reason: str | None = None
    cost_per_hour: str | None = None
    total_cost: str | None = None


def template_hash(spec: dict) -> str:
    """Hash the spec fields that shape a worker pod (image, command, args, env, resources, ...)."""
    shaping = {key: value for key, value in spec.items() if key not in NON_TEMPLATE_FIELDS}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def observe_pod(pod: dict) -> ObservedPod | None:
    """Convert a worker pod to what the planner reads; None for a pod without the operator's labels."""
    metadata = pod["metadata"]
    labels = metadata.get("labels") or {}
    try:
        generation = int(labels[LABEL_GENERATION])
        index = int(labels[LABEL_WORKER_INDEX])
        group_size = int((metadata.get("annotations") or {})[ANNOTATION_NUM_WORKERS])
    except (KeyError, ValueError):
        return None
    status = pod.get("status") or {}
    exit_code = message = None
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if container.get("name") == CONTAINER_NAME and terminated:
            exit_code = terminated.get("exitCode")
            message = terminated.get("message")
    return ObservedPod(
        name=metadata["name"], generation=generation, index=index, group_size=group_size,
        phase=status.get("phase") or "Pending", deleting=bool(metadata.get("deletionTimestamp")),
        exit_code=exit_code, termination_message=message,
        template_hash=(metadata.get("annotations") or {}).get(ANNOTATION_TEMPLATE_HASH),
    )


def status_patch(current: dict, desired: dict) -> dict:
    """Return the JSON merge patch from `current` to `desired`: a dropped field is sent as null."""
    patch = dict(desired)
    for key in current:
        if key not in desired:
            patch[key] = None
    return patch


def _own_status(body: dict) -> dict:
    status = dict(body.get("status") or {})
    for key in FOREIGN_STATUS_FIELDS:
        status.pop(key, None)
    return status


def reconcile(api: KubeApi, namespace: str, name: str, *, logger: logging.Logger,
              allocation: Allocation | None = None, now: datetime | None = None) -> Plan | None:
    """Bring one TrainingJob one step toward its desired state; return the plan that was applied."""
    now = now or utc_now()

    # 1. Read the job; a job being deleted is left to the garbage collector.
    body = api.get_job(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    try:
        spec = parse_training_job_spec(body.get("spec") or {}, name)
    except InvalidObjectError as error:
        _report_invalid(api, body, error, logger, now)
        return None

    # 2. Read its children and plan.
    pods = [p for p in map(observe_pod, api.list_pods(namespace, job_selector_string(name))) if p]
    state = JobState(
        name=name, min_workers=spec.workers.min, max_workers=spec.workers.max, backoff_limit=spec.backoff_limit,
        status=_own_status(body), pods=pods, service_exists=api.service_exists(namespace, service_name(name)),
        now=now, metadata_generation=body["metadata"].get("generation", 1), suspend=spec.suspend,
        active_deadline_seconds=spec.active_deadline_seconds,
        ttl_seconds_after_finished=spec.ttl_seconds_after_finished,
        allocated_workers=allocation.workers if allocation else None,
        blocked=allocation.blocked if allocation else None,
        waiting=allocation.waiting if allocation else None,
        allocation_pending=allocation.pending if allocation else False,
        template_hash=template_hash(body.get("spec") or {}),
    )
    plan = plan_job(state)
    status = plan.status
    status["gpus"] = status.get("workers", 0) * spec.gpus_per_worker
    # The scale subresource reports this selector (`kubectl get --subresource=scale`).
    status["selector"] = job_selector_string(name)
    if allocation is not None:
        _apply_allocation_fields(status, allocation)

    # 3. Apply: status first, then deletions, then creations.
    current = _own_status(body)
    if status != current:
        api.patch_job_status(namespace, name, status_patch(current, status))
    for event in plan.events:
        log = logger.warning if event.type == "Warning" else logger.info
        log("%s: %s", event.reason, event.message)
        _post_event(api, body, event, logger)
    if plan.delete_pods:
        logger.info("deleting pods %s (phase %s)", ", ".join(plan.delete_pods), status.get("phase"))
    for pod_name in plan.delete_pods:
        api.delete_pod(namespace, pod_name)
    identity = JobIdentity(name=name, namespace=namespace, uid=body["metadata"]["uid"])
    if plan.delete_service:
        api.delete_service(namespace, service_name(name))
    if plan.create_service:
        api.create_service(build_service(spec, identity))
    spec_hash = template_hash(body.get("spec") or {})
    for pod in plan.create_pods:
        manifest = build_worker_pod(spec, identity, generation=pod.generation, num_workers=pod.group_size,
                                    index=pod.index)
        manifest["metadata"]["annotations"][ANNOTATION_TEMPLATE_HASH] = spec_hash
        api.create_pod(manifest)
    if plan.create_pods:
        logger.info("created %d worker pods of generation %d", len(plan.create_pods), plan.create_pods[0].generation)
    if plan.delete_job:
        logger.info("deleting the job: ttlSecondsAfterFinished has passed")
        api.delete_job(namespace, name)
    return plan


def _apply_allocation_fields(status: dict, allocation: Allocation) -> None:
    for key, value in (("queuePosition", allocation.queue_position), ("waitingReason", allocation.waiting_reason),
                       ("costPerHour", allocation.cost_per_hour), ("totalCost", allocation.total_cost)):
        if value is None:
            status.pop(key, None)
        else:
            status[key] = value


def _post_event(api: KubeApi, body: dict, event: Event, logger: logging.Logger) -> None:
    try:
        api.post_event(body, event.type, event.reason, event.message)
    except ApiException as error:
        if error.status == 403 and "being terminated" in (error.body or ""):
            return
        logger.error("failed to post the %s event: API error %s %s", event.reason, error.status, error.reason)


def _report_invalid(api: KubeApi, body: dict, error: InvalidObjectError, logger: logging.Logger,
                    now: datetime) -> None:
    """Mark a job the operator cannot handle (it passed admission but not the models) and keep it."""
    status = _own_status(body)
    conditions = status.setdefault("conditions", [])
    message = str(error)[:1024]
    before = list(map(dict, conditions))
    set_condition(conditions, "SpecValid", False, "InvalidSpec", message,
                  now=now.strftime("%Y-%m-%dT%H:%M:%SZ"), observed_generation=body["metadata"].get("generation", 1))
    if conditions == before:
        return
    logger.error("cannot handle the job: %s", message)
    _post_event(api, body, Event("Warning", "InvalidSpec", message), logger)
    try:
        api.patch_job_status(body["metadata"]["namespace"], body["metadata"]["name"], status)
    except ApiException as patch_error:
        logger.error("failed to record the InvalidSpec condition: %s", patch_error.reason)
