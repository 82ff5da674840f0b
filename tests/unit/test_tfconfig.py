"""TF_CONFIG of every worker, checked with TensorFlow's own cluster resolver."""

from __future__ import annotations

import json
import os

import pytest

from gpuscale.api.parsing import parse_training_job_spec
from gpuscale.planning.children import JobIdentity, build_service, build_worker_pods
from gpuscale.planning.tfconfig import build_tf_config, tf_config_json, worker_addresses

JOB = JobIdentity(name="mnist", namespace="team-a", uid="uid-1")
SPEC = parse_training_job_spec(
    {
        "image": "gpuscale/trainer:0.1.0",
        "workers": {"min": 1, "max": 8},
        "gpusPerWorker": 1,
        "port": 3333,
    }
)


def env_of(pod: dict) -> dict[str, str]:
    return {item["name"]: item.get("value") for item in pod["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("num_workers", range(1, 9))
def test_indices_and_cluster_lists(num_workers: int) -> None:
    pods = build_worker_pods(SPEC, JOB, generation=4, num_workers=num_workers)
    configs = [json.loads(env_of(pod)["TF_CONFIG"]) for pod in pods]

    assert [config["task"] for config in configs] == [
        {"type": "worker", "index": index} for index in range(num_workers)
    ]
    assert all(config["cluster"] == configs[0]["cluster"] for config in configs)
    assert list(configs[0]["cluster"]) == ["worker"]
    assert configs[0]["cluster"]["worker"] == [
        f"mnist-g4-w{index}.mnist.team-a.svc:3333" for index in range(num_workers)
    ]


@pytest.mark.parametrize("num_workers", range(1, 9))
def test_addresses_match_pod_dns_names(num_workers: int) -> None:
    pods = build_worker_pods(SPEC, JOB, generation=4, num_workers=num_workers)
    config = json.loads(env_of(pods[0])["TF_CONFIG"])

    for pod, address in zip(pods, config["cluster"]["worker"], strict=True):
        host, port = address.rsplit(":", 1)
        pod_spec = pod["spec"]
        assert host == f"{pod_spec['hostname']}.{pod_spec['subdomain']}.{JOB.namespace}.svc"
        assert pod["metadata"]["name"] == pod_spec["hostname"]
        assert int(port) == pod_spec["containers"][0]["ports"][0]["containerPort"]


def test_port_matches_service_port() -> None:
    service = build_service(SPEC, JOB)
    config = build_tf_config("mnist", "team-a", 1, 3, 0, SPEC.port)

    service_port = service["spec"]["ports"][0]["port"]
    assert {address.rsplit(":", 1)[1] for address in config["cluster"]["worker"]} == {
        str(service_port)
    }
    assert service["metadata"]["name"] == "mnist"


@pytest.mark.parametrize(("num_workers", "index"), [(0, 0), (3, 3), (3, -1)])
def test_rejects_bad_index(num_workers: int, index: int) -> None:
    with pytest.raises(ValueError):
        build_tf_config("mnist", "ns", 1, num_workers, index, 2222)


def test_json_is_compact_and_stable() -> None:
    text = tf_config_json("mnist", "ns", 1, 2, 1, 2222)

    assert " " not in text
    assert text == tf_config_json("mnist", "ns", 1, 2, 1, 2222)
    assert json.loads(text)["task"] == {"type": "worker", "index": 1}


def test_worker_addresses_order() -> None:
    assert worker_addresses("a", "b", 1, 2, 2222) == [
        "a-g1-w0.a.b.svc:2222",
        "a-g1-w1.a.b.svc:2222",
    ]


@pytest.fixture(scope="module")
def cluster_resolver_class():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tensorflow = pytest.importorskip("tensorflow")
    return tensorflow.distribute.cluster_resolver.TFConfigClusterResolver


@pytest.mark.parametrize("num_workers", range(1, 9))
def test_tensorflow_resolver_reads_config(
    num_workers: int, cluster_resolver_class, monkeypatch: pytest.MonkeyPatch
) -> None:
    pods = build_worker_pods(SPEC, JOB, generation=2, num_workers=num_workers)

    for index, pod in enumerate(pods):
        monkeypatch.setenv("TF_CONFIG", env_of(pod)["TF_CONFIG"])
        resolver = cluster_resolver_class()
        cluster = resolver.cluster_spec()

        assert resolver.task_type == "worker"
        assert resolver.task_id == index
        assert cluster.num_tasks("worker") == num_workers
        assert cluster.task_address("worker", index) == f"mnist-g2-w{index}.mnist.team-a.svc:3333"
