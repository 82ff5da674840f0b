"""Fixtures for e2e tests: one local control plane per test session, one namespace per test.

With GPUSCALE_E2E_KUBECONFIG set, the tests run against that cluster instead (tools/kind-e2e.sh sets
it for a kind cluster) and start no control plane. GPUSCALE_E2E_OPERATOR=deployment then drives the
operator Deployment of manifests/operator instead of a local `kopf run` process.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpuscale.cluster.launcher import ClusterConfig, LocalCluster, find_binary_dirs
from tests.e2e.kube import Kubectl, wait_until
from tests.e2e.operator_process import OperatorProcess, PodRunnerProcess

EXTERNAL_KUBECONFIG_ENV = "GPUSCALE_E2E_KUBECONFIG"
OPERATOR_MODE_ENV = "GPUSCALE_E2E_OPERATOR"


@dataclass(frozen=True)
class ExternalCluster:
    """A cluster the tests did not start (for example kind): only where to reach it."""

    kubeconfig: Path
    kubectl_path: Path


def _find_kubectl() -> Path:
    for directory in find_binary_dirs():
        if (directory / "kubectl").is_file():
            return directory / "kubectl"
    found = shutil.which("kubectl")
    if found is None:
        raise FileNotFoundError("kubectl not found in the tools cache or on PATH; run `make tools` or install kubectl")
    return Path(found)


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster | ExternalCluster]:
    """Start etcd, kube-apiserver, controller-manager, scheduler and kwok once for the session.

    With GPUSCALE_E2E_KUBECONFIG set, yield that cluster instead and start nothing.
    """
    external = os.environ.get(EXTERNAL_KUBECONFIG_ENV)
    if external:
        kubeconfig = Path(external)
        if not kubeconfig.is_file():
            raise FileNotFoundError(f"{EXTERNAL_KUBECONFIG_ENV}={external} is not a file; point it at a kubeconfig")
        yield ExternalCluster(kubeconfig=kubeconfig, kubectl_path=_find_kubectl())
        return
    state = tmp_path_factory.mktemp("cluster")
    config = ClusterConfig(state_dir=state / "state", kubeconfig=state / "kubeconfig")
    with LocalCluster(config) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kubectl(local_cluster: LocalCluster) -> Kubectl:
    return Kubectl(local_cluster.kubectl_path, local_cluster.kubeconfig)


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """Create a namespace for one test, named after it, and delete it afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:5]}"
    kubectl.run("create", "namespace", name)
    # The ServiceAccount admission plugin rejects pods until the namespace's default account exists.
    wait_until(lambda: kubectl.exists("serviceaccount", "default", name), timeout=30,
               what=f"the default service account in namespace {name}")
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def crds_installed(kubectl: Kubectl) -> None:
    """Apply the CRDs from crds/ and wait until the API server serves them."""
    kubectl.run("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    for crd in ("trainingjobs.training.gpuscale.io", "costpolicies.training.gpuscale.io"):
        kubectl.run("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")


class DeployedOperator:
    """The operator Deployment of manifests/operator, started and stopped by scaling it.

    It offers OperatorProcess's methods, so the same tests drive an operator running from its image.
    """

    def __init__(self, kubectl: Kubectl, namespace: str = "gpuscale-system", name: str = "gpuscale-operator") -> None:
        self.kubectl = kubectl
        self.namespace = namespace
        self.name = name

    def start(self) -> None:
        self.kubectl.run("scale", f"deployment/{self.name}", "-n", self.namespace, "--replicas=1")
        self.kubectl.run("rollout", "status", f"deployment/{self.name}", "-n", self.namespace, "--timeout=120s")
        wait_until(lambda: "Initial authentication has finished" in self.log_tail(100_000), timeout=60,
                   what=f"the operator Deployment {self.namespace}/{self.name} to start")

    def stop(self) -> None:
        self.kubectl.run("scale", f"deployment/{self.name}", "-n", self.namespace, "--replicas=0")
        selector = "app.kubernetes.io/name=gpuscale-operator"
        wait_until(lambda: not self.kubectl.get("pods", namespace=self.namespace, selector=selector)["items"],
                   timeout=90, what="the operator pods to stop")

    def alive(self) -> bool:
        status = self.kubectl.get("deployment", self.name, self.namespace).get("status") or {}
        return status.get("availableReplicas", 0) >= 1

    def log_tail(self, characters: int = 3000) -> str:
        result = self.kubectl.run("logs", f"deployment/{self.name}", "-n", self.namespace, check=False)
        return result.stdout[-characters:]


@pytest.fixture(scope="session")
def operator(local_cluster: LocalCluster | ExternalCluster, kubectl: Kubectl, crds_installed: None,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess | DeployedOperator]:
    """The operator, running for the whole session; tests may restart it."""
    if os.environ.get(OPERATOR_MODE_ENV) == "deployment":
        process: OperatorProcess | DeployedOperator = DeployedOperator(kubectl)
    else:
        process = OperatorProcess(local_cluster.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    process.start()
    yield process
    process.stop()


@pytest.fixture
def pod_runner(local_cluster: LocalCluster | ExternalCluster, namespace: str,
               tmp_path: Path) -> Iterator[PodRunnerProcess]:
    """A dev pod runner for this test's namespace only, so it never adopts another test's pods."""
    runner = PodRunnerProcess(local_cluster.kubeconfig, namespace, tmp_path / "pod-runner")
    runner.start()
    yield runner
    runner.stop()
