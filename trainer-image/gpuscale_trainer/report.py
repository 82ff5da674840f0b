"""The compression report, the short summary, and the termination message file.

The operator copies the termination message into the TrainingJob's status.result, and
the kubelet keeps at most 4096 bytes of it, so the summary drops detail until it fits.
"""

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

TERMINATION_LOG_ENV = "GPUSCALE_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
MAX_TERMINATION_MESSAGE_BYTES = 4096
REPORT_FILENAME = "report.json"
# Leaves room in the 4096 bytes for the other summary fields.
MAX_MESSAGE_CHARS = 3000


@dataclass(frozen=True)
class VariantResult:
    """One model format evaluated on the held-out examples."""

    name: str
    format: str  # "savedmodel" or "tflite"
    size_bytes: int
    accuracy: float
    mean_latency_us: float  # one example per call, after a warm-up call


@dataclass(frozen=True)
class TrainingResult:
    steps: int
    start_step: int  # step restored from the checkpoint at the last start; 0 for a fresh run
    epochs: int
    workers: int
    global_batch_size: int
    accuracy: float  # held-out accuracy of the trained Keras model


def build_report(training: TrainingResult, variants: list[VariantResult], held_out_examples: int) -> dict:
    """Return the full JSON report that the chief writes next to the SavedModel."""
    return {
        "training": asdict(training),
        "heldOutExamples": held_out_examples,
        "latencyNote": "mean_latency_us: mean wall time in microseconds of one single-example inference on one CPU thread",
        "variants": [asdict(variant) for variant in variants],
    }


def build_summary(training: TrainingResult, variants: list[VariantResult], report_path: str | None) -> dict:
    """Return the short success summary for the termination message (camelCase keys)."""
    summary: dict = {
        "outcome": "succeeded",
        "accuracy": round(training.accuracy, 4),
        "steps": training.steps,
        "startStep": training.start_step,
        "epochs": training.epochs,
        "workers": training.workers,
        "globalBatchSize": training.global_batch_size,
    }
    compressed = [variant for variant in variants if variant.format == "tflite"]
    if compressed:
        summary["compressed"] = {
            variant.name: {"sizeBytes": variant.size_bytes, "accuracy": round(variant.accuracy, 4)}
            for variant in compressed
        }
    if report_path:
        summary["report"] = report_path
    return summary


def encode_termination_message(summary: Mapping) -> bytes:
    """Encode `summary` as compact JSON of at most 4096 bytes.

    Drops the per-variant details, then the report path, when the full form is too long;
    a message that is still too long keeps only the outcome and accuracy fields.
    """
    candidates = [dict(summary)]
    trimmed = {key: value for key, value in summary.items() if key != "compressed"}
    candidates.append(trimmed)
    candidates.append({key: value for key, value in trimmed.items() if key != "report"})
    for candidate in candidates:
        encoded = json.dumps(candidate, separators=(",", ":"), sort_keys=True).encode()
        if len(encoded) <= MAX_TERMINATION_MESSAGE_BYTES:
            return encoded

    minimal = {key: summary[key] for key in ("outcome", "accuracy") if key in summary}
    return json.dumps(minimal, separators=(",", ":")).encode()


def build_stop_summary(outcome: str, exit_code: int, message: str, step: int | None = None) -> dict:
    """Return the summary of a run that did not succeed ("preempted" or "failed")."""
    summary: dict = {"outcome": outcome, "exitCode": exit_code, "message": message[:MAX_MESSAGE_CHARS]}
    if step is not None:
        summary["step"] = step
    return summary


def write_termination_message(summary: Mapping, env: Mapping[str, str]) -> None:
    """Write `summary` to GPUSCALE_TERMINATION_LOG (default /dev/termination-log).

    A failed write is logged and ignored: the kubelet then falls back to the log tail.
    """
    path = env.get(TERMINATION_LOG_ENV) or DEFAULT_TERMINATION_LOG
    try:
        with open(path, "wb") as file:
            file.write(encode_termination_message(summary))
    except OSError as error:
        log.warning("cannot write the termination message to %s: %s", path, error)


def write_report(report: Mapping, output_dir: str) -> str:
    path = os.path.join(output_dir, REPORT_FILENAME)
    with open(path, "w") as file:
        json.dump(report, file, indent=2)
        file.write("\n")
    return path
