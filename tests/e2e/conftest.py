"""Fixtures for e2e tests: one local control plane per test session, one namespace per test."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuscale.cluster.launcher import ClusterConfig, LocalCluster
from tests.e2e.kube import Kubectl, wait_until
from tests.e2e.operator_process import OperatorProcess


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Start etcd, kube-apiserver, controller-manager, scheduler and kwok once for the session."""
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


@pytest.fixture(scope="session")
def operator(local_cluster: LocalCluster, crds_installed: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The operator, running for the whole session; tests may restart it."""
    process = OperatorProcess(local_cluster.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    process.start()
    yield process
    process.stop()
