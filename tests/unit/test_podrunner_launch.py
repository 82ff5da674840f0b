"""The dev pod runner's launch rules: TF_CONFIG address maps, env and argument rewriting."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from gpuscale_podrunner.launch import (
    HostPaths,
    LaunchError,
    build_launch_plan,
    cluster_addresses,
    container_env,
    expand_references,
    extend_address_map,
    group_key,
    map_command,
    map_path,
    rewrite_tf_config,
)

STATE = Path("/state")
PATHS = HostPaths(STATE)


def tf_config(index: int, workers: int = 2, generation: int = 1) -> str:
    addresses = [f"digits-g{generation}-w{i}.digits.ns.svc:2222" for i in range(workers)]
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})


def worker_pod(index: int, workers: int = 2, generation: int = 1, args: list[str] | None = None) -> dict:
    name = f"digits-g{generation}-w{index}"
    return {
        "metadata": {
            "name": name, "namespace": "ns", "uid": f"uid-{name}",
            "labels": {"training.gpuscale.io/job-name": "digits", "training.gpuscale.io/generation": str(generation)},
        },
        "spec": {
            "nodeName": "gpu-node-0",
            "terminationGracePeriodSeconds": 60,
            "containers": [{
                "name": "trainer",
                "image": "gpuscale/trainer:0.1.0",
                "command": ["python", "-m", "gpuscale_trainer"],
                "args": args if args is not None else ["--output-dir=/checkpoints/output", "--epochs", "3"],
                "env": [
                    {"name": "TF_CONFIG", "value": tf_config(index, workers, generation)},
                    {"name": "GPUSCALE_CHECKPOINT_DIR", "value": "/checkpoints"},
                    {"name": "GPUSCALE_TERMINATION_LOG", "value": "/dev/termination-log"},
                ],
                "volumeMounts": [{"name": "checkpoints", "mountPath": "/checkpoints"}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }],
        },
        "status": {"phase": "Running", "podIP": "10.244.0.5"},
    }


def no_sources(kind: str, namespace: str, name: str) -> None:
    return None


def plan_for(pod: dict, address_map: dict[str, str] | None = None):
    return build_launch_plan(
        pod, pod["spec"]["containers"][0], paths=PATHS, address_map=address_map or {},
        resolve_source=no_sources, python="/venv/bin/python", default_command=["python", "-m", "gpuscale_trainer"],
        base_env={"PATH": "/venv/bin:/usr/bin"},
    )


def test_cluster_addresses_in_order() -> None:
    config = {"cluster": {"worker": ["b:1", "a:2"], "chief": ["c:3"]}, "task": {"type": "worker", "index": 0}}
    assert cluster_addresses(config) == ["c:3", "b:1", "a:2"]


def test_cluster_addresses_sparse_form() -> None:
    config = {"cluster": {"worker": {"1": "w1:1", "0": "w0:1"}}}
    assert cluster_addresses(config) == ["w0:1", "w1:1"]


def test_address_map_shared_by_group() -> None:
    ports = itertools.count(40000)
    addresses = cluster_addresses(json.loads(tf_config(0)))
    first = extend_address_map({}, addresses, lambda: next(ports))
    second = extend_address_map(first, cluster_addresses(json.loads(tf_config(1))), lambda: next(ports))
    assert first == {
        "digits-g1-w0.digits.ns.svc:2222": "127.0.0.1:40000",
        "digits-g1-w1.digits.ns.svc:2222": "127.0.0.1:40001",
    }
    assert second == first


def test_address_map_gives_each_address_own_port() -> None:
    ports = itertools.count(40000)
    mapped = extend_address_map({}, ["a:2222", "b:2222", "c:2222"], lambda: next(ports))
    assert len(set(mapped.values())) == 3


def test_rewrite_tf_config_keeps_task() -> None:
    config = json.loads(tf_config(1))
    address_map = {"digits-g1-w0.digits.ns.svc:2222": "127.0.0.1:1", "digits-g1-w1.digits.ns.svc:2222": "127.0.0.1:2"}
    rewritten = rewrite_tf_config(config, address_map)
    assert rewritten["cluster"]["worker"] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert rewritten["task"] == {"type": "worker", "index": 1}
    assert config["cluster"]["worker"][0].startswith("digits-g1-w0")


def test_group_key_from_labels() -> None:
    assert group_key(worker_pod(1, generation=3)) == ("ns", "digits", "3")


def test_group_key_without_labels_is_pod() -> None:
    pod = {"metadata": {"name": "solo", "namespace": "ns"}}
    assert group_key(pod) == ("ns", "solo", "")


@pytest.mark.parametrize(("value", "expected"), [
    ("/checkpoints", "/state/volumes/ns/digits/checkpoints"),
    ("/checkpoints/", "/state/volumes/ns/digits/checkpoints"),
    ("/checkpoints/output", "/state/volumes/ns/digits/checkpoints/output"),
    ("--output-dir=/checkpoints/output", "--output-dir=/state/volumes/ns/digits/checkpoints/output"),
    ("/checkpointsfoo", "/checkpointsfoo"),
    ("/data/x", "/state/volumes/ns/digits/data/x"),
    ("/data/sub/x", "/state/volumes/ns/digits/sub-volume/x"),
    ("relative/checkpoints", "relative/checkpoints"),
    ("--epochs=3", "--epochs=3"),
])
def test_map_path(value: str, expected: str) -> None:
    mounts = [
        ("/data/sub", STATE / "volumes/ns/digits/sub-volume"),
        ("/checkpoints", STATE / "volumes/ns/digits/checkpoints"),
        ("/data", STATE / "volumes/ns/digits/data"),
    ]
    assert map_path(value, mounts) == expected


@pytest.mark.parametrize(("argv", "expected"), [
    (["python", "-m", "x"], ["/venv/bin/python", "-m", "x"]),
    (["python3", "-m", "x"], ["/venv/bin/python", "-m", "x"]),
    (["/usr/local/bin/python3.11", "-m", "x"], ["/venv/bin/python", "-m", "x"]),
    (["bash", "-c", "python"], ["bash", "-c", "python"]),
])
def test_map_command(argv: list[str], expected: list[str]) -> None:
    assert map_command(argv, "/venv/bin/python") == expected


def test_expand_references() -> None:
    assert expand_references("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"


def test_plan_rewrites_tf_config_and_paths() -> None:
    address_map = {"digits-g1-w0.digits.ns.svc:2222": "127.0.0.1:5000", "digits-g1-w1.digits.ns.svc:2222": "127.0.0.1:5001"}
    plan = plan_for(worker_pod(1), address_map)
    assert json.loads(plan.env["TF_CONFIG"]) == {
        "cluster": {"worker": ["127.0.0.1:5000", "127.0.0.1:5001"]}, "task": {"type": "worker", "index": 1},
    }
    assert plan.env["GPUSCALE_CHECKPOINT_DIR"] == "/state/volumes/ns/digits/checkpoints"
    assert plan.env["GPUSCALE_TERMINATION_LOG"] == "/state/pods/ns/digits-g1-w1/termination-log"
    assert plan.termination_log == Path("/state/pods/ns/digits-g1-w1/termination-log")
    assert plan.argv == ["/venv/bin/python", "-m", "gpuscale_trainer",
                         "--output-dir=/state/volumes/ns/digits/checkpoints/output", "--epochs", "3"]


def test_plan_files_per_pod() -> None:
    plan = plan_for(worker_pod(0))
    assert plan.cwd == Path("/state/pods/ns/digits-g1-w0/workdir")
    assert plan.log_path == Path("/state/pod-logs/ns/digits-g1-w0.log")
    assert plan.env["HOME"] == str(plan.cwd)
    assert plan.env["HOSTNAME"] == "digits-g1-w0"
    assert plan.grace_period_seconds == 60
    assert plan.termination_message_policy == "FallbackToLogsOnError"
    assert Path("/state/volumes/ns/digits/checkpoints") in plan.folders


def test_plan_generations_share_volume() -> None:
    first = plan_for(worker_pod(0, generation=1))
    second = plan_for(worker_pod(0, workers=3, generation=2))
    assert first.env["GPUSCALE_CHECKPOINT_DIR"] == second.env["GPUSCALE_CHECKPOINT_DIR"]


def test_plan_leaves_invalid_tf_config() -> None:
    pod = worker_pod(0)
    pod["spec"]["containers"][0]["env"][0]["value"] = "{not json"
    assert plan_for(pod).env["TF_CONFIG"] == "{not json"


def test_plan_expands_args_from_env() -> None:
    pod = worker_pod(0, args=["--checkpoint-dir", "$(GPUSCALE_CHECKPOINT_DIR)/run"])
    assert plan_for(pod).argv[-1] == "/state/volumes/ns/digits/checkpoints/run"


def test_plan_default_command() -> None:
    pod = worker_pod(0, args=[])
    del pod["spec"]["containers"][0]["command"]
    assert plan_for(pod).argv == ["/venv/bin/python", "-m", "gpuscale_trainer"]


def test_env_field_ref_and_config_map() -> None:
    pod = worker_pod(0)
    container = {"name": "trainer", "env": [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "JOB", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['training.gpuscale.io/job-name']"}}},
        {"name": "LR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "lr"}}},
        {"name": "GREETING", "value": "$(POD) at $(LR)"},
    ]}

    def sources(kind: str, namespace: str, name: str) -> dict[str, str] | None:
        return {"lr": "0.01"} if (kind, namespace, name) == ("configMap", "ns", "settings") else None

    env = container_env(pod, container, sources)
    assert env == {"POD": "digits-g1-w0", "JOB": "digits", "LR": "0.01", "GREETING": "digits-g1-w0 at 0.01"}


def test_env_missing_secret_rejected() -> None:
    container = {"name": "trainer", "env": [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
    ]}
    with pytest.raises(LaunchError, match="secret ns/creds"):
        container_env(worker_pod(0), container, no_sources)


def test_env_missing_optional_secret_skipped() -> None:
    container = {"name": "trainer", "env": [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token", "optional": True}}},
    ]}
    assert container_env(worker_pod(0), container, no_sources) == {}


def test_env_from_with_prefix() -> None:
    container = {"name": "trainer", "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "APP_"}],
                 "env": [{"name": "APP_B", "value": "override"}]}
    env = container_env(worker_pod(0), container, lambda kind, ns, name: {"A": "1", "B": "2"})
    assert env == {"APP_A": "1", "APP_B": "override"}


def test_env_unsupported_field_ref_rejected() -> None:
    container = {"name": "trainer", "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}}}]}
    with pytest.raises(LaunchError, match="status.phase"):
        container_env(worker_pod(0), container, no_sources)
