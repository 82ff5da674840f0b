"""Command line: parse arguments, run training, and map the outcome to an exit code."""

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from gpuscale_trainer.cluster import WorkerTopology, check_operator_env, parse_tf_config
from gpuscale_trainer.compression import COMPRESS_CHOICES
from gpuscale_trainer.errors import EXIT_BAD_INPUT, EXIT_FAILED, InputError
from gpuscale_trainer.report import build_stop_summary, write_termination_message

log = logging.getLogger("gpuscale_trainer")

DEFAULT_STOP_TIMEOUT_S = 50.0


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpuscale_trainer",
        description=(
            "Train a model with MultiWorkerMirroredStrategy on the workers named in TF_CONFIG "
            "(absent: one local worker). Exit codes: 0 finished, 75 stopped on SIGTERM with a "
            "checkpoint saved, 2 bad input, 1 other failure."
        ),
    )
    parser.add_argument("--global-batch-size", type=_positive_int, default=96,
                        help="examples per optimizer step, summed over all workers; must be "
                        "divisible by the number of replicas (default: 96)")
    parser.add_argument("--epochs", type=_positive_int, default=10, help="epochs to train (default: 10)")
    parser.add_argument("--steps-per-epoch", type=_positive_int, default=None,
                        help="optimizer steps per epoch (default: training examples // global batch size)")
    parser.add_argument("--learning-rate", type=_positive_float, default=1e-3,
                        help="Adam learning rate (default: 0.001)")

    parser.add_argument("--checkpoint-dir", default=env.get("GPUSCALE_CHECKPOINT_DIR") or None,
                        help="directory for checkpoints, shared by all workers "
                        "(default: $GPUSCALE_CHECKPOINT_DIR; without one, nothing is saved)")
    parser.add_argument("--checkpoint-every-steps", type=_positive_int, default=50,
                        help="save a checkpoint every K optimizer steps (default: 50)")
    parser.add_argument("--output-dir", default="gpuscale-output",
                        help="where the chief writes the SavedModel, the .tflite files and "
                        "report.json (default: ./gpuscale-output)")

    parser.add_argument("--compress", choices=COMPRESS_CHOICES, default="all",
                        help="post-training quantization variants to build and evaluate (default: all)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for weights, the held-out split and shuffling (default: 0)")

    parser.add_argument("--model", default=None, metavar="MODULE:FUNCTION",
                        help="function that builds the tf.keras model (default: built-in digits MLP)")
    parser.add_argument("--dataset", default=None, metavar="MODULE:FUNCTION",
                        help="function that returns a gpuscale_trainer.data.ArrayDataset "
                        "(default: scikit-learn digits)")

    parser.add_argument("--stop-timeout", dest="stop_timeout_s", type=_positive_float,
                        default=DEFAULT_STOP_TIMEOUT_S,
                        help="seconds after SIGTERM before the worker exits with 75 even if the "
                        "agreed stop has not happened; keep it below the pod's grace period "
                        f"(default: {DEFAULT_STOP_TIMEOUT_S:.0f})")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the trainer and return its exit code."""
    env = os.environ if env is None else env
    _configure_logging(prefix="")
    options = build_parser(env).parse_args(argv)  # Exits with 2 on bad arguments.

    try:
        topology = parse_tf_config(env.get("TF_CONFIG"))
        check_operator_env(topology, env)
        _configure_logging(prefix=_worker_prefix(topology))
        _log_start(topology, env)

        # Imported here: it pulls in TensorFlow, which parsing the arguments does not need.
        from gpuscale_trainer.training import TrainingOptions, run

        return run(TrainingOptions(**vars(options)), topology, env)
    except InputError as error:
        log.error("bad input: %s", error)
        write_termination_message(build_stop_summary("failed", EXIT_BAD_INPUT, str(error)), env)
        return EXIT_BAD_INPUT
    except Exception as error:
        log.exception("training failed")
        message = f"{type(error).__name__}: {error}"
        write_termination_message(build_stop_summary("failed", EXIT_FAILED, message), env)
        return EXIT_FAILED


def _log_start(topology: WorkerTopology, env: Mapping[str, str]) -> None:
    log.info(
        "gpuscale trainer starting: job=%s generation=%s worker=%d/%d chief=%s",
        env.get("GPUSCALE_JOB_NAME", "-"),
        env.get("GPUSCALE_GENERATION", "-"),
        topology.index,
        topology.num_workers,
        str(topology.is_chief).lower(),
    )


def _worker_prefix(topology: WorkerTopology) -> str:
    return f"[worker {topology.index}/{topology.num_workers}] "


def _configure_logging(prefix: str) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s {prefix}%(message)s",
        stream=sys.stdout,
        force=True,
    )
    # TensorFlow's Python logger repeats its INFO lines through its own handler.
    logging.getLogger("tensorflow").setLevel(logging.WARNING)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value
