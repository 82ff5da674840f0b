"""Benchmark the operator's start-up latency against a plain client script that creates the same objects.

Usage: python -m bench.operator [--jobs 20] [--burst 100]

It starts a private local control plane, then measures, for 4-worker jobs:
  1. latency from `create` to all 4 worker pods existing, one job at a time (median and p95);
  2. the time to bring up a burst of jobs created back to back, until all their pods exist;
each for the operator (a TrainingJob) and for the baseline (a script that creates the headless
Service and the 4 pods itself with the same builders: the floor that the API server allows). It
prints a table with the ratio operator / baseline and the operator's peak resident memory.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import defaultdict
from pathlib import Path
from tempfile import TemporaryDirectory

from kubernetes import client, config, watch

from gpuscale.api.parsing import parse_training_job_spec
from gpuscale.cluster.launcher import ClusterConfig, FakeNodeSet, LocalCluster
from gpuscale.planning.children import JobIdentity, build_service, build_worker_pods
from gpuscale.planning.names import LABEL_JOB_NAME
from tests.e2e.operator_process import OperatorProcess

WORKERS = 4
SPEC = {"image": "gpuscale/trainer:0.1.0", "workers": {"min": WORKERS, "max": WORKERS}, "gpusPerWorker": 0}


class PodCounter:
    """Watches pods in one namespace and records when each job's pod count reaches WORKERS."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.seen: dict[str, set[str]] = defaultdict(set)
        self.complete: dict[str, float] = {}
        self.condition = threading.Condition()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        core = client.CoreV1Api()
        try:
            self._count(core)
        except Exception:  # noqa: BLE001 - the watch breaks when the cluster stops at the end
            pass

    def _count(self, core: client.CoreV1Api) -> None:
        for event in self._watch.stream(core.list_namespaced_pod, self.namespace, label_selector=LABEL_JOB_NAME):
            if event["type"] != "ADDED":
                continue
            pod = event["object"]
            job = pod.metadata.labels[LABEL_JOB_NAME]
            with self.condition:
                self.seen[job].add(pod.metadata.name)
                if len(self.seen[job]) == WORKERS and job not in self.complete:
                    self.complete[job] = time.perf_counter()
                    self.condition.notify_all()

    def wait(self, jobs: list[str], timeout: float = 300) -> float:
        deadline = time.monotonic() + timeout
        with self.condition:
            while not all(j in self.complete for j in jobs):
                if not self.condition.wait(timeout=max(deadline - time.monotonic(), 0.01)) and time.monotonic() > deadline:
                    raise TimeoutError(f"pods of {len(jobs) - sum(j in self.complete for j in jobs)} jobs never appeared")
            return max(self.complete[j] for j in jobs)

    def stop(self) -> None:
        self._watch.stop()


def create_job(custom: client.CustomObjectsApi, namespace: str, name: str) -> None:
    body = {"apiVersion": "training.gpuscale.io/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name}, "spec": SPEC}
    custom.create_namespaced_custom_object("training.gpuscale.io", "v1alpha1", namespace, "trainingjobs", body)


def create_children(core: client.CoreV1Api, namespace: str, name: str) -> None:
    """Create the Service and the pods straight through the API server, as the baseline script does."""
    spec = parse_training_job_spec(SPEC, name)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": name}})
    identity = JobIdentity(name=name, namespace=namespace, uid=owner.metadata.uid)
    service = build_service(spec, identity)
    service["metadata"]["ownerReferences"][0].update(apiVersion="v1", kind="ConfigMap")
    core.create_namespaced_service(namespace, service)
    for pod in build_worker_pods(spec, identity, generation=1, num_workers=WORKERS):
        pod["metadata"]["ownerReferences"][0].update(apiVersion="v1", kind="ConfigMap")
        core.create_namespaced_pod(namespace, pod)


def measure(create, namespace: str, prefix: str, jobs: int, burst: int) -> tuple[list[float], float]:
    counter = PodCounter(namespace)
    try:
        latencies = []
        for index in range(jobs):
            name = f"{prefix}-seq-{index}"
            started = time.perf_counter()
            create(namespace, name)
            latencies.append(counter.wait([name]) - started)
        names = [f"{prefix}-burst-{index}" for index in range(burst)]
        started = time.perf_counter()
        for name in names:
            create(namespace, name)
        burst_seconds = counter.wait(names, timeout=600) - started
    finally:
        counter.stop()
    return latencies, burst_seconds


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(round(fraction * (len(ordered) - 1))), len(ordered) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs created one at a time (default 20)")
    parser.add_argument("--burst", type=int, default=100, help="jobs created back to back (default 100)")
    args = parser.parse_args()

    with TemporaryDirectory(prefix="gpuscale-bench-") as scratch:
        # Enough pod slots (110 per node) for the burst of both runs.
        nodes = max(2, (2 * (args.jobs + args.burst) * WORKERS) // 100 + 1)
        cluster_config = ClusterConfig(node_sets=[FakeNodeSet(count=nodes)], kubeconfig=Path(scratch) / "kubeconfig")
        with LocalCluster(cluster_config) as cluster:
            cluster.kubectl("apply", "--server-side", "-f", str(Path(__file__).resolve().parents[1] / "crds"))
            cluster.kubectl("wait", "--for=condition=Established", "crd/trainingjobs.training.gpuscale.io")
            config.load_kube_config(str(cluster.kubeconfig))
            core, custom = client.CoreV1Api(), client.CustomObjectsApi()
            for namespace in ("bench-baseline", "bench-operator"):
                cluster.kubectl("create", "namespace", namespace)
                while cluster.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode:
                    time.sleep(0.2)

            baseline = measure(lambda ns, name: create_children(core, ns, name), "bench-baseline", "b",
                               args.jobs, args.burst)
            operator = OperatorProcess(cluster.kubeconfig, Path(scratch) / "operator.log")
            operator.start()
            try:
                measured = measure(lambda ns, name: create_job(custom, ns, name), "bench-operator", "o",
                                   args.jobs, args.burst)
                rss = peak_rss_mib(operator.process.pid)
            finally:
                operator.stop()

    rows = [
        ("create -> 4 pods, median (s)", statistics.median(measured[0]), statistics.median(baseline[0])),
        ("create -> 4 pods, p95 (s)", percentile(measured[0], 0.95), percentile(baseline[0], 0.95)),
        (f"{args.burst} jobs x 4 pods up (s)", measured[1], baseline[1]),
    ]
    print(f"{'measure':<30} {'operator':>10} {'baseline':>10} {'ratio':>7}")
    for label, value, floor in rows:
        print(f"{label:<30} {value:>10.3f} {floor:>10.3f} {value / floor:>7.1f}")
    print(f"{'operator peak RSS (MiB)':<30} {rss:>10.1f}")


if __name__ == "__main__":
    main()
