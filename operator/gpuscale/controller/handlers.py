"""kopf handlers: every event of a TrainingJob or of one of its pods reconciles that job.

Run with `kopf run -m gpuscale.controller.handlers --all-namespaces`. The handlers keep no state of
their own: each pass reads the job and its pods from the API server (see `reconcile`), so the
operator can stop and start at any moment.

Nothing here adds a finalizer (no deletion handlers, no kopf timers or daemons): deleting a job
while the operator is down still works, and the garbage collector removes its children through
their ownerReferences. A resync loop started at start-up covers missed events and deadlines.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict

import kopf
from kubernetes import client, config

from gpuscale.api.models import GROUP, VERSION
from gpuscale.controller.kube import KubeApi
from gpuscale.controller.reconcile import reconcile
from gpuscale.planning.lifecycle import Event
from gpuscale.planning.names import LABEL_JOB_NAME, LABEL_MANAGED_BY, MANAGED_BY

RESYNC_INTERVAL_SECONDS = 10.0
log = logging.getLogger("gpuscale.controller")


class JobLocks:
    """One lock per job, so that a pod event and a job event never reconcile the same job at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)

    def get(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks[(namespace, name)]

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)


def load_api_client() -> client.ApiClient:
    """Use the in-cluster service account when there is one, else KUBECONFIG."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def post_event(body: dict, event: Event) -> None:
    kopf.event(body, type=event.type, reason=event.reason, message=event.message)


def job_logger(namespace: str, name: str) -> logging.LoggerAdapter:
    """Return a logger whose lines name the job, as kopf's per-object loggers do."""
    return _PrefixedLogger(log, {"job": f"{namespace}/{name}"})


class _PrefixedLogger(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        return f"[{self.extra['job']}] {msg}", kwargs


def reconcile_safely(memo: kopf.Memo, namespace: str, name: str) -> None:
    """Reconcile one job and log, never raise, what went wrong, so no object can stop the operator."""
    logger = job_logger(namespace, name)
    with memo.locks.get(namespace, name):
        try:
            reconcile(memo.api, namespace, name, post_event=post_event, logger=logger,
                      allocation=memo.allocations.get((namespace, name)) if memo.allocations else None)
        except client.ApiException as error:
            logger.error("reconcile failed, will retry on the next event or resync: API error %s %s: %s",
                         error.status, error.reason, (error.body or "")[:300])
        except Exception:  # noqa: BLE001 - one bad object must not take the operator down
            logger.exception("reconcile failed with an unexpected error; will retry on the next resync")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    # Keep kopf's bookkeeping in annotations: the status schema declares only the operator's fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    # Transitions are posted as Events explicitly; log lines become Events only from WARNING up.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    memo.api = KubeApi(load_api_client())
    memo.locks = JobLocks()
    memo.allocations = {}
    memo.resync_task = asyncio.create_task(resync_forever(memo))


@kopf.on.cleanup()
async def stop_resync(memo: kopf.Memo, **_) -> None:
    task = getattr(memo, "resync_task", None)
    if task is not None:
        task.cancel()


async def resync_forever(memo: kopf.Memo) -> None:
    """Reconcile every job on an interval: deadlines, TTLs and events missed during a restart."""
    while True:
        await asyncio.sleep(RESYNC_INTERVAL_SECONDS)
        try:
            jobs = await asyncio.to_thread(memo.api.list_jobs)
        except client.ApiException as error:
            log.error("resync could not list TrainingJobs: API error %s %s", error.status, error.reason)
            continue
        for job in jobs:
            metadata = job["metadata"]
            await asyncio.to_thread(reconcile_safely, memo, metadata["namespace"], metadata["name"])


@kopf.on.event(GROUP, VERSION, "trainingjobs")
def on_job_event(event: kopf.RawEvent, namespace: str, name: str, memo: kopf.Memo, **_) -> None:
    if event["type"] == "DELETED":
        memo.locks.forget(namespace, name)
        return
    reconcile_safely(memo, namespace, name)


@kopf.on.event("", "v1", "pods", labels={LABEL_JOB_NAME: kopf.PRESENT, LABEL_MANAGED_BY: MANAGED_BY})
def on_pod_event(labels: kopf.Labels, namespace: str, memo: kopf.Memo, **_) -> None:
    reconcile_safely(memo, namespace, labels[LABEL_JOB_NAME])
