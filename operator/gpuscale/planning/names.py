"""Names and labels of a TrainingJob's children.

Pod names are `<job>-g<generation>-w<index>` and the headless Service is named after the job, so
worker i of generation g resolves as `<job>-g<g>-w<i>.<job>.<namespace>.svc`. Job names are
DNS-1035 labels of at most 40 characters (the CRD rejects others at admission), which leaves
room for a 17-digit generation plus a 2-digit index within the 63 characters of a DNS label.
"""

from __future__ import annotations

from gpuscale.api.models import GROUP, MAX_WORKERS

LABEL_JOB_NAME = f"{GROUP}/job-name"
LABEL_WORKER_INDEX = f"{GROUP}/worker-index"
LABEL_GENERATION = f"{GROUP}/generation"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "gpuscale-operator"
# The size of the group a pod belongs to, which is the worker count in the pod's TF_CONFIG.
ANNOTATION_NUM_WORKERS = f"{GROUP}/num-workers"

MAX_DNS_LABEL_LENGTH = 63


def service_name(job_name: str) -> str:
    """Return the name of the job's headless Service, which is the job's own name."""
    return job_name


def pod_name(job_name: str, generation: int, index: int) -> str:
    """Return the name (and hostname) of worker `index` in worker-group `generation`."""
    if generation < 1:
        raise ValueError(f"generation {generation} is invalid; worker-group generations start at 1")
    if not 0 <= index < MAX_WORKERS:
        raise ValueError(f"worker index {index} is out of range 0..{MAX_WORKERS - 1}")
    name = f"{job_name}-g{generation}-w{index}"
    if len(name) > MAX_DNS_LABEL_LENGTH:
        raise ValueError(
            f"pod name {name!r} is {len(name)} characters long, more than a DNS label's "
            f"{MAX_DNS_LABEL_LENGTH}; the job name {job_name!r} is too long"
        )
    return name


def worker_host(job_name: str, namespace: str, generation: int, index: int) -> str:
    """Return the DNS name of a worker pod: `<pod>.<service>.<namespace>.svc`."""
    return f"{pod_name(job_name, generation, index)}.{service_name(job_name)}.{namespace}.svc"


def job_labels(job_name: str) -> dict[str, str]:
    """Return the labels of every child of the job."""
    return {LABEL_JOB_NAME: job_name, LABEL_MANAGED_BY: MANAGED_BY}


def job_selector(job_name: str) -> dict[str, str]:
    """Return the label selector (matchLabels form) of all of the job's pods, every generation."""
    return {LABEL_JOB_NAME: job_name}


def job_selector_string(job_name: str) -> str:
    """Return the job's pod selector in the string form of `kubectl -l` and status.selector."""
    return f"{LABEL_JOB_NAME}={job_name}"


def pod_labels(job_name: str, generation: int, index: int) -> dict[str, str]:
    """Return the labels of one worker pod."""
    return {
        **job_labels(job_name),
        LABEL_WORKER_INDEX: str(index),
        LABEL_GENERATION: str(generation),
    }
