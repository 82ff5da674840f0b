"""Pydantic models of the TrainingJob and CostPolicy resources (training.gpuscale.io/v1alpha1).

These models are the single source of the API: `gpuscale.api.crd` generates the CRD schemas from
them, and the operator parses every object it reads through them. Field names are snake_case in
Python and camelCase on the wire (the alias), as Kubernetes spells them.

Every rule here is also enforced at admission by the generated CRD (OpenAPI keywords for single
fields, CEL `x-kubernetes-validations` for cross-field rules), so an object that the API server
accepts parses here too. Two rules are checked only here: cpu and memory requests must not exceed
their limits, and integer quantities must not be negative.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

GROUP = "training.gpuscale.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
TRAINING_JOB_KIND = "TrainingJob"
TRAINING_JOB_PLURAL = "trainingjobs"
COST_POLICY_KIND = "CostPolicy"
COST_POLICY_PLURAL = "costpolicies"

# The largest worker group one job may ask for. Pod names (<job>-g<generation>-w<index>) would fit
# far larger groups; the bound keeps a single gang from claiming a whole cluster by mistake and
# keeps TF_CONFIG (which lists every worker in every pod's environment) small.
MAX_WORKERS = 64
# The maximum GPUs of one worker. A pod runs on one node, and the largest GPU servers have 16 GPUs
# (8 is common), so a larger request could never be scheduled.
MAX_GPUS_PER_WORKER = 16
# Job names are DNS-1035 labels of at most this many characters, so that every child name
# (<job>-g<generation>-w<index>) and label value stays a valid DNS label of at most 63 characters.
MAX_JOB_NAME_LENGTH = 40
JOB_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

DEFAULT_PORT = 2222
DEFAULT_BACKOFF_LIMIT = 3
DEFAULT_CHECKPOINT_PATH = "/checkpoints"
# The emptyDir volume that contains checkpoints when spec.checkpoint.volume is not set.
CHECKPOINT_EMPTYDIR_VOLUME = "gpuscale-checkpoint"
# Environment variables the operator sets in every worker; spec.env must not set them.
RESERVED_ENV_NAME = "TF_CONFIG"
RESERVED_ENV_PREFIX = "GPUSCALE_"

# US dollars as a plain decimal string: digits, optionally a point and 1 to 6 more digits.
DOLLARS_PATTERN = r"^[0-9]{1,9}(\.[0-9]{1,6})?$"
# A Kubernetes quantity without a sign: "2", "500m", "1.5", "16Gi", "1e3".
QUANTITY_PATTERN = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][0-9]+)?$"
DNS_1123_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_1123_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

Dollars = Annotated[
    str,
    PlainValidator(lambda value: _validate_dollars(value)),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 16,
            "x-kubernetes-validations": [
                {
                    # CEL string literals treat a backslash as an escape, so the pattern's
                    # backslashes are doubled.
                    "rule": "self.matches('" + DOLLARS_PATTERN.replace("\\", "\\\\") + "')",
                    "messageExpression": "'\"' + self + '\" is not an amount of US dollars: write a "
                    'non-negative decimal string such as "12.50" (at most 6 decimal places)\'',
                }
            ],
        }
    ),
]
Quantity = Annotated[
    int | str,
    PlainValidator(lambda value: _validate_quantity(value)),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
DnsLabel = Annotated[
    str, StringConstraints(strict=True, pattern=DNS_1123_LABEL_PATTERN, max_length=63)
]


def _nested_default() -> dict[str, Any]:
    # The CRD default for an optional object whose fields all have defaults: `{}` makes the API
    # server create the object and then fill in each field's own default.
    return {"default": {}}


class SpecModel(BaseModel):
    """Base of every spec model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class StatusModel(BaseModel):
    """Base of every status model: camelCase on the wire, unknown fields ignored on read."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class OpenObject(BaseModel):
    """An object whose fields beyond `name` are passed to Kubernetes unchanged."""

    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------


class Condition(StatusModel):
    """A condition as the Kubernetes API conventions define it."""

    type: StrictStr = Field(description="Condition type in CamelCase, for example Ready.")
    status: Literal["True", "False", "Unknown"]
    reason: StrictStr | None = Field(None, description="CamelCase reason for the last transition.")
    message: StrictStr | None = Field(
        None, description="Human-readable detail of the last transition."
    )
    last_transition_time: datetime | None = Field(
        None, description="When status last changed, RFC 3339."
    )
    observed_generation: StrictInt | None = Field(
        None, ge=0, description="metadata.generation of the object this condition was set from."
    )


CONDITIONS_SCHEMA_EXTRA = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


class LabelSelectorRequirement(SpecModel):
    """One requirement of a label selector."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.operator in ['In', 'NotIn'] ? "
                    "(has(self.values) && size(self.values) > 0) : "
                    "(!has(self.values) || size(self.values) == 0)",
                    "message": "matchExpressions: operators In and NotIn need at least one value, "
                    "Exists and DoesNotExist take no values",
                }
            ]
        }
    )

    key: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=317)]
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[Annotated[str, StringConstraints(strict=True, max_length=63)]] | None = Field(
        None, max_length=64
    )

    @model_validator(mode="after")
    def _check_values(self) -> LabelSelectorRequirement:
        needs_values = self.operator in ("In", "NotIn")
        if needs_values and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value in values")
        if not needs_values and self.values:
            raise ValueError(f"operator {self.operator} takes no values; remove values")
        return self


class LabelSelector(SpecModel):
    """A Kubernetes label selector. An empty selector selects everything."""

    match_labels: (
        dict[str, Annotated[str, StringConstraints(strict=True, max_length=63)]] | None
    ) = Field(None, max_length=64)
    match_expressions: list[LabelSelectorRequirement] | None = Field(None, max_length=64)


# ---------------------------------------------------------------------------------------------
# TrainingJob spec
# ---------------------------------------------------------------------------------------------


class EnvVar(SpecModel):
    """An environment variable in the Kubernetes EnvVar shape."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.value) && has(self.valueFrom))",
                    "message": "env: set either value or valueFrom, not both",
                }
            ]
        }
    )

    name: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]
    value: StrictStr | None = None
    value_from: dict[str, Any] | None = Field(
        None,
        description="A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, "
        "resourceFieldRef), passed to the pod unchanged.",
    )

    @model_validator(mode="after")
    def _check_source(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"env {self.name}: set either value or valueFrom, not both")
        return self


class ResourceList(SpecModel):
    """CPU and memory quantities, for example cpu: "4" and memory: 16Gi."""

    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(SpecModel):
    """CPU and memory of each worker. GPUs are set by spec.gpusPerWorker, not here."""

    requests: ResourceList | None = None
    limits: ResourceList | None = None

    @model_validator(mode="after")
    def _check_requests_within_limits(self) -> Resources:
        if self.requests is None or self.limits is None:
            return self
        for resource in ("cpu", "memory"):
            request = getattr(self.requests, resource)
            limit = getattr(self.limits, resource)
            if request is None or limit is None:
                continue
            if parse_quantity(request) > parse_quantity(limit):
                raise ValueError(
                    f"requests.{resource} {request} is greater than limits.{resource} {limit}; "
                    f"raise the limit or lower the request"
                )
        return self


class Volume(OpenObject):
    """A Kubernetes Volume (persistentVolumeClaim, configMap, secret, emptyDir, ...)."""

    name: DnsLabel


class VolumeMount(SpecModel):
    """A mount of a volume of spec.template.volumes in the worker container."""

    name: DnsLabel
    mount_path: Annotated[str, StringConstraints(strict=True, pattern=r"^/", max_length=4096)]
    sub_path: StrictStr | None = None
    read_only: StrictBool | None = None


class Toleration(SpecModel):
    """A Kubernetes toleration."""

    key: StrictStr | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: StrictStr | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: StrictInt | None = None


class PodTemplateOverride(SpecModel):
    """Settings copied into every worker pod."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.volumeMounts) || self.volumeMounts.all(m, "
                    "has(self.volumes) && self.volumes.exists(v, v.name == m.name))",
                    "message": "template.volumeMounts: every mount must name a volume "
                    "listed in template.volumes",
                },
                {
                    "rule": "!has(self.volumes) || "
                    f"self.volumes.all(v, v.name != '{CHECKPOINT_EMPTYDIR_VOLUME}')",
                    "message": f"template.volumes: the name {CHECKPOINT_EMPTYDIR_VOLUME} is "
                    "reserved for the operator's checkpoint volume; rename the volume",
                },
            ]
        }
    )

    volumes: list[Volume] | None = Field(
        None,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    volume_mounts: list[VolumeMount] | None = Field(None, max_length=64)
    node_selector: (
        dict[str, Annotated[str, StringConstraints(strict=True, max_length=63)]] | None
    ) = Field(None, max_length=64)
    tolerations: list[Toleration] | None = Field(None, max_length=64)
    service_account_name: (
        Annotated[
            str, StringConstraints(strict=True, pattern=DNS_1123_SUBDOMAIN_PATTERN, max_length=253)
        ]
        | None
    ) = Field(
        None,
        description="Service account of the worker pods. When set, its token is mounted; "
        "otherwise pods run without an API token.",
    )

    @model_validator(mode="after")
    def _check_volumes(self) -> PodTemplateOverride:
        names = [volume.name for volume in self.volumes or []]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"template.volumes: duplicate volume names {duplicates}")
        if CHECKPOINT_EMPTYDIR_VOLUME in names:
            raise ValueError(
                f"template.volumes: the name {CHECKPOINT_EMPTYDIR_VOLUME} is reserved for the "
                "operator's checkpoint volume; rename the volume"
            )
        for mount in self.volume_mounts or []:
            if mount.name not in names:
                raise ValueError(
                    f"template.volumeMounts: mount {mount.name!r} names no volume in "
                    f"template.volumes (volumes: {names}); add the volume or fix the name"
                )
        return self


class Workers(SpecModel):
    """Bounds of the worker group; the scheduler picks the size between them."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.min <= self.max",
                    "message": "workers.min must be less than or equal to workers.max; "
                    "lower min or raise max",
                }
            ]
        }
    )

    min: StrictInt = Field(
        ge=1, le=MAX_WORKERS, description=f"Minimum number of workers, 1 to {MAX_WORKERS}."
    )
    max: StrictInt = Field(
        ge=1, le=MAX_WORKERS, description=f"Maximum number of workers, min to {MAX_WORKERS}."
    )

    @model_validator(mode="after")
    def _check_order(self) -> Workers:
        if self.min > self.max:
            raise ValueError(
                f"workers.min ({self.min}) must be less than or equal to workers.max ({self.max}); "
                "lower min or raise max"
            )
        return self


class Checkpoint(SpecModel):
    """The checkpoint folder of the trainer and the volume that contains it."""

    path: Annotated[str, StringConstraints(strict=True, pattern=r"^/", max_length=1024)] = Field(
        DEFAULT_CHECKPOINT_PATH,
        description="Absolute path in the worker container; passed as GPUSCALE_CHECKPOINT_DIR.",
    )
    volume: DnsLabel | None = Field(
        None,
        description="Name of a volume in spec.template.volumes to mount at path (for example a "
        "ReadWriteMany persistentVolumeClaim). Without it the path is an emptyDir, so checkpoints "
        "are lost whenever the worker group restarts or rescales.",
    )


class TrainingJobSpec(SpecModel):
    """Desired state of a TrainingJob: what to run and within which limits."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.checkpoint) || !has(self.checkpoint.volume) || "
                    "(has(self.template) && has(self.template.volumes) && "
                    "self.template.volumes.exists(v, v.name == self.checkpoint.volume))",
                    "message": "checkpoint.volume must name a volume in template.volumes; "
                    "add the volume or fix the name",
                },
                {
                    "rule": "!has(self.checkpoint) || !has(self.template) || "
                    "!has(self.template.volumeMounts) || "
                    "self.template.volumeMounts.all(m, m.mountPath != self.checkpoint.path)",
                    "message": "template.volumeMounts must not mount anything at checkpoint.path; "
                    "the operator mounts the checkpoint volume there",
                },
            ]
        }
    )

    image: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=1024)] = Field(
        description="Container image of every worker, for example gpuscale/trainer:0.1.0."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    command: list[StrictStr] | None = Field(
        None,
        max_length=64,
        description='Container command. Defaults to ["python", "-m", "gpuscale_trainer"].',
    )
    args: list[StrictStr] | None = Field(None, max_length=256, description="Container arguments.")
    env: list[EnvVar] | None = Field(
        None,
        max_length=256,
        description="Extra environment variables; the operator sets TF_CONFIG and GPUSCALE_*.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.all(e, e.name != '{RESERVED_ENV_NAME}' && "
                    f"!e.name.startsWith('{RESERVED_ENV_PREFIX}'))",
                    "message": f"env must not set {RESERVED_ENV_NAME} or {RESERVED_ENV_PREFIX}* "
                    "variables because the operator sets them for each worker; remove them",
                }
            ]
        },
    )
    resources: Resources | None = Field(None, description="CPU and memory of each worker.")
    template: PodTemplateOverride | None = Field(
        None, description="Volumes, node selector, tolerations and service account of the workers."
    )
    workers: Workers
    gpus_per_worker: StrictInt = Field(
        ge=0,
        le=MAX_GPUS_PER_WORKER,
        description="nvidia.com/gpu limit of each worker, a whole number; 0 for CPU-only workers.",
    )
    port: StrictInt = Field(
        DEFAULT_PORT, ge=1024, le=65535, description="TensorFlow gRPC port of every worker."
    )
    checkpoint: Checkpoint = Field(default_factory=Checkpoint, json_schema_extra=_nested_default())
    backoff_limit: StrictInt = Field(
        DEFAULT_BACKOFF_LIMIT,
        ge=0,
        le=1000,
        description="Group restarts after worker failures before the job fails.",
    )
    active_deadline_seconds: StrictInt | None = Field(
        None, ge=1, description="Seconds after the start before a running job is failed."
    )
    ttl_seconds_after_finished: StrictInt | None = Field(
        None, ge=0, description="Seconds after success or failure before the job is deleted."
    )
    suspend: StrictBool = Field(False, description="True removes the workers and keeps the job.")
    priority: StrictInt = Field(
        0, ge=-1000, le=1000, description="Scheduling priority; higher runs first."
    )
    cost_ceiling_per_hour: Dollars | None = Field(
        None,
        description='Most US dollars per hour this job may cost, a decimal string such as "12.50".',
    )
    max_total_cost: Dollars | None = Field(
        None,
        description='Budget in US dollars, a decimal string such as "100". The job is suspended '
        "with reason BudgetExceeded when it is reached.",
    )

    @model_validator(mode="after")
    def _check_env_and_checkpoint(self) -> TrainingJobSpec:
        for variable in self.env or []:
            if variable.name == RESERVED_ENV_NAME or variable.name.startswith(RESERVED_ENV_PREFIX):
                raise ValueError(
                    f"env {variable.name}: {RESERVED_ENV_NAME} and {RESERVED_ENV_PREFIX}* "
                    "variables are set by the operator for each worker; remove it"
                )

        template_volumes = [v.name for v in (self.template.volumes or [])] if self.template else []
        if self.checkpoint.volume is not None and self.checkpoint.volume not in template_volumes:
            raise ValueError(
                f"checkpoint.volume {self.checkpoint.volume!r} names no volume in "
                f"template.volumes (volumes: {template_volumes}); add the volume or fix the name"
            )
        mounts = (self.template.volume_mounts or []) if self.template else []
        for mount in mounts:
            if mount.mount_path == self.checkpoint.path:
                raise ValueError(
                    f"template.volumeMounts: {mount.name!r} is mounted at checkpoint.path "
                    f"{self.checkpoint.path}, where the operator mounts the checkpoint volume; "
                    "mount it elsewhere"
                )
        return self

    def cost_ceiling(self) -> Decimal | None:
        """Return costCeilingPerHour in US dollars, or None when unset."""
        return None if self.cost_ceiling_per_hour is None else Decimal(self.cost_ceiling_per_hour)

    def budget(self) -> Decimal | None:
        """Return maxTotalCost in US dollars, or None when unset."""
        return None if self.max_total_cost is None else Decimal(self.max_total_cost)


# ---------------------------------------------------------------------------------------------
# TrainingJob status
# ---------------------------------------------------------------------------------------------

Phase = Literal["Queued", "Pending", "Running", "Rescaling", "Succeeded", "Failed", "Suspended"]
PHASES: tuple[str, ...] = Phase.__args__  # type: ignore[attr-defined]
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


class TrainingJobStatus(StatusModel):
    """Observed state of a TrainingJob, written only by the operator."""

    phase: Phase | None = None
    workers: StrictInt | None = Field(None, ge=0, description="Workers running now.")
    target_workers: StrictInt | None = Field(
        None, ge=0, description="Workers the scheduler assigned; 0 while queued."
    )
    gpus: StrictInt | None = Field(
        None, ge=0, description="GPUs requested by the job's current worker pods."
    )
    generation: StrictInt | None = Field(
        None,
        ge=0,
        description="Generation of the current worker group, from 1; 0 before the first.",
    )
    restarts: StrictInt | None = Field(
        None,
        ge=0,
        description="Group restarts after worker failures, counted against backoffLimit.",
    )
    start_time: datetime | None = None
    completion_time: datetime | None = None
    conditions: list[Condition] | None = Field(None, json_schema_extra=CONDITIONS_SCHEMA_EXTRA)
    result: dict[str, Any] | None = Field(
        None,
        description="The chief's termination message parsed as a JSON object, set on success.",
    )
    cost_per_hour: StrictStr | None = Field(
        None,
        description="US dollars per hour of the GPUs the job's pods have now, a decimal string.",
    )
    total_cost: StrictStr | None = Field(
        None, description="US dollars spent so far, a decimal string."
    )
    queue_position: StrictInt | None = Field(
        None, ge=0, description="Place in the queue from 1 while waiting; unset when admitted."
    )
    waiting_reason: StrictStr | None = Field(
        None, description="Why the job waits, for example Capacity, Ceiling or Priority."
    )
    observed_generation: StrictInt | None = Field(
        None, ge=0, description="metadata.generation of the spec this status reflects."
    )
    message: StrictStr | None = Field(None, description="Human-readable summary of the state.")
    selector: StrictStr | None = Field(
        None, description="Label selector of the job's pods; used by the scale subresource."
    )
    kopf: dict[str, Any] | None = Field(
        None, description="Reserved for the kopf framework's own bookkeeping."
    )


# ---------------------------------------------------------------------------------------------
# CostPolicy
# ---------------------------------------------------------------------------------------------

DEFAULT_GPU_PRICE_LABEL = "nvidia.com/gpu.product"
DEFAULT_SCHEDULING_INTERVAL_SECONDS = 30
DEFAULT_STABILIZATION_WINDOW_SECONDS = 300
DEFAULT_RESTART_COST_SECONDS = 120


class GpuPricing(SpecModel):
    """Price of one GPU-hour, looked up by a label of the node the pod runs on."""

    node_label: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=317)] = (
        Field(DEFAULT_GPU_PRICE_LABEL, description="Node label whose value selects the price.")
    )
    prices: dict[str, Dollars] | None = Field(
        None,
        max_length=256,
        description="US dollars per GPU-hour by label value, for example "
        '{"NVIDIA-A100-SXM4-80GB": "2.10"}.',
    )
    default_price: Dollars = Field(
        description="US dollars per GPU-hour on nodes whose label value is not in prices."
    )


class Rescaling(SpecModel):
    """How often and how eagerly the scheduler resizes jobs."""

    scheduling_interval_seconds: StrictInt = Field(
        DEFAULT_SCHEDULING_INTERVAL_SECONDS,
        ge=1,
        le=3600,
        description="Seconds between allocation rounds.",
    )
    stabilization_window_seconds: StrictInt = Field(
        DEFAULT_STABILIZATION_WINDOW_SECONDS,
        ge=0,
        le=86400,
        description="Seconds a job keeps its size after a rescale before it may change again.",
    )
    restart_cost_seconds: StrictInt = Field(
        DEFAULT_RESTART_COST_SECONDS,
        ge=0,
        le=86400,
        description="Expected seconds of lost progress per rescale (checkpoint, restart, warm-up).",
    )


class CostPolicySpec(SpecModel):
    """Cost limits and GPU prices for the TrainingJobs in the selected namespaces."""

    ceiling_per_hour: Dollars | None = Field(
        None,
        description='Most US dollars per hour for all selected jobs together, for example "40.00". '
        "Unset means no ceiling.",
    )
    namespace_selector: LabelSelector | None = Field(
        None, description="Namespaces this policy governs; empty or unset selects all."
    )
    gpu_pricing: GpuPricing
    rescaling: Rescaling = Field(default_factory=Rescaling, json_schema_extra=_nested_default())

    def ceiling(self) -> Decimal | None:
        """Return ceilingPerHour in US dollars, or None when unset."""
        return None if self.ceiling_per_hour is None else Decimal(self.ceiling_per_hour)

    def price_for(self, label_value: str | None) -> Decimal:
        """Return the GPU-hour price for a node whose pricing label has this value."""
        prices = self.gpu_pricing.prices or {}
        if label_value is not None and label_value in prices:
            return Decimal(prices[label_value])
        return Decimal(self.gpu_pricing.default_price)


class CostPolicyStatus(StatusModel):
    """Observed spend and queue of the jobs a CostPolicy governs."""

    spend_per_hour: StrictStr | None = Field(
        None, description="US dollars per hour of the governed jobs now, a decimal string."
    )
    gpus_in_use: StrictInt | None = Field(None, ge=0, description="GPUs held by governed jobs.")
    queued_jobs: StrictInt | None = Field(None, ge=0, description="Governed jobs waiting to start.")
    queued_gpus: StrictInt | None = Field(
        None, ge=0, description="GPUs the waiting jobs need at their minimum size."
    )
    admitted_jobs: StrictInt | None = Field(None, ge=0, description="Governed jobs admitted.")
    observed_generation: StrictInt | None = Field(None, ge=0)
    conditions: list[Condition] | None = Field(None, json_schema_extra=CONDITIONS_SCHEMA_EXTRA)
    kopf: dict[str, Any] | None = Field(
        None, description="Reserved for the kopf framework's own bookkeeping."
    )


# ---------------------------------------------------------------------------------------------
# Whole objects
# ---------------------------------------------------------------------------------------------


class ObjectMeta(BaseModel):
    """The metadata fields the operator reads; the rest is kept as is."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)

    name: StrictStr
    namespace: StrictStr | None = None
    uid: StrictStr | None = None
    generation: StrictInt | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class TrainingJob(BaseModel):
    """A whole TrainingJob object as read from the API server."""

    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel, extra="ignore")

    api_version: Literal["training.gpuscale.io/v1alpha1"] = API_VERSION
    kind: Literal["TrainingJob"] = TRAINING_JOB_KIND
    metadata: ObjectMeta
    spec: TrainingJobSpec
    status: TrainingJobStatus = Field(default_factory=TrainingJobStatus)

    @model_validator(mode="after")
    def _check_name(self) -> TrainingJob:
        problem = job_name_problem(self.metadata.name)
        if problem is not None:
            raise ValueError(problem)
        return self


class CostPolicy(BaseModel):
    """A whole CostPolicy object as read from the API server."""

    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel, extra="ignore")

    api_version: Literal["training.gpuscale.io/v1alpha1"] = API_VERSION
    kind: Literal["CostPolicy"] = COST_POLICY_KIND
    metadata: ObjectMeta
    spec: CostPolicySpec
    status: CostPolicyStatus = Field(default_factory=CostPolicyStatus)


# ---------------------------------------------------------------------------------------------
# Value helpers
# ---------------------------------------------------------------------------------------------

_QUANTITY_SUFFIXES = {
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY_RE = re.compile(
    r"^(?P<number>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][0-9]+)?$"
)


def parse_quantity(quantity: int | str) -> Decimal:
    """Convert a Kubernetes quantity such as 500m, 16Gi or 2 to a Decimal in base units."""
    if isinstance(quantity, int):
        return Decimal(quantity)
    match = _QUANTITY_RE.match(quantity)
    if match is None:
        raise ValueError(f"invalid quantity {quantity!r}; use a form such as 2, 500m or 16Gi")
    number = Decimal(match["number"])
    suffix = match["suffix"]
    if suffix is None:
        return number
    if suffix[0] in "eE":
        return number * (Decimal(10) ** int(suffix[1:]))
    return number * _QUANTITY_SUFFIXES[suffix]


def _validate_dollars(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(
            f'{value!r} is not a string: quote amounts of US dollars, for example "12.50"'
        )
    if len(value) > 16 or not re.match(DOLLARS_PATTERN, value):
        raise ValueError(
            f"{value!r} is not an amount of US dollars: write a non-negative decimal string "
            'such as "12.50" (at most 6 decimal places)'
        )
    return value


def _validate_quantity(value: object) -> int | str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"invalid quantity {value!r}; use a form such as 2, 500m or 16Gi")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"invalid quantity {value}: must not be negative")
    parse_quantity(value)
    return value


def format_dollars(amount: Decimal, places: int = 2) -> str:
    """Format US dollars as the decimal strings the status fields hold, e.g. "12.50"."""
    quantum = Decimal(1).scaleb(-places)
    return str(amount.quantize(quantum))


def job_name_problem(name: str) -> str | None:
    """Return why a name cannot name a TrainingJob, or None when it can."""
    if len(name) > MAX_JOB_NAME_LENGTH:
        return (
            f"metadata.name {name!r} is {len(name)} characters long; TrainingJob names may have "
            f"at most {MAX_JOB_NAME_LENGTH} so that every pod name stays within 63 characters. "
            "Choose a shorter name"
        )
    if not re.match(JOB_NAME_PATTERN, name):
        return (
            f"metadata.name {name!r} is not a DNS-1035 label: use lowercase letters, digits and "
            "'-', start with a letter and end with a letter or digit (for example 'model-v0-1')"
        )
    return None
