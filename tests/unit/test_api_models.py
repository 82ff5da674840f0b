"""Validation table tests of the TrainingJob and CostPolicy models."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from gpuscale.api.models import format_dollars, job_name_problem, parse_quantity
from gpuscale.api.parsing import (
    InvalidObjectError,
    parse_cost_policy,
    parse_cost_policy_spec,
    parse_training_job,
    parse_training_job_spec,
    parse_training_job_status,
)

VALID_SPEC: dict[str, Any] = {
    "image": "gpuscale/trainer:0.1.0",
    "workers": {"min": 2, "max": 4},
    "gpusPerWorker": 1,
}

VALID_POLICY_SPEC: dict[str, Any] = {
    "ceilingPerHour": "40.00",
    "gpuPricing": {"prices": {"NVIDIA-L4": "0.80"}, "defaultPrice": "2.00"},
}


def with_changes(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


def test_minimal_spec_gets_defaults() -> None:
    spec = parse_training_job_spec(VALID_SPEC)

    assert spec.port == 2222
    assert spec.backoff_limit == 3
    assert spec.priority == 0
    assert spec.suspend is False
    assert spec.checkpoint.path == "/checkpoints"
    assert spec.checkpoint.volume is None


def test_full_spec_parses() -> None:
    raw = with_changes(
        VALID_SPEC,
        command=["python", "train.py"],
        args=["--epochs", "3"],
        env=[
            {"name": "BATCH", "value": "64"},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        resources={
            "requests": {"cpu": 2, "memory": "8Gi"},
            "limits": {"cpu": "4", "memory": "16Gi"},
        },
        template={
            "volumes": [{"name": "ckpt", "persistentVolumeClaim": {"claimName": "shared"}}],
            "volumeMounts": [{"name": "ckpt", "mountPath": "/data", "subPath": "data"}],
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "serviceAccountName": "trainer",
        },
        checkpoint={"path": "/ckpt", "volume": "ckpt"},
        backoffLimit=0,
        activeDeadlineSeconds=3600,
        ttlSecondsAfterFinished=60,
        suspend=True,
        priority=10,
        costCeilingPerHour="12.50",
        maxTotalCost="100",
    )

    spec = parse_training_job_spec(raw)

    assert spec.template is not None
    assert spec.template.volumes is not None
    assert spec.template.volumes[0].model_dump()["persistentVolumeClaim"] == {"claimName": "shared"}
    assert spec.cost_ceiling() == Decimal("12.50")
    assert spec.budget() == Decimal("100")
    assert spec.model_dump(by_alias=True, exclude_none=True)["costCeilingPerHour"] == "12.50"


# Each case changes one field of VALID_SPEC and names a fragment of the expected error.
INVALID_SPECS = [
    ("negative workers", {"workers": {"min": -1, "max": 2}}, "spec.workers.min"),
    ("zero workers", {"workers": {"min": 0, "max": 0}}, "spec.workers.min"),
    ("max above limit", {"workers": {"min": 1, "max": 65}}, "spec.workers.max"),
    ("min greater than max", {"workers": {"min": 4, "max": 2}}, "workers.min (4) must be less"),
    ("workers as string", {"workers": {"min": "2", "max": 4}}, "spec.workers.min"),
    ("missing max", {"workers": {"min": 2}}, "spec.workers.max: required field is missing"),
    ("fractional gpus", {"gpusPerWorker": 0.5}, "spec.gpusPerWorker"),
    ("negative gpus", {"gpusPerWorker": -1}, "spec.gpusPerWorker"),
    ("gpus as bool", {"gpusPerWorker": True}, "spec.gpusPerWorker"),
    ("too many gpus", {"gpusPerWorker": 17}, "spec.gpusPerWorker"),
    ("port 22", {"port": 22}, "spec.port"),
    ("port 70000", {"port": 70000}, "spec.port"),
    (
        "misspelled gpuPerWorker",
        {"gpusPerWorker": None, "gpuPerWorker": 1},
        "did you mean gpusPerWorker",
    ),
    ("missing image", {"image": None}, "spec.image: required field is missing"),
    ("empty image", {"image": ""}, "spec.image"),
    ("negative backoff", {"backoffLimit": -1}, "spec.backoffLimit"),
    ("zero deadline", {"activeDeadlineSeconds": 0}, "spec.activeDeadlineSeconds"),
    ("negative ttl", {"ttlSecondsAfterFinished": -5}, "spec.ttlSecondsAfterFinished"),
    ("suspend as string", {"suspend": "yes"}, "spec.suspend"),
    ("ceiling as number", {"costCeilingPerHour": 12.5}, "spec.costCeilingPerHour"),
    ("negative ceiling", {"costCeilingPerHour": "-1"}, "spec.costCeilingPerHour"),
    ("ceiling not a number", {"costCeilingPerHour": "twelve"}, "spec.costCeilingPerHour"),
    ("budget with currency", {"maxTotalCost": "$100"}, "spec.maxTotalCost"),
    ("reserved env TF_CONFIG", {"env": [{"name": "TF_CONFIG", "value": "{}"}]}, "env TF_CONFIG"),
    (
        "reserved env prefix",
        {"env": [{"name": "GPUSCALE_WORKER_INDEX", "value": "0"}]},
        "GPUSCALE_",
    ),
    (
        "env value and valueFrom",
        {"env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]},
        "either value or valueFrom",
    ),
    ("relative checkpoint path", {"checkpoint": {"path": "ckpt"}}, "spec.checkpoint.path"),
    ("checkpoint volume undefined", {"checkpoint": {"volume": "missing"}}, "names no volume"),
    (
        "mount without volume",
        {"template": {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}},
        "names no volume",
    ),
    (
        "mount at checkpoint path",
        {
            "template": {
                "volumes": [{"name": "data", "emptyDir": {}}],
                "volumeMounts": [{"name": "data", "mountPath": "/checkpoints"}],
            }
        },
        "mounted at checkpoint.path",
    ),
    (
        "reserved volume name",
        {"template": {"volumes": [{"name": "gpuscale-checkpoint", "emptyDir": {}}]}},
        "reserved",
    ),
    (
        "duplicate volume names",
        {"template": {"volumes": [{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]}},
        "duplicate volume names",
    ),
    ("gpu in resources", {"resources": {"limits": {"nvidia.com/gpu": 1}}}, "unknown field"),
    ("bad quantity", {"resources": {"requests": {"cpu": "two"}}}, "invalid quantity"),
    ("negative quantity", {"resources": {"requests": {"memory": -1}}}, "must not be negative"),
    (
        "request above limit",
        {"resources": {"requests": {"memory": "16Gi"}, "limits": {"memory": "8Gi"}}},
        "greater than limits.memory",
    ),
    ("bad toleration effect", {"template": {"tolerations": [{"effect": "Sometimes"}]}}, "effect"),
    (
        "bad service account",
        {"template": {"serviceAccountName": "Trainer_SA"}},
        "serviceAccountName",
    ),
    ("unknown template field", {"template": {"affinity": {}}}, "unknown field"),
]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [pytest.param(changes, fragment, id=name) for name, changes, fragment in INVALID_SPECS],
)
def test_invalid_spec_rejected(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidObjectError) as caught:
        parse_training_job_spec(with_changes(VALID_SPEC, **changes), name="team-a/job")

    assert fragment in str(caught.value)
    assert str(caught.value).startswith("TrainingJob team-a/job is invalid")


def test_error_names_value_given() -> None:
    with pytest.raises(InvalidObjectError) as caught:
        parse_training_job_spec(with_changes(VALID_SPEC, port=70000))

    assert caught.value.problems == [
        "spec.port: Input should be less than or equal to 65535 (got 70000)"
    ]


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("mnist", True),
        ("a", True),
        ("a" * 40, True),
        ("a" * 41, False),
        ("7b-model-v0.1", False),
        ("model-v0.1", False),
        ("Model", False),
        ("model-", False),
        ("model_v1", False),
    ],
)
def test_job_name_rule(name: str, valid: bool) -> None:
    assert (job_name_problem(name) is None) is valid


def test_whole_object_checks_name() -> None:
    body = {"metadata": {"name": "7b-model-v0.1", "namespace": "ns"}, "spec": VALID_SPEC}

    with pytest.raises(InvalidObjectError) as caught:
        parse_training_job(body)

    assert "DNS-1035" in str(caught.value)
    assert "TrainingJob ns/7b-model-v0.1" in str(caught.value)


def test_whole_object_with_status() -> None:
    body = {
        "apiVersion": "training.gpuscale.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "mnist", "namespace": "ns", "uid": "u1", "generation": 2},
        "spec": VALID_SPEC,
        "status": {
            "phase": "Running",
            "workers": 2,
            "generation": 1,
            "startTime": "2025-01-02T03:04:05Z",
            "conditions": [
                {
                    "type": "Running",
                    "status": "True",
                    "reason": "AllWorkersRunning",
                    "lastTransitionTime": "2025-01-02T03:04:05Z",
                }
            ],
            "result": {"loss": 0.1, "epochs": 3},
            "kopf": {"progress": {}},
        },
    }

    job = parse_training_job(body)

    assert job.metadata.uid == "u1"
    assert job.status.phase == "Running"
    assert job.status.conditions is not None
    assert job.status.conditions[0].reason == "AllWorkersRunning"
    assert job.status.result == {"loss": 0.1, "epochs": 3}


def test_status_ignores_unknown_fields() -> None:
    status = parse_training_job_status({"phase": "Queued", "somethingNew": 1})

    assert status.phase == "Queued"


def test_status_rejects_unknown_phase() -> None:
    with pytest.raises(InvalidObjectError):
        parse_training_job_status({"phase": "Sleeping"})


def test_empty_status_parses() -> None:
    assert parse_training_job_status(None).phase is None


def test_cost_policy_defaults() -> None:
    spec = parse_cost_policy_spec(VALID_POLICY_SPEC)

    assert spec.gpu_pricing.node_label == "nvidia.com/gpu.product"
    assert spec.rescaling.scheduling_interval_seconds == 30
    assert spec.rescaling.stabilization_window_seconds == 300
    assert spec.rescaling.restart_cost_seconds == 120
    assert spec.ceiling() == Decimal("40.00")
    assert spec.price_for("NVIDIA-L4") == Decimal("0.80")
    assert spec.price_for("Tesla-T4") == Decimal("2.00")
    assert spec.price_for(None) == Decimal("2.00")


def test_cost_policy_without_ceiling() -> None:
    spec = parse_cost_policy_spec(with_changes(VALID_POLICY_SPEC, ceilingPerHour=None))

    assert spec.ceiling() is None


INVALID_POLICY_SPECS = [
    (
        "negative price",
        {"gpuPricing": {"prices": {"T4": "-0.5"}, "defaultPrice": "1"}},
        "prices.T4",
    ),
    ("negative default price", {"gpuPricing": {"defaultPrice": "-1"}}, "defaultPrice"),
    ("missing default price", {"gpuPricing": {}}, "defaultPrice: required field is missing"),
    ("ceiling not a number", {"ceilingPerHour": "forty dollars"}, "spec.ceilingPerHour"),
    ("ceiling as number", {"ceilingPerHour": 40}, "spec.ceilingPerHour"),
    ("zero interval", {"rescaling": {"schedulingIntervalSeconds": 0}}, "schedulingIntervalSeconds"),
    ("negative restart cost", {"rescaling": {"restartCostSeconds": -1}}, "restartCostSeconds"),
    (
        "In without values",
        {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}},
        "needs at least one value",
    ),
    (
        "Exists with values",
        {
            "namespaceSelector": {
                "matchExpressions": [{"key": "t", "operator": "Exists", "values": ["a"]}]
            }
        },
        "takes no values",
    ),
    ("unknown field", {"ceiling": "1"}, "did you mean ceilingPerHour"),
]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [pytest.param(changes, fragment, id=name) for name, changes, fragment in INVALID_POLICY_SPECS],
)
def test_invalid_cost_policy_rejected(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidObjectError) as caught:
        parse_cost_policy_spec(with_changes(VALID_POLICY_SPEC, **changes))

    assert fragment in str(caught.value)


def test_cost_policy_object_parses() -> None:
    policy = parse_cost_policy(
        {
            "metadata": {"name": "cluster-wide"},
            "spec": VALID_POLICY_SPEC,
            "status": {"gpusInUse": 8},
        }
    )

    assert policy.status.gpus_in_use == 8


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (2, Decimal(2)),
        ("500m", Decimal("0.5")),
        ("16Gi", Decimal(16 * 2**30)),
        ("1.5", Decimal("1.5")),
        ("1e3", Decimal(1000)),
        ("2k", Decimal(2000)),
    ],
)
def test_parse_quantity(quantity: int | str, expected: Decimal) -> None:
    assert parse_quantity(quantity) == expected


def test_format_dollars() -> None:
    assert format_dollars(Decimal("12.5")) == "12.50"
    assert format_dollars(Decimal("0.123456"), places=4) == "0.1235"
