"""TF_CONFIG for each worker of a TrainingJob's worker group.

TensorFlow's MultiWorkerMirroredStrategy reads TF_CONFIG: `cluster.worker` lists every worker's
`host:port` in index order (identical in every pod) and `task` names this process. Worker 0 is
the chief, which writes checkpoints and the final summary.
"""

from __future__ import annotations

import json
from typing import Any

from gpuscale.planning.names import worker_host


def worker_addresses(
    job_name: str, namespace: str, generation: int, num_workers: int, port: int
) -> list[str]:
    """Return `host:port` of every worker of the group, in index order."""
    if num_workers < 1:
        raise ValueError(f"num_workers {num_workers} is invalid; a worker group has at least 1")
    return [
        f"{worker_host(job_name, namespace, generation, index)}:{port}"
        for index in range(num_workers)
    ]


def build_tf_config(
    job_name: str, namespace: str, generation: int, num_workers: int, index: int, port: int
) -> dict[str, Any]:
    """Return the TF_CONFIG of worker `index` in a group of `num_workers`, as a dict."""
    if not 0 <= index < num_workers:
        raise ValueError(f"worker index {index} is out of range 0..{num_workers - 1}")
    return {
        "cluster": {"worker": worker_addresses(job_name, namespace, generation, num_workers, port)},
        "task": {"type": "worker", "index": index},
    }


def tf_config_json(
    job_name: str, namespace: str, generation: int, num_workers: int, index: int, port: int
) -> str:
    """Return the TF_CONFIG of one worker as the compact JSON string the pod's env holds."""
    config = build_tf_config(job_name, namespace, generation, num_workers, index, port)
    return json.dumps(config, separators=(",", ":"), sort_keys=True)
