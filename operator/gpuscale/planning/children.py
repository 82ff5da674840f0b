"""The headless Service and the worker pods of a TrainingJob, as plain dicts ready for the API.

These builders are pure: they take the parsed spec and the job's identity and return the objects
the controller creates. Each pod carries the environment the trainer relies on (TF_CONFIG and the
GPUSCALE_* variables), runs under the restricted Pod Security Standard, and is owned by the job
(controller: true), so the garbage collector deletes it with the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpuscale.api.models import (
    API_VERSION,
    CHECKPOINT_EMPTYDIR_VOLUME,
    TRAINING_JOB_KIND,
    TrainingJobSpec,
)
from gpuscale.planning.names import (
    ANNOTATION_NUM_WORKERS,
    job_labels,
    job_selector,
    pod_labels,
    pod_name,
    service_name,
)
from gpuscale.planning.tfconfig import tf_config_json

DEFAULT_COMMAND = ["python", "-m", "gpuscale_trainer"]
CONTAINER_NAME = "trainer"
PORT_NAME = "tf-grpc"
# The file the kubelet reads the termination message from. The trainer writes its summary there.
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# Seconds between SIGTERM and SIGKILL: the trainer saves a checkpoint in that time and exits 75.
TERMINATION_GRACE_PERIOD_SECONDS = 60
# The unprivileged user and group the workers run as (restricted Pod Security Standard).
RUN_AS_USER = 1000
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class JobIdentity:
    """The TrainingJob the children belong to, from its metadata."""

    name: str
    namespace: str
    uid: str


def owner_reference(job: JobIdentity) -> dict[str, Any]:
    """Return the ownerReference that makes the job the controller of a child."""
    return {
        "apiVersion": API_VERSION,
        "kind": TRAINING_JOB_KIND,
        "name": job.name,
        "uid": job.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_service(spec: TrainingJobSpec, job: JobIdentity) -> dict[str, Any]:
    """Build the headless Service that gives every worker pod its DNS name.

    publishNotReadyAddresses lets workers resolve each other before they are Ready, which
    TensorFlow needs because no worker is ready until all of them have connected.
    """
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(job.name),
            "namespace": job.namespace,
            "labels": job_labels(job.name),
            "ownerReferences": [owner_reference(job)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": job_selector(job.name),
            "ports": [
                {"name": PORT_NAME, "port": spec.port, "targetPort": spec.port, "protocol": "TCP"}
            ],
        },
    }


def build_worker_pod(
    spec: TrainingJobSpec, job: JobIdentity, *, generation: int, num_workers: int, index: int
) -> dict[str, Any]:
    """Build worker pod `index` of a group of `num_workers` at worker-group `generation`."""
    name = pod_name(job.name, generation, index)
    template = spec.template
    service_account = template.service_account_name if template else None

    pod_spec: dict[str, Any] = {
        "hostname": name,
        "subdomain": service_name(job.name),
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": TERMINATION_GRACE_PERIOD_SECONDS,
        # Thousands of Service variables in busy namespaces are of no use to a trainer.
        "enableServiceLinks": False,
        "automountServiceAccountToken": service_account is not None,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            # Makes mounted volumes (a checkpoint PVC) writable by the trainer's group.
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(spec, job, generation, num_workers, index)],
        "volumes": _volumes(spec),
    }
    if service_account is not None:
        pod_spec["serviceAccountName"] = service_account
    if template and template.node_selector:
        pod_spec["nodeSelector"] = dict(template.node_selector)
    if template and template.tolerations:
        pod_spec["tolerations"] = [
            toleration.model_dump(by_alias=True, exclude_none=True)
            for toleration in template.tolerations
        ]

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": job.namespace,
            "labels": pod_labels(job.name, generation, index),
            "annotations": {ANNOTATION_NUM_WORKERS: str(num_workers)},
            "ownerReferences": [owner_reference(job)],
        },
        "spec": pod_spec,
    }


def build_worker_pods(
    spec: TrainingJobSpec, job: JobIdentity, *, generation: int, num_workers: int
) -> list[dict[str, Any]]:
    """Build all `num_workers` pods of worker-group `generation`, in index order."""
    return [
        build_worker_pod(spec, job, generation=generation, num_workers=num_workers, index=index)
        for index in range(num_workers)
    ]


def _container(
    spec: TrainingJobSpec, job: JobIdentity, generation: int, num_workers: int, index: int
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "command": list(spec.command) if spec.command else list(DEFAULT_COMMAND),
        "env": _env(spec, job, generation, num_workers, index),
        "ports": [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}],
        "resources": _resources(spec),
        "volumeMounts": _volume_mounts(spec),
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if spec.args:
        container["args"] = list(spec.args)
    if spec.image_pull_policy is not None:
        container["imagePullPolicy"] = spec.image_pull_policy
    return container


def _env(
    spec: TrainingJobSpec, job: JobIdentity, generation: int, num_workers: int, index: int
) -> list[dict[str, Any]]:
    # The operator's variables come first so that the job's own env may refer to them as $(NAME).
    operator_env = {
        "TF_CONFIG": tf_config_json(
            job.name, job.namespace, generation, num_workers, index, spec.port
        ),
        "GPUSCALE_JOB_NAME": job.name,
        "GPUSCALE_NUM_WORKERS": str(num_workers),
        "GPUSCALE_WORKER_INDEX": str(index),
        "GPUSCALE_GENERATION": str(generation),
        "GPUSCALE_CHECKPOINT_DIR": spec.checkpoint.path,
        "GPUSCALE_TERMINATION_LOG": TERMINATION_MESSAGE_PATH,
    }
    env = [{"name": name, "value": value} for name, value in operator_env.items()]
    for variable in spec.env or []:
        env.append(variable.model_dump(by_alias=True, exclude_none=True))
    return env


def _resources(spec: TrainingJobSpec) -> dict[str, Any]:
    resources: dict[str, dict[str, Any]] = {}
    if spec.resources is not None:
        for kind in ("requests", "limits"):
            quantities = getattr(spec.resources, kind)
            if quantities is not None:
                values = quantities.model_dump(exclude_none=True)
                if values:
                    resources[kind] = {name: str(value) for name, value in values.items()}
    if spec.gpus_per_worker > 0:
        resources.setdefault("limits", {})[GPU_RESOURCE] = str(spec.gpus_per_worker)
    return resources


def _volumes(spec: TrainingJobSpec) -> list[dict[str, Any]]:
    volumes = [
        volume.model_dump(by_alias=True, exclude_none=True)
        for volume in (spec.template.volumes or [] if spec.template else [])
    ]
    if spec.checkpoint.volume is None:
        volumes.append({"name": CHECKPOINT_EMPTYDIR_VOLUME, "emptyDir": {}})
    return volumes


def _volume_mounts(spec: TrainingJobSpec) -> list[dict[str, Any]]:
    checkpoint_volume = spec.checkpoint.volume or CHECKPOINT_EMPTYDIR_VOLUME
    mounts = [{"name": checkpoint_volume, "mountPath": spec.checkpoint.path}]
    if spec.template is not None:
        for mount in spec.template.volume_mounts or []:
            mounts.append(mount.model_dump(by_alias=True, exclude_none=True))
    return mounts
