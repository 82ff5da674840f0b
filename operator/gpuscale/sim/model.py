"""Job model built from measured throughput and statistical-progress traces.

Each job trains at the fixed global batch size it was submitted with, as a TensorFlow job under
MultiWorkerMirroredStrategy does: the global batch is split over the workers, so adding workers
shortens each step but leaves the statistical efficiency of a step unchanged. Goodput (progress
per second) is then throughput times a constant, and a job is done after a fixed number of steps:

- steps needed: from `validation-<B>.csv` at the job's batch size B, the step count at which the
  cumulative progress reaches the target. The target is the smallest progress that any batch
  size recorded at the application's final epoch, so the job must reach the same model quality
  whatever its batch size.
- seconds per step at n workers: a fitted model, compute(b) + sync(n), where b = B / n is the
  local batch. compute is linear in b, fitted on the measured step time minus sync time; sync is
  linear in n, fitted separately for one node and for several nodes. A local batch larger than
  the largest measured one is split into micro-batches (gradient accumulation), paying compute
  for each micro-batch and sync once.

Workers are assumed packed onto nodes of 4 GPUs (ceil(n / 4) nodes), the same for every policy.
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
GPUS_PER_NODE = 4

# Epochs each application trains for, as in the published runs of these workloads.
MAX_EPOCHS = {"bert": 2, "cifar10": 100, "deepspeech2": 80, "imagenet": 90, "ncf": 10, "yolov3": 50}


@dataclass(frozen=True)
class Line:
    """y = intercept + slope * x."""

    intercept: float
    slope: float

    def __call__(self, x: float) -> float:
        return self.intercept + self.slope * x


@dataclass(frozen=True)
class ThroughputModel:
    """Seconds per step of one application against local batch and worker count."""

    compute: Line
    """Compute seconds per step against the local batch size."""
    sync_one_node: Line
    """Sync seconds per step against (workers - 2) when all workers share a node."""
    sync_many_nodes: Line
    """Sync seconds per step against (workers - 2) across nodes."""
    min_local_batch: int
    max_local_batch: int

    def step_seconds(self, global_batch: int, workers: int) -> float:
        """Return seconds per step at `workers` workers for a fixed global batch."""
        local_batch = global_batch / workers
        micro_batches = max(1, math.ceil(local_batch / self.max_local_batch - 1e-9))
        compute = micro_batches * max(self.compute(local_batch / micro_batches), 1e-4)
        return compute + self.sync_seconds(workers)

    def sync_seconds(self, workers: int) -> float:
        if workers <= 1:
            return 0.0
        nodes = math.ceil(workers / GPUS_PER_NODE)
        line = self.sync_one_node if nodes == 1 else self.sync_many_nodes
        return max(0.0, line(workers - 2))


@dataclass(frozen=True)
class Application:
    """Traces of one application: its throughput model and steps-to-target per batch size."""

    name: str
    throughput: ThroughputModel
    steps_to_target: dict[int, float]
    """Steps needed to reach the target progress, per validated global batch size."""


@dataclass(frozen=True)
class SimJob:
    """One job of a workload."""

    name: str
    submitted_at: float
    application: str
    num_replicas: int
    """Hand-tuned fixed worker count that the fixed-size baselines use."""
    batch_size: int
    steps: float
    """Steps needed to finish at `batch_size`."""


def _fit_line(points: list[tuple[float, float]]) -> Line:
    """Fit a least-squares line; one distinct x gives a flat line through the mean."""
    count = len(points)
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return Line(mean_y, 0.0)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    return Line(mean_y - slope * mean_x, slope)


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def fit_throughput(placements_csv: Path) -> ThroughputModel:
    """Fit the step-time model of one application from its placements.csv."""
    compute_points, one_node, many_nodes = [], [], []
    local_batches = []
    for row in _read_rows(placements_csv):
        placement = row["placement"]
        workers = sum(int(digit) for digit in placement)
        local_batch = float(row["local_bsz"])
        step, sync = float(row["step_time"]), float(row["sync_time"])
        local_batches.append(int(local_batch))
        compute_points.append((local_batch, step - sync))
        if workers >= 2:
            (one_node if len(placement) == 1 else many_nodes).append((workers - 2.0, sync))
    return ThroughputModel(
        compute=_fit_line(compute_points),
        sync_one_node=_fit_line(one_node),
        sync_many_nodes=_fit_line(many_nodes),
        min_local_batch=min(local_batches),
        max_local_batch=max(local_batches),
    )


def steps_to_target(trace_dir: Path, epochs: int) -> dict[int, float]:
    """Return, per validated batch size, the steps at which progress reaches the target."""
    curves: dict[int, list[tuple[float, float]]] = {}
    for path in sorted(trace_dir.glob("validation-*.csv")):
        batch = int(path.stem.split("-", 1)[1])
        curves[batch] = [(float(row["progress"]), float(row["iteration"])) for row in _read_rows(path)]
    target = min(curve[min(epochs, len(curve)) - 1][0] for curve in curves.values())

    steps = {}
    for batch, curve in curves.items():
        previous_progress, previous_steps = 0.0, 0.0
        for progress, iteration in curve:
            if progress >= target:
                share = (target - previous_progress) / (progress - previous_progress)
                steps[batch] = previous_steps + share * (iteration - previous_steps)
                break
            previous_progress, previous_steps = progress, iteration
    return steps


@functools.cache
def load_applications(data_dir: Path = DATA_DIR) -> dict[str, Application]:
    """Load every application under `data_dir`/traces."""
    applications = {}
    for name, epochs in MAX_EPOCHS.items():
        trace_dir = data_dir / "traces" / name
        applications[name] = Application(
            name=name,
            throughput=fit_throughput(trace_dir / "placements.csv"),
            steps_to_target=steps_to_target(trace_dir, epochs),
        )
    return applications


def load_workload(path: Path, applications: dict[str, Application]) -> list[SimJob]:
    """Read one workload CSV into jobs, sorted by submission time."""
    jobs = []
    for row in _read_rows(path):
        application = applications[row["application"]]
        batch = int(row["batch_size"])
        if batch not in application.steps_to_target:
            raise ValueError(
                f"{path}: job {row['name']} uses batch size {batch}, which has no validation trace "
                f"for {application.name}; traced sizes are {sorted(application.steps_to_target)}"
            )
        jobs.append(
            SimJob(
                name=row["name"],
                submitted_at=float(row["time"]),
                application=application.name,
                num_replicas=int(row["num_replicas"]),
                batch_size=batch,
                steps=application.steps_to_target[batch],
            )
        )
    return sorted(jobs, key=lambda job: (job.submitted_at, job.name))
