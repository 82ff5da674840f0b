"""The headless Service and worker pod builders."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from gpuscale.api.parsing import parse_training_job_spec
from gpuscale.planning.children import (
    JobIdentity,
    build_service,
    build_worker_pod,
    build_worker_pods,
    owner_reference,
)
from gpuscale.planning.names import job_selector

JOB = JobIdentity(name="mnist", namespace="team-a", uid="3f1c-uid")
BASE: dict[str, Any] = {
    "image": "gpuscale/trainer:0.1.0",
    "workers": {"min": 2, "max": 4},
    "gpusPerWorker": 2,
}


def spec_with(**changes: Any):
    raw = copy.deepcopy(BASE)
    raw.update(changes)
    return parse_training_job_spec(raw)


def container_of(pod: dict[str, Any]) -> dict[str, Any]:
    [container] = pod["spec"]["containers"]
    return container


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        item["name"]: item.get("value", item.get("valueFrom")) for item in container_of(pod)["env"]
    }


def test_service_is_headless_and_owned() -> None:
    service = build_service(spec_with(port=4000), JOB)

    assert service["metadata"]["name"] == "mnist"
    assert service["metadata"]["namespace"] == "team-a"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"][0]["port"] == 4000
    assert service["spec"]["ports"][0]["targetPort"] == 4000
    assert service["metadata"]["ownerReferences"] == [owner_reference(JOB)]


def test_service_selects_every_worker() -> None:
    spec = spec_with()
    service = build_service(spec, JOB)
    pods = build_worker_pods(spec, JOB, generation=3, num_workers=4)

    selector = service["spec"]["selector"]
    assert selector == job_selector("mnist")
    for pod in pods:
        assert selector.items() <= pod["metadata"]["labels"].items()


def test_owner_reference_is_controller() -> None:
    reference = owner_reference(JOB)

    assert reference["apiVersion"] == "training.gpuscale.io/v1alpha1"
    assert reference["kind"] == "TrainingJob"
    assert reference["uid"] == "3f1c-uid"
    assert reference["controller"] is True
    assert reference["blockOwnerDeletion"] is True


def test_pod_identity_and_dns() -> None:
    pod = build_worker_pod(spec_with(), JOB, generation=5, num_workers=3, index=2)

    assert pod["metadata"]["name"] == "mnist-g5-w2"
    assert pod["metadata"]["namespace"] == "team-a"
    assert pod["spec"]["hostname"] == "mnist-g5-w2"
    assert pod["spec"]["subdomain"] == "mnist"
    assert pod["metadata"]["labels"]["training.gpuscale.io/worker-index"] == "2"
    assert pod["metadata"]["labels"]["training.gpuscale.io/generation"] == "5"
    assert pod["metadata"]["annotations"]["training.gpuscale.io/num-workers"] == "3"
    assert pod["metadata"]["ownerReferences"] == [owner_reference(JOB)]


def test_pod_env_follows_contract() -> None:
    pod = build_worker_pod(
        spec_with(checkpoint={"path": "/ckpt"}), JOB, generation=5, num_workers=3, index=1
    )
    env = env_of(pod)

    assert json.loads(env["TF_CONFIG"])["task"] == {"type": "worker", "index": 1}
    assert env["GPUSCALE_JOB_NAME"] == "mnist"
    assert env["GPUSCALE_NUM_WORKERS"] == "3"
    assert env["GPUSCALE_WORKER_INDEX"] == "1"
    assert env["GPUSCALE_GENERATION"] == "5"
    assert env["GPUSCALE_CHECKPOINT_DIR"] == "/ckpt"
    assert env["GPUSCALE_TERMINATION_LOG"] == "/dev/termination-log"


def test_user_env_follows_operator_env() -> None:
    spec = spec_with(
        env=[
            {"name": "BATCH", "value": "64"},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ]
    )
    names = [
        item["name"]
        for item in container_of(build_worker_pod(spec, JOB, generation=1, num_workers=1, index=0))[
            "env"
        ]
    ]

    assert names[-2:] == ["BATCH", "NODE"]
    assert names[0] == "TF_CONFIG"
    assert env_of(build_worker_pod(spec, JOB, generation=1, num_workers=1, index=0))["NODE"] == {
        "fieldRef": {"fieldPath": "spec.nodeName"}
    }


def test_pod_command_defaults_to_trainer() -> None:
    container = container_of(
        build_worker_pod(
            spec_with(args=["--epochs", "3"]), JOB, generation=1, num_workers=1, index=0
        )
    )

    assert container["command"] == ["python", "-m", "gpuscale_trainer"]
    assert container["args"] == ["--epochs", "3"]


def test_pod_command_override() -> None:
    container = container_of(
        build_worker_pod(
            spec_with(command=["python", "train.py"]), JOB, generation=1, num_workers=1, index=0
        )
    )

    assert container["command"] == ["python", "train.py"]
    assert "args" not in container


def test_pod_runtime_settings() -> None:
    pod = build_worker_pod(spec_with(port=2345), JOB, generation=1, num_workers=2, index=0)
    container = container_of(pod)

    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 60
    assert container["ports"] == [{"name": "tf-grpc", "containerPort": 2345, "protocol": "TCP"}]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["image"] == "gpuscale/trainer:0.1.0"


def test_gpu_limit_set() -> None:
    container = container_of(
        build_worker_pod(spec_with(gpusPerWorker=2), JOB, generation=1, num_workers=1, index=0)
    )

    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"


def test_gpu_limit_omitted_for_zero() -> None:
    container = container_of(
        build_worker_pod(spec_with(gpusPerWorker=0), JOB, generation=1, num_workers=1, index=0)
    )

    assert "nvidia.com/gpu" not in json.dumps(container)
    assert container["resources"] == {}


def test_cpu_and_memory_copied_as_strings() -> None:
    spec = spec_with(
        resources={"requests": {"cpu": 2, "memory": "4Gi"}, "limits": {"memory": "8Gi"}}
    )
    container = container_of(build_worker_pod(spec, JOB, generation=1, num_workers=1, index=0))

    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"memory": "8Gi", "nvidia.com/gpu": "2"},
    }


def test_restricted_security_context() -> None:
    pod = build_worker_pod(spec_with(), JOB, generation=1, num_workers=1, index=0)
    pod_context = pod["spec"]["securityContext"]
    container_context = container_of(pod)["securityContext"]

    assert pod_context["runAsNonRoot"] is True
    assert pod_context["runAsUser"] == 1000
    assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container_context["allowPrivilegeEscalation"] is False
    assert container_context["capabilities"] == {"drop": ["ALL"]}
    assert "hostNetwork" not in pod["spec"]
    assert "privileged" not in container_context


def test_no_token_without_service_account() -> None:
    pod = build_worker_pod(spec_with(), JOB, generation=1, num_workers=1, index=0)

    assert pod["spec"]["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod["spec"]


def test_token_with_service_account() -> None:
    pod = build_worker_pod(
        spec_with(template={"serviceAccountName": "reader"}),
        JOB,
        generation=1,
        num_workers=1,
        index=0,
    )

    assert pod["spec"]["automountServiceAccountToken"] is True
    assert pod["spec"]["serviceAccountName"] == "reader"


def test_checkpoint_without_volume_uses_empty_dir() -> None:
    pod = build_worker_pod(spec_with(), JOB, generation=1, num_workers=1, index=0)

    assert pod["spec"]["volumes"] == [{"name": "gpuscale-checkpoint", "emptyDir": {}}]
    assert container_of(pod)["volumeMounts"] == [
        {"name": "gpuscale-checkpoint", "mountPath": "/checkpoints"}
    ]


def test_checkpoint_volume_and_template_applied() -> None:
    spec = spec_with(
        template={
            "volumes": [
                {"name": "ckpt", "persistentVolumeClaim": {"claimName": "shared-ckpt"}},
                {"name": "data", "configMap": {"name": "dataset"}},
            ],
            "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
        },
        checkpoint={"path": "/ckpt", "volume": "ckpt"},
    )
    pod = build_worker_pod(spec, JOB, generation=1, num_workers=1, index=0)

    assert pod["spec"]["volumes"] == [
        {"name": "ckpt", "persistentVolumeClaim": {"claimName": "shared-ckpt"}},
        {"name": "data", "configMap": {"name": "dataset"}},
    ]
    assert container_of(pod)["volumeMounts"] == [
        {"name": "ckpt", "mountPath": "/ckpt"},
        {"name": "data", "mountPath": "/data", "readOnly": True},
    ]
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert pod["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_image_pull_policy_copied() -> None:
    container = container_of(
        build_worker_pod(
            spec_with(imagePullPolicy="Never"), JOB, generation=1, num_workers=1, index=0
        )
    )

    assert container["imagePullPolicy"] == "Never"


def test_worker_pods_in_index_order() -> None:
    pods = build_worker_pods(spec_with(), JOB, generation=7, num_workers=4)

    assert [pod["metadata"]["name"] for pod in pods] == [f"mnist-g7-w{index}" for index in range(4)]


def test_pods_are_json_serializable() -> None:
    pod = build_worker_pod(spec_with(), JOB, generation=1, num_workers=2, index=0)

    assert json.loads(json.dumps(pod)) == pod


def test_builders_do_not_share_state() -> None:
    spec = spec_with(template={"nodeSelector": {"pool": "gpu"}})
    first = build_worker_pod(spec, JOB, generation=1, num_workers=2, index=0)
    first["spec"]["nodeSelector"]["pool"] = "changed"

    second = build_worker_pod(spec, JOB, generation=1, num_workers=2, index=0)

    assert second["spec"]["nodeSelector"] == {"pool": "gpu"}


@pytest.mark.parametrize("index", [-1, 2])
def test_pod_index_out_of_range(index: int) -> None:
    with pytest.raises(ValueError):
        build_worker_pod(spec_with(), JOB, generation=1, num_workers=2, index=index)
