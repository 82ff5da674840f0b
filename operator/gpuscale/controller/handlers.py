"""kopf handlers: every event of a TrainingJob or of one of its pods reconciles that job.

Run with `kopf run -m gpuscale.controller.handlers --all-namespaces`. The handlers keep no state of
their own: each pass reads the job and its pods from the API server (see `reconcile`), so the
operator can stop and start at any moment.

Nothing here adds a finalizer (no deletion handlers, no kopf timers or daemons): deleting a job
while the operator is down still works, and the garbage collector removes its children through
their ownerReferences. The allocation cycle started at start-up also reconciles every job on its interval,
which covers missed events, deadlines and TTLs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict

import kopf
from kubernetes import client, config

from gpuscale.api.models import GROUP, VERSION
from gpuscale.controller.allocation import CostLedger, PassResult, run_pass
from gpuscale.controller.kube import KubeApi
from gpuscale.controller.reconcile import Allocation, reconcile, utc_now
from gpuscale.planning.names import LABEL_JOB_NAME, LABEL_MANAGED_BY, MANAGED_BY

RESYNC_INTERVAL_SECONDS = 10.0
# After a poke, wait this long so that a burst of events (a job and its pods) makes one pass.
POKE_SETTLE_SECONDS = 0.2
# The allocation of a job that no pass has decided yet: a new job, or every job right after an
# operator restart. A running group keeps its size until the first pass; a new job waits for it.
AWAITING_ALLOCATION = Allocation(workers=0, waiting=("Scheduling", "waiting for the next allocation pass"),
                                 waiting_reason="Scheduling", pending=True)
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
            reconcile(memo.api, namespace, name, logger=logger,
                      allocation=memo.allocations.get(f"{namespace}/{name}", AWAITING_ALLOCATION))
        except client.ApiException as error:
            if error.status == 403 and "being terminated" in (error.body or ""):
                logger.info("the namespace is being deleted; leaving the job to the garbage collector")
                return
            logger.error("reconcile failed, will retry on the next event or pass: API error %s %s: %s",
                         error.status, error.reason, (error.body or "")[:300])
        except Exception:  # noqa: BLE001 - one bad object must not take the operator down
            logger.exception("reconcile failed with an unexpected error; will retry on the next pass")


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
    # kopf gives each object a shallow copy of this memo, so shared state lives in mutable
    # containers created here and is updated in place, never rebound.
    memo.allocations = {}
    memo.last_targets = {}
    memo.policy_generations = {}
    memo.ledger = CostLedger()
    memo.loop = asyncio.get_running_loop()
    memo.poke = asyncio.Event()
    memo.cycle_task = asyncio.create_task(cycle_forever(memo))


@kopf.on.cleanup()
async def stop_cycle(memo: kopf.Memo, **_) -> None:
    task = getattr(memo, "cycle_task", None)
    if task is not None:
        task.cancel()


def poke(memo: kopf.Memo) -> None:
    """Ask for an allocation pass now (thread-safe: handlers run in worker threads)."""
    memo.loop.call_soon_threadsafe(memo.poke.set)


async def cycle_forever(memo: kopf.Memo) -> None:
    """Allocate, then reconcile every job, on the scheduling interval or sooner when poked.

    The pass also covers deadlines, TTLs and events missed while the operator was down.
    """
    while True:
        interval = RESYNC_INTERVAL_SECONDS
        try:
            interval = min(interval, await asyncio.to_thread(run_cycle, memo))
        except Exception:  # noqa: BLE001 - the loop must survive any one bad pass
            log.exception("allocation pass failed; keeping the previous decisions and retrying")
        try:
            await asyncio.wait_for(memo.poke.wait(), timeout=interval)
            # Let a burst of events (a job and its pods) settle into one pass.
            await asyncio.sleep(POKE_SETTLE_SECONDS)
        except asyncio.TimeoutError:
            pass
        memo.poke.clear()


def run_cycle(memo: kopf.Memo) -> float:
    """Run one allocation pass and reconcile every job; return the seconds until the next pass."""
    result = run_pass(memo.api, memo.ledger, utc_now())
    for key in set(memo.allocations) - set(result.allocations):
        memo.allocations.pop(key, None)
    memo.allocations.update(result.allocations)
    changed = {key for key, d in result.decisions.items() if memo.last_targets.get(key) != d.target_workers}
    publish_pass(memo, result)
    # Jobs whose target changed go first, so a new job does not wait behind every other job.
    for key in sorted(result.jobs, key=lambda k: k not in changed):
        namespace, name = key.split("/", 1)
        reconcile_safely(memo, namespace, name)
    return result.interval_seconds


def publish_pass(memo: kopf.Memo, result: PassResult) -> None:
    """Post an Event for every changed decision and write each CostPolicy's status."""
    for key, decision in result.decisions.items():
        previous = memo.last_targets.get(key)
        memo.last_targets[key] = decision.target_workers
        if decision.change is None or previous == decision.target_workers or key not in result.jobs:
            continue
        change = decision.change
        try:
            memo.api.post_event(result.jobs[key], "Normal", change.reason.value, change.message)
        except client.ApiException as error:
            log.error("failed to post the %s event of %s: API error %s", change.reason.value, key, error.status)
        job_logger(*key.split("/", 1)).info("decision %s: %d -> %d workers: %s", change.reason.value,
                                            change.from_workers, change.to_workers, change.message)
    for name, status in result.policy_status.items():
        try:
            memo.api.patch_cost_policy_status(name, status)
        except client.ApiException as error:
            log.error("failed to write the status of CostPolicy %s: API error %s %s", name, error.status, error.reason)


@kopf.on.event(GROUP, VERSION, "trainingjobs")
def on_job_event(event: kopf.RawEvent, namespace: str, name: str, memo: kopf.Memo, **_) -> None:
    if event["type"] == "DELETED":
        memo.locks.forget(namespace, name)
        poke(memo)
        return
    if f"{namespace}/{name}" not in memo.allocations:
        poke(memo)
    reconcile_safely(memo, namespace, name)


@kopf.on.event("", "v1", "pods", labels={LABEL_JOB_NAME: kopf.PRESENT, LABEL_MANAGED_BY: MANAGED_BY})
def on_pod_event(event: kopf.RawEvent, labels: kopf.Labels, namespace: str, memo: kopf.Memo, **_) -> None:
    if event["type"] == "DELETED":
        # GPUs were freed: a waiting job may fit now.
        poke(memo)
    reconcile_safely(memo, namespace, labels[LABEL_JOB_NAME])


@kopf.on.event(GROUP, VERSION, "costpolicies")
def on_cost_policy_event(event: kopf.RawEvent, name: str, meta: kopf.Meta, memo: kopf.Memo, **_) -> None:
    # A new ceiling or price takes effect at the next pass; status writes of our own change nothing.
    generation = meta.get("generation")
    if event["type"] != "MODIFIED" or memo.policy_generations.get(name) != generation:
        memo.policy_generations[name] = generation
        poke(memo)
