import json

import pytest

from gpuscale_trainer.cluster import LOCAL_TOPOLOGY, check_operator_env, parse_tf_config
from gpuscale_trainer.errors import InputError


def tf_config(workers, task):
    return json.dumps({"cluster": {"worker": workers}, "task": task})


def test_absent_config_is_local():
    for raw in (None, "", "  "):
        topology = parse_tf_config(raw)
        assert topology == LOCAL_TOPOLOGY
        assert topology.num_workers == 1
        assert topology.is_chief


def test_valid_config():
    topology = parse_tf_config(tf_config(["a:2222", "b:2222", "c:2222"], {"type": "worker", "index": 2}))
    assert topology.workers == ("a:2222", "b:2222", "c:2222")
    assert topology.index == 2
    assert topology.num_workers == 3
    assert not topology.is_chief


def test_worker_zero_is_chief():
    topology = parse_tf_config(tf_config(["job-g1-w0.job.ns.svc:2222"], {"type": "worker", "index": 0}))
    assert topology.is_chief
    assert not topology.is_local


@pytest.mark.parametrize(
    ("raw", "expected_text"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), "cluster must be an object"),
        (tf_config([], {"type": "worker", "index": 0}), "non-empty list"),
        (tf_config("a:1", {"type": "worker", "index": 0}), "non-empty list"),
        (tf_config(["a:1", 7], {"type": "worker", "index": 0}), "entry 7"),
        (tf_config(["a"], {"type": "worker", "index": 0}), "'a' has no 'host:port'"),
        (tf_config(["a:http"], {"type": "worker", "index": 0}), "port 'http'"),
        (tf_config(["a:70000"], {"type": "worker", "index": 0}), "port '70000'"),
        (tf_config(["a:1", "a:1"], {"type": "worker", "index": 0}), "more than once"),
        (tf_config(["a:1"], None), "task must be an object"),
        (tf_config(["a:1"], {"type": "ps", "index": 0}), "task.type is 'ps'"),
        (tf_config(["a:1", "b:1"], {"type": "worker"}), "task.index is missing"),
        (tf_config(["a:1"], {"type": "worker", "index": "0"}), "task.index is '0'"),
        (tf_config(["a:1", "b:1"], {"type": "worker", "index": True}), "task.index is True"),
        (tf_config(["a:1", "b:1"], {"type": "worker", "index": 2}), "index 2 is out of range for 2"),
        (tf_config(["a:1"], {"type": "worker", "index": -1}), "index -1 is out of range"),
        (
            json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "worker", "index": 0}}),
            "job type(s) ['ps']",
        ),
    ],
)
def test_invalid_config_rejected(raw, expected_text):
    with pytest.raises(InputError) as raised:
        parse_tf_config(raw)
    assert expected_text in str(raised.value)


def test_long_value_shortened_in_message():
    with pytest.raises(InputError) as raised:
        parse_tf_config("x" * 5000)
    assert len(str(raised.value)) < 600


def test_operator_env_agrees():
    topology = parse_tf_config(tf_config(["a:1", "b:1"], {"type": "worker", "index": 1}))
    check_operator_env(topology, {"GPUSCALE_NUM_WORKERS": "2", "GPUSCALE_WORKER_INDEX": "1"})
    check_operator_env(topology, {})


@pytest.mark.parametrize(
    ("env", "expected_text"),
    [
        ({"GPUSCALE_NUM_WORKERS": "3"}, "GPUSCALE_NUM_WORKERS=3 disagrees with TF_CONFIG, which gives 2"),
        ({"GPUSCALE_WORKER_INDEX": "0"}, "GPUSCALE_WORKER_INDEX=0 disagrees"),
        ({"GPUSCALE_NUM_WORKERS": "two"}, "'two' is not an integer"),
    ],
)
def test_operator_env_disagreement_rejected(env, expected_text):
    topology = parse_tf_config(tf_config(["a:1", "b:1"], {"type": "worker", "index": 1}))
    with pytest.raises(InputError) as raised:
        check_operator_env(topology, env)
    assert expected_text in str(raised.value)
