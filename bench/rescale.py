"""Benchmark elastic rescaling of the trainer with real worker processes on 127.0.0.1.

Measures, for 2 -> 3 and 3 -> 2 workers:
- stop: seconds from the first SIGTERM to the last worker's exit (all must exit 75);
- resume: seconds from starting the new workers to the first training step they finish,
  which includes Python and TensorFlow start-up, the cluster handshake and the restore;
and the training throughput (examples per second, whole job) at 1, 2 and 3 workers, as
the median of the epoch lines after the first epoch.

    python -m bench.rescale [--work-dir DIR]

This is a benchmark, not a test: it prints a table and asserts nothing about the numbers.
"""

import argparse
import os
import platform
import re
import statistics
import sys
import tempfile
import time

from gpuscale_trainer.local_workers import WorkerGroup, start_workers

EPOCHS_FOR_RESCALE = 200  # Long enough that no group finishes before it is stopped.
EPOCHS_FOR_THROUGHPUT = 8
EPOCHS_BEFORE_STOP = 3
THROUGHPUT_PATTERN = re.compile(r"examples_per_s=(\d+)")


def trainer_args(epochs: int, output_dir: str) -> list[str]:
    return ["--epochs", str(epochs), "--checkpoint-every-steps", "20", "--compress", "none",
            "--output-dir", output_dir]


def wait_for_first_step(group: WorkerGroup, started_at: float, timeout_s: float) -> float:
    """Return seconds from `started_at` until every worker finished its first step."""
    seen = [group.wait_for_log("first step finished", timeout_s, index) for index in range(len(group.workers))]
    return max(seen) - started_at


def wait_for_epochs(group: WorkerGroup, epochs: int, timeout_s: float) -> None:
    """Wait until the chief of `group` has logged `epochs` epoch lines since it started."""
    deadline = time.monotonic() + timeout_s
    while group.workers[0].log_text().count(" epoch=") < epochs:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the chief did not log {epochs} epochs within {timeout_s:.0f} s")
        time.sleep(0.1)


def stop_group(group: WorkerGroup) -> float:
    """SIGTERM every worker and return seconds until the last one exited; expect exit 75."""
    sent_at = group.send_sigterm()
    codes = group.wait(timeout_s=90)
    if codes != [75] * len(codes):
        raise RuntimeError(f"expected every worker to exit 75 after SIGTERM, got {codes}")
    return max(worker.exited_at for worker in group.workers) - sent_at


def measure_rescales(work_dir: str) -> list[tuple[str, float, float]]:
    """Run 2 workers, rescale to 3, then back to 2; return (transition, stop_s, resume_s)."""
    checkpoint_dir = os.path.join(work_dir, "rescale-checkpoints")
    args = trainer_args(EPOCHS_FOR_RESCALE, os.path.join(work_dir, "rescale-output"))
    group = start_workers(2, args, os.path.join(work_dir, "rescale"), 1, checkpoint_dir)
    rows = []
    try:
        wait_for_epochs(group, EPOCHS_BEFORE_STOP, timeout_s=180)
        for generation, (old, new) in enumerate([(2, 3), (3, 2)], start=2):
            stop_s = stop_group(group)
            started_at = time.monotonic()
            group = start_workers(new, args, os.path.join(work_dir, "rescale"), generation, checkpoint_dir)
            resume_s = wait_for_first_step(group, started_at, timeout_s=180)
            rows.append((f"{old} -> {new}", stop_s, resume_s))
            print(f"rescale {old} -> {new}: stop {stop_s:.2f} s, resume {resume_s:.2f} s", flush=True)
            wait_for_epochs(group, EPOCHS_BEFORE_STOP, timeout_s=180)
        stop_group(group)
    finally:
        group.kill()
    return rows


def measure_throughput(work_dir: str, num_workers: int) -> float:
    run_dir = os.path.join(work_dir, f"throughput-{num_workers}")
    group = start_workers(num_workers, trainer_args(EPOCHS_FOR_THROUGHPUT, os.path.join(run_dir, "output")),
                          run_dir, 1, os.path.join(run_dir, "checkpoints"))
    try:
        codes = group.wait(timeout_s=300)
    finally:
        group.kill()
    if codes != [0] * num_workers:
        raise RuntimeError(f"throughput run with {num_workers} worker(s) exited with {codes}")
    rates = [float(rate) for rate in THROUGHPUT_PATTERN.findall(group.workers[0].log_text())]
    return statistics.median(rates[1:])  # The first epoch includes tracing the train step.


def describe_machine() -> str:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
            f"Python {platform.python_version()}, load average before the run {load}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", help="where logs and checkpoints go (default: a new temporary folder)")
    options = parser.parse_args(argv)
    work_dir = options.work_dir or tempfile.mkdtemp(prefix="gpuscale-bench-")

    print(f"machine: {describe_machine()}")
    print(f"work dir: {work_dir}", flush=True)
    rescales = measure_rescales(work_dir)
    throughput = {}
    for num_workers in (1, 2, 3):
        throughput[num_workers] = measure_throughput(work_dir, num_workers)
        print(f"throughput with {num_workers} worker(s): {throughput[num_workers]:.0f} examples/s", flush=True)

    print()
    print("| rescale | SIGTERM to all workers exited (s) | new workers started to first step (s) |")
    print("|---|---|---|")
    for transition, stop_s, resume_s in rescales:
        print(f"| {transition} | {stop_s:.2f} | {resume_s:.2f} |")
    print()
    print("| workers | examples/s (whole job, median epoch) |")
    print("|---|---|")
    for num_workers, rate in throughput.items():
        print(f"| {num_workers} | {rate:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
