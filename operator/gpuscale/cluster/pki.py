"""Certificates and keys for the local control plane, made with the openssl command."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    """Paths of the files that kube-apiserver and its clients need."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_pub: Path


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _issue(directory: Path, name: str, subject: str, extensions: str, ca: tuple[Path, Path]) -> None:
    ext_file = directory / f"{name}.ext"
    ext_file.write_text(extensions)
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=directory)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=directory)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-days", "30", "-sha256", "-extfile", ext_file.name, "-out", f"{name}.crt",
        cwd=directory,
    )


def create_pki(directory: Path) -> Pki:
    """Create a throw-away CA, the apiserver's serving pair, an admin client pair and SA keys."""
    directory.mkdir(parents=True, exist_ok=True)

    # 1. The cluster CA, valid for 30 days: the cluster lives as long as a test run.
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=directory)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=gpuscale-local-ca", "-days", "30",
        "-sha256", "-out", "ca.crt", cwd=directory,
    )
    ca = (directory / "ca.crt", directory / "ca.key")

    # 2. The apiserver's serving certificate, for the names clients in and out of the cluster use.
    alt_names = ",".join([
        "IP:127.0.0.1", "IP:10.96.0.1", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local",
    ])
    _issue(
        directory, "apiserver", "/CN=kube-apiserver",
        f"subjectAltName={alt_names}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
        ca,
    )

    # 3. The admin identity: group system:masters is bound to cluster-admin by the default RBAC roles.
    _issue(
        directory, "admin", "/O=system:masters/CN=gpuscale-admin",
        "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n", ca,
    )

    # 4. The key pair that signs and verifies service-account tokens.
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=directory)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)

    return Pki(
        ca_cert=ca[0], ca_key=ca[1],
        serving_cert=directory / "apiserver.crt", serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt", admin_key=directory / "admin.key",
        service_account_key=directory / "sa.key", service_account_pub=directory / "sa.pub",
    )
