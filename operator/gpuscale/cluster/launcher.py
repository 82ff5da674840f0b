"""Start and stop the local control plane: etcd, kube-apiserver, controller-manager, scheduler, kwok.

Used by the pytest fixtures (in-process, `LocalCluster`) and by `make cluster-up` / `make cluster-down`
(the `up`, `down` and `status` commands, which keep the cluster in a background supervisor).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gpuscale.cluster.pki import Pki, create_pki

REPO_ROOT = Path(__file__).resolve().parents[3]
STAGES_FILE = Path(__file__).with_name("kwok-stages.yaml")
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl")


@dataclass(frozen=True)
class FakeNodeSet:
    """A group of identical fake nodes that kwok manages."""

    count: int = 2
    gpus: int = 4
    gpu_product: str = "NVIDIA-A100-SXM4-80GB"
    cpu: str = "32"
    memory: str = "256Gi"
    name_prefix: str = "gpu-node"


@dataclass
class ClusterConfig:
    """Settings of the local cluster: the fake nodes to start and where to keep its state."""

    node_sets: list[FakeNodeSet] = field(default_factory=lambda: [FakeNodeSet()])
    kubeconfig: Path = field(
        default_factory=lambda: Path(os.environ.get("GPUSCALE_KUBECONFIG", REPO_ROOT / ".local-cluster" / "kubeconfig"))
    )
    state_dir: Path | None = None
    bin_path: str | None = None
    ready_timeout_seconds: float = 120.0


def find_binary_dirs() -> list[Path]:
    """Return the folders to search for the control-plane binaries, in order.

    GPUSCALE_BIN_PATH (colon-separated) comes first, then the cache folders that tools/build.sh fills.
    """
    dirs: list[Path] = []
    if os.environ.get("GPUSCALE_BIN_PATH"):
        dirs += [Path(p) for p in os.environ["GPUSCALE_BIN_PATH"].split(":") if p]
    build_script = REPO_ROOT / "tools" / "build.sh"
    if build_script.exists():
        result = subprocess.run([str(build_script), "--print-bin-dirs"], capture_output=True, text=True)
        if result.returncode == 0:
            dirs += [Path(p) for p in result.stdout.strip().split(":") if p]
    return dirs


def resolve_binaries(search: list[Path]) -> dict[str, Path]:
    """Map each required binary to its path, or raise naming the missing ones and the fix."""
    found: dict[str, Path] = {}
    for name in BINARIES:
        for directory in search:
            candidate = directory / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                found[name] = candidate
                break
    missing = [name for name in BINARIES if name not in found]
    if missing:
        searched = ", ".join(str(d) for d in search) or "(nothing)"
        raise FileNotFoundError(
            f"control-plane binaries not found: {', '.join(missing)} (searched {searched}); "
            "run `make tools` to build them, or set GPUSCALE_BIN_PATH to the folders that hold them"
        )
    return found


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this child when the process that started it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Component:
    """One running process of the control plane and its log file."""

    name: str
    process: subprocess.Popen
    log_path: Path


class LocalCluster:
    """A real kube-apiserver, etcd, controller-manager and scheduler, with kwok faking GPU nodes."""

    def __init__(self, config: ClusterConfig | None = None, log=print) -> None:
        self.config = config or ClusterConfig()
        self.log = log
        self.components: list[Component] = []
        self.state_dir: Path | None = None
        self.api_port: int | None = None
        self.pki: Pki | None = None
        self._owns_state_dir = False

    @property
    def kubeconfig(self) -> Path:
        return self.config.kubeconfig

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def start(self) -> None:
        """Start every component and return once the apiserver is ready and the nodes are Ready."""
        started = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.log(f"local control plane ready in {time.monotonic() - started:.1f} s at {self.server}")

    def _start(self) -> None:
        search = [Path(p) for p in self.config.bin_path.split(":")] if self.config.bin_path else find_binary_dirs()
        binaries = resolve_binaries(search)

        # 1. State folder, certificates and the admin kubeconfig.
        if self.config.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="gpuscale-cluster-"))
            self._owns_state_dir = True
        else:
            self.state_dir = self.config.state_dir
            self.state_dir.mkdir(parents=True, exist_ok=True)
        self.pki = create_pki(self.state_dir / "pki")
        self.api_port = free_port()
        self._write_kubeconfig()

        # 2. etcd, then the apiserver on top of it.
        etcd_client_port, etcd_peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_client_port}"
        self._spawn("etcd", [
            str(binaries["etcd"]),
            "--name=default",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{etcd_peer_port}",
            # Test data is thrown away with the cluster, so durability buys nothing here.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ])
        self._wait_for("etcd", lambda: self._http_ok(f"{etcd_url}/health"))
        self._spawn("kube-apiserver", self._apiserver_args(binaries["kube-apiserver"], etcd_url))
        self._wait_for("kube-apiserver", lambda: self._http_ok(f"{self.server}/readyz", tls=True))

        # 3. Controllers: garbage collector, namespace lifecycle, service-account tokens, and the scheduler.
        self._spawn("kube-controller-manager", [
            *self._client_component_args(binaries["kube-controller-manager"]),
            "--controllers=*",
            f"--service-account-private-key-file={self.pki.service_account_key}",
            f"--root-ca-file={self.pki.ca_cert}",
            "--use-service-account-credentials=true",
            "--allocate-node-cidrs=false",
        ])
        self._spawn("kube-scheduler", self._client_component_args(binaries["kube-scheduler"]))

        # 4. kwok, then the fake nodes it manages.
        kwok_config = self.state_dir / "kwok.yaml"
        kwok_config.write_text(STAGES_FILE.read_text())
        self._spawn("kwok", [
            str(binaries["kwok"]),
            f"--kubeconfig={self.kubeconfig}",
            f"--config={kwok_config}",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
            "--cidr=10.244.0.1/16",
            "--node-ip=10.200.0.1",
            "--node-lease-duration-seconds=40",
        ])
        self.kubectl_path = binaries["kubectl"]
        self._create_nodes()
        self._wait_for("Ready fake nodes", self._nodes_ready)
        self._wait_for("the default service account", self._default_service_account_exists)

    def _client_component_args(self, binary: Path) -> list[str]:
        """Flags shared by the controller-manager and the scheduler: the admin identity, one instance."""
        return [
            str(binary),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--leader-elect=false",
        ]

    def _apiserver_args(self, binary: Path, etcd_url: str) -> list[str]:
        assert self.pki is not None and self.state_dir is not None
        return [
            str(binary),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--cert-dir={self.state_dir / 'apiserver-certs'}",
            f"--tls-cert-file={self.pki.serving_cert}",
            f"--tls-private-key-file={self.pki.serving_key}",
            f"--client-ca-file={self.pki.ca_cert}",
            f"--service-account-key-file={self.pki.service_account_pub}",
            f"--service-account-signing-key-file={self.pki.service_account_key}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,PodSecurity,"
            "ResourceQuota,DefaultTolerationSeconds,Priority,DefaultStorageClass,RuntimeClass,"
            "StorageObjectInUseProtection,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,"
            "ValidatingAdmissionWebhook",
            "--allow-privileged=false",
            # No kube-proxy or real endpoints run here, so the apiserver keeps no Endpoints for itself.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]

    def _write_kubeconfig(self) -> None:
        assert self.pki is not None
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "gpuscale-local", "cluster": {
                "server": self.server, "certificate-authority": str(self.pki.ca_cert)}}],
            "users": [{"name": "gpuscale-admin", "user": {
                "client-certificate": str(self.pki.admin_cert), "client-key": str(self.pki.admin_key)}}],
            "contexts": [{"name": "gpuscale-local", "context": {
                "cluster": "gpuscale-local", "user": "gpuscale-admin", "namespace": "default"}}],
            "current-context": "gpuscale-local",
        }
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))

    def _spawn(self, name: str, args: list[str]) -> None:
        assert self.state_dir is not None
        log_path = self.state_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                args, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent, cwd=self.state_dir,
            )
        self.components.append(Component(name, process, log_path))

    def _check_alive(self) -> None:
        for component in self.components:
            code = component.process.poll()
            if code is not None:
                tail = component.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{component.name} exited with status {code}; its log ends with:\n{tail}")

    def _wait_for(self, what: str, probe) -> None:
        deadline = time.monotonic() + self.config.ready_timeout_seconds
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(Exception):
                if probe():
                    return
            time.sleep(0.2)
        raise TimeoutError(
            f"timed out after {self.config.ready_timeout_seconds:.0f} s waiting for {what}; "
            f"component logs are in {self.state_dir / 'logs'}"
        )

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    def _http_ok(self, url: str, tls: bool = False) -> bool:
        context = self._ssl_context() if tls else None
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def kubectl(self, *args: str, input_text: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run the pinned kubectl against this cluster."""
        return subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text, capture_output=True, text=True, check=check, timeout=60,
        )

    def _create_nodes(self) -> None:
        nodes = []
        for node_set in self.config.node_sets:
            for index in range(node_set.count):
                name = f"{node_set.name_prefix}-{index}"
                resources = {"cpu": node_set.cpu, "memory": node_set.memory, "pods": "110"}
                if node_set.gpus:
                    resources["nvidia.com/gpu"] = str(node_set.gpus)
                labels = {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                }
                if node_set.gpus:
                    labels["nvidia.com/gpu.product"] = node_set.gpu_product
                    labels["nvidia.com/gpu.count"] = str(node_set.gpus)
                nodes.append({
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": name, "labels": labels, "annotations": {FAKE_NODE_ANNOTATION: "fake"}},
                    "status": {"capacity": resources, "allocatable": resources},
                })
        document = {"apiVersion": "v1", "kind": "List", "items": nodes}
        self.kubectl("create", "-f", "-", input_text=json.dumps(document))

    def _nodes_ready(self) -> bool:
        listing = json.loads(self.kubectl("get", "nodes", "-o", "json").stdout)
        expected = sum(node_set.count for node_set in self.config.node_sets)
        ready = [
            node for node in listing["items"]
            if any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
        ]
        return len(ready) >= expected

    def _default_service_account_exists(self) -> bool:
        return self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0

    def stop(self) -> None:
        """Stop every component (last started, first stopped) and remove the temporary state."""
        for component in reversed(self.components):
            if component.process.poll() is None:
                component.process.terminate()
        for component in reversed(self.components):
            try:
                component.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                component.process.kill()
                component.process.wait(timeout=15)
        self.components.clear()
        if self._owns_state_dir and self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


# --- The command line: `up` keeps a supervisor running in the background, `down` stops it. ---

def _default_state_dir() -> Path:
    return REPO_ROOT / ".local-cluster" / "state"


def _pid_file(state_dir: Path) -> Path:
    return state_dir / "supervisor.pid"


def _read_pid(state_dir: Path) -> int | None:
    try:
        pid = int(_pid_file(state_dir).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def _parse_node_sets(spec: str) -> list[FakeNodeSet]:
    """Parse `COUNTxGPUS[:PRODUCT],...`, for example `2x4` or `2x4:NVIDIA-H100,1x0`."""
    node_sets = []
    for index, part in enumerate(p for p in spec.split(",") if p):
        size, _, product = part.partition(":")
        try:
            count, gpus = (int(x) for x in size.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid node set {part!r}: expected COUNTxGPUS[:PRODUCT], for example 2x4 or 2x4:NVIDIA-H100"
            ) from None
        if count < 1 or gpus < 0:
            raise argparse.ArgumentTypeError(f"invalid node set {part!r}: COUNT must be >= 1 and GPUS >= 0")
        node_sets.append(FakeNodeSet(
            count=count, gpus=gpus, gpu_product=product or FakeNodeSet.gpu_product, name_prefix=f"gpu-node-{index}",
        ))
    return node_sets


def _serve(args: argparse.Namespace) -> int:
    """Run the cluster in the foreground until SIGTERM or SIGINT."""
    state_dir = Path(args.state_dir)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    config = ClusterConfig(node_sets=args.nodes, state_dir=state_dir, kubeconfig=Path(args.kubeconfig))
    cluster = LocalCluster(config, log=lambda line: print(line, flush=True))
    stop_requested = False

    def request_stop(signum, frame) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    _pid_file(state_dir).parent.mkdir(parents=True, exist_ok=True)
    _pid_file(state_dir).write_text(str(os.getpid()))
    try:
        cluster.start()
        (state_dir / "ready").write_text(cluster.server)
        while not stop_requested:
            cluster._check_alive()
            time.sleep(1)
    finally:
        cluster.stop()
        _pid_file(state_dir).unlink(missing_ok=True)
    return 0


def _up(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    if _read_pid(state_dir):
        print(f"the local cluster is already running; export KUBECONFIG={args.kubeconfig}")
        return 0
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = state_dir.parent / "supervisor.log"
    command = [sys.executable, "-m", "gpuscale.cluster.launcher", "serve",
               "--state-dir", str(state_dir), "--kubeconfig", str(args.kubeconfig), "--nodes", args.nodes_text]
    started = time.monotonic()
    with open(log_path, "wb") as log_file:
        supervisor = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
    while time.monotonic() - started < 180:
        if (state_dir / "ready").exists():
            print(f"local control plane up in {time.monotonic() - started:.1f} s; logs in {state_dir / 'logs'}")
            print(f"export KUBECONFIG={Path(args.kubeconfig).resolve()}")
            return 0
        if supervisor.poll() is not None:
            print(f"error: the local cluster failed to start; see {log_path}:", file=sys.stderr)
            print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
            return 1
        time.sleep(0.5)
    supervisor.terminate()
    print(f"error: the local cluster was not ready after 180 s; see {log_path}", file=sys.stderr)
    return 1


def _down(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    pid = _read_pid(state_dir)
    if pid is None:
        print("the local cluster is not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _read_pid(state_dir):
        time.sleep(0.3)
    if _read_pid(state_dir):
        os.kill(pid, signal.SIGKILL)
    print("local control plane stopped")
    return 0


def _status(args: argparse.Namespace) -> int:
    pid = _read_pid(Path(args.state_dir))
    print(f"running (supervisor pid {pid}); export KUBECONFIG={args.kubeconfig}" if pid else "not running")
    return 0 if pid else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpuscale-cluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "serve"])
    parser.add_argument("--state-dir", default=str(_default_state_dir()),
                        help="folder for etcd data, certificates and component logs")
    parser.add_argument("--kubeconfig", default=str(ClusterConfig().kubeconfig),
                        help="where to write the admin kubeconfig (default: $GPUSCALE_KUBECONFIG or .local-cluster/kubeconfig)")
    parser.add_argument("--nodes", dest="nodes_text", default="2x4",
                        help="fake nodes as COUNTxGPUS[:PRODUCT],... (default 2x4: 2 nodes with 4 GPUs each)")
    args = parser.parse_args(argv)
    try:
        args.nodes = _parse_node_sets(args.nodes_text)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    handlers = {"up": _up, "down": _down, "status": _status, "serve": _serve}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
