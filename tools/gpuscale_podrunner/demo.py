"""`make demo`: train the digits TrainingJob for real on the local control plane, then stop everything.

Stages: start the control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok with fake
GPU nodes), install the CRDs, start the operator and the dev pod runner, apply
manifests/examples/digits.yaml, follow the job to its end, and print its result and compression
report. Each stage's duration is printed at the end. All state lives in `.local-cluster/demo/`,
which is wiped at the start, so the job never resumes from an earlier demo's checkpoint.

The pod runner is needed because kwok's fake nodes run no containers: it runs the worker pods as
local processes.

Exit status: 0 when the job Succeeded, 1 when it failed, timed out or a stage failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from gpuscale.cluster.launcher import ClusterConfig, LocalCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MANIFEST = REPO_ROOT / "manifests" / "examples" / "digits.yaml"
DEFAULT_STATE_DIR = REPO_ROOT / ".local-cluster" / "demo"
CRDS = ("trainingjobs.training.gpuscale.io", "costpolicies.training.gpuscale.io")
CHIEF_LINE_MARKERS = ("training starts", "training finished", "variant=", "report written", "stopping", "bad input")
FINISHED_PHASES = ("Succeeded", "Failed")


class DemoError(RuntimeError):
    """A stage failed; the message names the stage's log."""


class Stopwatch:
    """Prints each stage as it starts and keeps its duration for the summary."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.stages: list[tuple[str, float]] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def run(self, title: str, function, *args):
        say(f"\n== {title}")
        began = time.monotonic()
        try:
            return function(*args)
        finally:
            self.stages.append((title, time.monotonic() - began))

    def print_summary(self) -> None:
        say("\n== Stage durations")
        for title, seconds in self.stages:
            say(f"  {title:<42} {seconds:7.1f} s")
        say(f"  {'total':<42} {self.elapsed():7.1f} s")


def say(line: str) -> None:
    print(line, flush=True)


class BackgroundProcess:
    """A long-running child (the operator or the pod runner) with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, ready_text: str, env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.ready_text = ready_text
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(self.argv, stdout=log_file, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env, cwd=REPO_ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_text in self.log_path.read_text(errors="replace"):
                say(f"  {self.name} started (pid {self.process.pid}, log {self.log_path})")
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.3)
        raise DemoError(f"{self.name} did not start; its log {self.log_path} ends with:\n{self.log_tail()}")

    def stop(self, timeout: float = 90) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, characters: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:] if self.log_path.exists() else ""


class ChiefLog:
    """Follows the chief's pod logs (one per worker generation) and prints its progress lines."""

    def __init__(self, pod_logs: Path, job: str, epoch_every: int) -> None:
        self.pod_logs = pod_logs
        self.job = job
        self.epoch_every = epoch_every
        self.offsets: dict[Path, int] = {}

    def print_new_lines(self, elapsed: float) -> None:
        for path in sorted(self.pod_logs.glob(f"{self.job}-g*-w0.log")):
            with open(path, "rb") as file:
                file.seek(self.offsets.get(path, 0))
                data = file.read()
            # Keep a partial last line for the next read.
            complete, _, _ = data.rpartition(b"\n")
            self.offsets[path] = self.offsets.get(path, 0) + (len(complete) + 1 if complete else 0)
            for line in complete.decode(errors="replace").splitlines():
                if self._is_progress_line(line):
                    say(f"  [{elapsed:6.1f} s] {path.stem}: {line.split(' INFO ', 1)[-1]}")

    def _is_progress_line(self, line: str) -> bool:
        if "epoch=" in line:
            epoch = line.split("epoch=", 1)[1].split("/", 1)[0]
            return not epoch.isdigit() or int(epoch) == 1 or int(epoch) % self.epoch_every == 0 or "stopped=true" in line
        return any(marker in line for marker in CHIEF_LINE_MARKERS)


def start_cluster(stack: ExitStack, state_dir: Path) -> LocalCluster:
    config = ClusterConfig(state_dir=state_dir / "cluster", kubeconfig=state_dir / "kubeconfig")
    cluster = LocalCluster(config, log=lambda line: say(f"  {line}"))
    stack.callback(cluster.stop)
    cluster.start()
    say(f"  to watch from another terminal while the demo runs: export KUBECONFIG={config.kubeconfig}")
    return cluster


def install_crds(cluster: LocalCluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    for crd in CRDS:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    say(f"  CRDs established: {', '.join(CRDS)}")


def start_controllers(stack: ExitStack, cluster: LocalCluster, state_dir: Path) -> None:
    env = {**_clean_environ(), "KUBECONFIG": str(cluster.kubeconfig)}
    operator = BackgroundProcess(
        "operator", [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces",
                     "-m", "gpuscale.controller.handlers"],
        state_dir / "operator.log", "Initial authentication has finished", env)
    runner = BackgroundProcess(
        "dev pod runner", [sys.executable, "-m", "gpuscale_podrunner", "--kubeconfig", str(cluster.kubeconfig),
                           "--state-dir", str(state_dir)],
        state_dir / "pod-runner.log", "pod runner started", env)
    # Stopped in reverse: the runner first (it stops the workers), then the operator.
    stack.callback(operator.stop)
    operator.start()
    stack.callback(runner.stop)
    runner.start()


def submit_job(cluster: LocalCluster, manifest: Path) -> str:
    output = cluster.kubectl("apply", "-f", str(manifest)).stdout.strip()
    say(f"  {output}")
    return cluster.kubectl("get", "-f", str(manifest), "-o", "jsonpath={.metadata.name}").stdout.strip()


def follow_job(cluster: LocalCluster, job: str, state_dir: Path, timeout: float, epoch_every: int) -> dict:
    """Print phase changes and the chief's progress until the job finishes; return its status."""
    chief = ChiefLog(state_dir / "pod-logs" / "default", job, epoch_every)
    began = time.monotonic()
    last_phase = None
    while True:
        elapsed = time.monotonic() - began
        status = json.loads(cluster.kubectl("get", "trainingjob", job, "-o", "json").stdout).get("status") or {}
        phase = status.get("phase")
        if phase != last_phase:
            workers = f", {status.get('workers', 0)} workers" if phase else ""
            say(f"  [{elapsed:6.1f} s] phase {phase or '(none yet)'}{workers}: {status.get('message', '')}")
            last_phase = phase
        chief.print_new_lines(elapsed)
        if phase in FINISHED_PHASES:
            return status
        if elapsed > timeout:
            raise DemoError(f"the TrainingJob {job} did not finish within {timeout:.0f} s (phase {phase}); "
                            f"see {state_dir / 'operator.log'} and the pod logs in {state_dir / 'pod-logs'}")
        time.sleep(1.0)


def print_result(job: str, status: dict, state_dir: Path) -> None:
    result = status.get("result") or {}
    if status.get("phase") != "Succeeded":
        raise DemoError(f"the TrainingJob {job} ended {status.get('phase')}: {status.get('message')}; "
                        f"result {json.dumps(result)}; see the pod logs in {state_dir / 'pod-logs'}")
    say(f"  TrainingJob {job} Succeeded: held-out accuracy {result.get('accuracy')}, {result.get('steps')} steps, "
        f"{result.get('workers')} workers, global batch {result.get('globalBatchSize')}")
    report_path = Path(result["report"]) if result.get("report") else None
    if report_path is None or not report_path.exists():
        say(f"  the chief's report file was not found ({report_path}); status.result: {json.dumps(result)}")
        return
    report = json.loads(report_path.read_text())
    say(f"  compression report ({report_path}, {report.get('heldOutExamples')} held-out examples):")
    say(f"    {'variant':<10} {'format':<11} {'size (bytes)':>12} {'vs float32':>10} {'accuracy':>9} {'latency (us)':>13}")
    sizes = {variant["name"]: variant["size_bytes"] for variant in report["variants"]}
    baseline = sizes.get("float32")
    for variant in report["variants"]:
        ratio = f"{variant['size_bytes'] / baseline:.0%}" if baseline and variant["format"] == "tflite" else "-"
        say(f"    {variant['name']:<10} {variant['format']:<11} {variant['size_bytes']:>12} {ratio:>10} "
            f"{variant['accuracy']:>9.4f} {variant['mean_latency_us']:>13.1f}")


def _clean_environ() -> dict[str, str]:
    # The children must reach the demo's cluster, never one named by the caller's KUBECONFIG.
    return {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}


def _interrupt(signum: int, frame: object) -> None:
    """Unwind on SIGTERM (a CI timeout, for example) as on Ctrl-C, so every child is stopped."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpuscale_podrunner.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="TrainingJob manifest to apply")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="folder for the cluster, logs and volumes; wiped at the start (default: .local-cluster/demo)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for the job to finish after it is applied (default: 600)")
    parser.add_argument("--epoch-every", type=int, default=5, help="print every Nth epoch line of the chief (default: 5)")
    args = parser.parse_args(argv)

    state_dir = args.state_dir.resolve()
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    watch = Stopwatch()
    exit_code = 0
    signal.signal(signal.SIGTERM, _interrupt)
    manifest_name = args.manifest.resolve()
    if manifest_name.is_relative_to(REPO_ROOT):
        manifest_name = manifest_name.relative_to(REPO_ROOT)
    try:
        with ExitStack() as stack:
            cluster = watch.run("Start the local control plane", start_cluster, stack, state_dir)
            watch.run("Install the CRDs", install_crds, cluster)
            watch.run("Start the operator and the dev pod runner", start_controllers, stack, cluster, state_dir)
            job = watch.run(f"Apply {manifest_name}", submit_job, cluster, args.manifest)
            status = watch.run("Train (phase changes and the chief's log)", follow_job, cluster, job, state_dir,
                               args.timeout, args.epoch_every)
            watch.run("Result", print_result, job, status, state_dir)
            say("\n== Stop the pod runner, the operator and the control plane")
            stack_began = time.monotonic()
            stack.close()
            watch.stages.append(("Stop everything", time.monotonic() - stack_began))
    except DemoError as error:
        say(f"\nerror: {error}")
        exit_code = 1
    except subprocess.CalledProcessError as error:
        say(f"\nerror: {' '.join(map(str, error.cmd[:4]))} ... failed ({error.returncode}): {error.stderr}")
        exit_code = 1
    except KeyboardInterrupt:
        say("\ninterrupted; everything started by the demo has been stopped")
        exit_code = 1
    watch.print_summary()
    if exit_code == 0:
        say(f"\ndemo finished: the TrainingJob Succeeded; logs and volumes are in {state_dir}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
