"""Start trainer workers as local processes on 127.0.0.1, as the tests and the benchmark do.

Each worker gets the TF_CONFIG and GPUSCALE_* variables the operator would inject, with
free localhost ports in place of pod addresses. This module is a development tool; in a
cluster the operator creates one pod per worker instead.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


def free_ports(count: int) -> list[int]:
    """Return `count` distinct ports that were free a moment ago on 127.0.0.1."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def worker_env(addresses: Sequence[str], index: int, generation: int, checkpoint_dir: str | None,
               termination_log: str, job_name: str = "local") -> dict[str, str]:
    """Return the environment the operator injects into worker `index`."""
    env = {
        "TF_CONFIG": json.dumps({"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}}),
        "GPUSCALE_JOB_NAME": job_name,
        "GPUSCALE_NUM_WORKERS": str(len(addresses)),
        "GPUSCALE_WORKER_INDEX": str(index),
        "GPUSCALE_GENERATION": str(generation),
        "GPUSCALE_TERMINATION_LOG": termination_log,
    }
    if checkpoint_dir:
        env["GPUSCALE_CHECKPOINT_DIR"] = checkpoint_dir
    return env


@dataclass
class Worker:
    index: int
    process: subprocess.Popen
    log_path: str
    termination_log: str
    started_at: float
    exited_at: float | None = None

    def log_text(self) -> str:
        with open(self.log_path, errors="replace") as file:
            return file.read()

    def termination_message(self) -> dict | None:
        try:
            with open(self.termination_log) as file:
                text = file.read()
        except FileNotFoundError:
            return None
        return json.loads(text) if text else None


@dataclass
class WorkerGroup:
    """One generation of workers training together."""

    workers: list[Worker] = field(default_factory=list)

    def wait(self, timeout_s: float) -> list[int]:
        """Wait for every worker to exit and return their exit codes; kill all on timeout."""
        deadline = time.monotonic() + timeout_s
        for worker in self.workers:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                worker.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                self.kill()
                raise TimeoutError(f"workers still running after {timeout_s:.0f} s") from None
            self._record_exit_times()
        return [worker.process.returncode for worker in self.workers]

    def wait_for_log(self, text: str, timeout_s: float, worker_index: int = 0) -> float:
        """Wait until worker `worker_index` logs a line containing `text`; return the time seen."""
        deadline = time.monotonic() + timeout_s
        worker = self.workers[worker_index]
        while time.monotonic() < deadline:
            if text in worker.log_text():
                return time.monotonic()
            if worker.process.poll() is not None:
                raise RuntimeError(f"worker {worker_index} exited with {worker.process.returncode} "
                                   f"before logging {text!r}:\n{worker.log_text()[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"worker {worker_index} did not log {text!r} within {timeout_s:.0f} s")

    def send_sigterm(self, stagger_s: float = 0.0) -> float:
        """Send SIGTERM to every worker, `stagger_s` apart; return when the first was sent."""
        first_sent = time.monotonic()
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
            time.sleep(stagger_s)
        return first_sent

    def kill(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()

    def _record_exit_times(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.exited_at is None and worker.process.poll() is not None:
                worker.exited_at = now


def start_workers(num_workers: int, args: Sequence[str], run_dir: str, generation: int = 1,
                  checkpoint_dir: str | None = None, extra_env: Mapping[str, str] | None = None) -> WorkerGroup:
    """Start `num_workers` trainer processes; logs and termination messages go to `run_dir`."""
    os.makedirs(run_dir, exist_ok=True)
    addresses = [f"127.0.0.1:{port}" for port in free_ports(num_workers)]
    group = WorkerGroup()
    for index in range(num_workers):
        prefix = os.path.join(run_dir, f"g{generation}-w{index}")
        env = dict(os.environ)
        env.update(worker_env(addresses, index, generation, checkpoint_dir, f"{prefix}.termination"))
        env["TMPDIR"] = f"{prefix}.tmp"  # Per-worker scratch space that tests can inspect.
        os.makedirs(env["TMPDIR"], exist_ok=True)
        env.update(extra_env or {})
        with open(f"{prefix}.log", "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "gpuscale_trainer", *args],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=run_dir,
            )
        group.workers.append(Worker(index, process, f"{prefix}.log", f"{prefix}.termination", time.monotonic()))
    return group
