"""Parse and validate TF_CONFIG, the worker list that MultiWorkerMirroredStrategy reads.

TensorFlow's own parser reports a bad TF_CONFIG late and vaguely (often as a hang while
waiting for a peer), so the trainer validates it first and exits with code 2 instead.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass

from gpuscale_trainer.errors import InputError

_MAX_SHOWN_CHARS = 200


@dataclass(frozen=True)
class WorkerTopology:
    """The workers of one training run and the position of this process among them.

    `workers` is empty when TF_CONFIG is absent: the process then trains alone.
    """

    workers: tuple[str, ...]
    index: int

    @property
    def num_workers(self) -> int:
        return max(1, len(self.workers))

    @property
    def is_chief(self) -> bool:
        """Worker 0 is the chief: it writes checkpoints, the SavedModel and the report."""
        return self.index == 0

    @property
    def is_local(self) -> bool:
        return not self.workers


LOCAL_TOPOLOGY = WorkerTopology(workers=(), index=0)


def parse_tf_config(raw: str | None) -> WorkerTopology:
    """Parse the TF_CONFIG value; an absent or blank value means one local worker.

    Raises InputError that names the bad field and value.
    """
    if raw is None or not raw.strip():
        return LOCAL_TOPOLOGY

    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise InputError(
            f"TF_CONFIG is not valid JSON ({error}): {_shorten(raw)}. Expected "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}.'
        ) from None
    if not isinstance(config, Mapping):
        raise InputError(f"TF_CONFIG must be a JSON object, got {_shorten(raw)}.")

    workers = _parse_cluster(config.get("cluster"))
    index = _parse_task(config.get("task"), len(workers))
    return WorkerTopology(workers=workers, index=index)


def check_operator_env(topology: WorkerTopology, env: Mapping[str, str]) -> None:
    """Check that GPUSCALE_NUM_WORKERS and GPUSCALE_WORKER_INDEX, when set, agree with TF_CONFIG.

    The operator sets both next to TF_CONFIG; a disagreement means the pod was built
    from two different worker groups, and training with it would hang or mix data.
    """
    expected = {
        "GPUSCALE_NUM_WORKERS": topology.num_workers,
        "GPUSCALE_WORKER_INDEX": topology.index,
    }
    for name, value in expected.items():
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        try:
            parsed = int(raw)
        except ValueError:
            raise InputError(f"{name}={raw!r} is not an integer.") from None
        if parsed != value:
            raise InputError(
                f"{name}={parsed} disagrees with TF_CONFIG, which gives {value}; "
                "both must come from the same worker group."
            )


def _parse_cluster(cluster: object) -> tuple[str, ...]:
    if not isinstance(cluster, Mapping):
        raise InputError(
            f"TF_CONFIG cluster must be an object with a 'worker' list, got {_shorten(cluster)}."
        )
    other_jobs = sorted(name for name in cluster if name != "worker")
    if other_jobs:
        raise InputError(
            f"TF_CONFIG cluster has job type(s) {other_jobs}; this trainer runs "
            "MultiWorkerMirroredStrategy, which takes 'worker' tasks only (worker 0 is the chief)."
        )

    workers = cluster.get("worker")
    if not isinstance(workers, list) or not workers:
        raise InputError(
            f"TF_CONFIG cluster.worker must be a non-empty list of 'host:port', got {_shorten(workers)}."
        )
    for address in workers:
        _check_address(address)
    duplicates = sorted({address for address in workers if workers.count(address) > 1})
    if duplicates:
        raise InputError(f"TF_CONFIG cluster.worker lists {duplicates} more than once.")
    return tuple(workers)


def _check_address(address: object) -> None:
    if not isinstance(address, str):
        raise InputError(f"TF_CONFIG cluster.worker entry {address!r} is not a 'host:port' string.")
    host, separator, port = address.rpartition(":")
    if not separator or not host:
        raise InputError(f"TF_CONFIG cluster.worker entry {address!r} has no 'host:port' form.")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InputError(
            f"TF_CONFIG cluster.worker entry {address!r} has port {port!r}; expected 1-65535."
        )


def _parse_task(task: object, num_workers: int) -> int:
    if not isinstance(task, Mapping):
        raise InputError(
            'TF_CONFIG task must be an object like {"type": "worker", "index": 0}, '
            f"got {_shorten(task)}."
        )
    task_type = task.get("type")
    if task_type != "worker":
        raise InputError(f"TF_CONFIG task.type is {task_type!r}; expected 'worker'.")
    if "index" not in task:
        raise InputError(
            "TF_CONFIG task.index is missing; set it to this worker's position in "
            f"cluster.worker (0 to {num_workers - 1})."
        )

    index = task["index"]
    # bool is a subclass of int in Python, and true would silently mean worker 1.
    if not isinstance(index, int) or isinstance(index, bool):
        raise InputError(f"TF_CONFIG task.index is {index!r}; expected an integer.")
    if not 0 <= index < num_workers:
        raise InputError(
            f"TF_CONFIG task.index {index} is out of range for {num_workers} worker(s) "
            f"in cluster.worker; expected 0 to {num_workers - 1}."
        )
    return index


def _shorten(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    if len(text) > _MAX_SHOWN_CHARS:
        return repr(text[:_MAX_SHOWN_CHARS] + "...")
    return repr(text)
