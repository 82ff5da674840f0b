"""Background processes for e2e tests: the operator (`kopf run`) and the dev pod runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class BackgroundProcess:
    """A Python module run in a subprocess with its output in a log file, started and stopped at will."""

    # A line the process logs once it is ready to work.
    ready_marker = ""
    # Seconds between SIGTERM and SIGKILL in `stop`.
    stop_timeout = 20.0

    def __init__(self, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.extra_env}
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(self.command(), stdout=log_file, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.ready_marker in self.log_path.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"{self.command()[2]} did not start; its log ends with:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, characters: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]


class OperatorProcess(BackgroundProcess):
    """The operator as `make run` starts it: `kopf run --standalone --all-namespaces`."""

    ready_marker = "Initial authentication has finished"

    def __init__(self, kubeconfig: Path, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        super().__init__(log_path, {"KUBECONFIG": str(kubeconfig), **(extra_env or {})})
        self.kubeconfig = kubeconfig

    def command(self) -> list[str]:
        return [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces",
                "-m", "gpuscale.controller.handlers"]


class PodRunnerProcess(BackgroundProcess):
    """The dev pod runner (`python -m gpuscale_podrunner`) for one namespace.

    It runs trainer pods as local processes, because kwok's fake nodes run no containers.
    """

    ready_marker = "pod runner started"
    # The runner stops its pods' processes within their grace period before it exits.
    stop_timeout = 90.0

    def __init__(self, kubeconfig: Path, namespace: str, state_dir: Path) -> None:
        super().__init__(state_dir / "pod-runner.log")
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.state_dir = state_dir

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gpuscale_podrunner", "--kubeconfig", str(self.kubeconfig),
                "--namespace", self.namespace, "--state-dir", str(self.state_dir)]

    def pod_log(self, pod: str) -> str:
        path = self.state_dir / "pod-logs" / self.namespace / f"{pod}.log"
        return path.read_text(errors="replace") if path.exists() else ""
