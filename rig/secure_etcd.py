"""Real etcd as a security-minded operator runs it: TLS only, client certificates required, authentication on, and
each client an etcd user (its certificate's common name) whose role covers only the key prefixes it needs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from rig.binaries import binary
from rig.certs import CertificateAuthority
from rig.ports import free_port
from rig.process import ManagedProcess

ETCD_CLIENT_SECRET = "fleetdns-etcd-client"  # region.etcd.tls.clientSecret's default
ROOT_PASSWORD = "rig-root-Pa55"  # noqa: S105 - a throwaway credential; root is only used by the rig itself


@dataclass(frozen=True)
class EtcdClientTLS:
    """One client's files: the CA that signed etcd's serving certificate, and its own certificate and key."""

    ca: Path
    cert: Path
    key: Path

    def secret(self) -> dict[str, Path]:
        """As a kubernetes.io/tls Secret with ca.crt holds them (the chart's region.etcd.tls.clientSecret)."""
        return {"ca.crt": self.ca, "tls.crt": self.cert, "tls.key": self.key}


class SecureEtcd:
    """One member on loopback serving https with a certificate for 127.0.0.1; ``root`` is the rig's own identity."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port, self.peer = free_port(), free_port()
        self.authority = CertificateAuthority.create("rig-etcd-ca")
        ca = workdir / "ca.crt"
        ca.write_bytes(self.authority.cert_pem())
        cert, key = self.authority.issue("etcd", workdir, "server", ips=("127.0.0.1",), server=True)
        self.url = f"https://127.0.0.1:{self.port}"
        self.root = self.client("root")
        self.process = ManagedProcess("etcd-secure", [
            binary("etcd"), "--name=secure", f"--data-dir={workdir / 'data'}",
            f"--listen-client-urls={self.url}", f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls=http://127.0.0.1:{self.peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{self.peer}",
            f"--initial-cluster=secure=http://127.0.0.1:{self.peer}",
            f"--cert-file={cert}", f"--key-file={key}", f"--trusted-ca-file={ca}", "--client-cert-auth",
            "--unsafe-no-fsync", "--log-level=warn"], workdir / "etcd.log")

    @property
    def endpoints(self) -> list[str]:
        return [self.url]

    def client(self, user: str) -> EtcdClientTLS:
        """Files for a client whose certificate names ``user`` (etcd's user, with authentication on)."""
        cert, key = self.authority.issue(user, self.workdir, f"client-{user}")
        return EtcdClientTLS(self.workdir / "ca.crt", cert, key)

    def etcdctl(self, *args: str, identity: EtcdClientTLS | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """etcdctl as ``identity`` (default: root)."""
        who = identity or self.root
        etcdctl = str(Path(binary("etcd")).with_name("etcdctl"))
        return subprocess.run([etcdctl, f"--endpoints={self.url}", f"--cacert={who.ca}", f"--cert={who.cert}",
                               f"--key={who.key}", *args], check=check, capture_output=True, text=True, timeout=20)

    def start(self) -> SecureEtcd:
        self.process.start()
        self.process.wait_until(lambda: self.etcdctl("endpoint", "health", check=False).returncode == 0, 30,
                                "healthy")
        self.etcdctl("user", "add", f"root:{ROOT_PASSWORD}")
        self.etcdctl("auth", "enable")
        return self

    def grant(self, user: str, prefixes: tuple[str, ...], permission: str = "readwrite") -> EtcdClientTLS:
        """A user whose one role reads (and writes) only under ``prefixes``; its client files."""
        role = f"{user}-role"
        self.etcdctl("role", "add", role)
        for prefix in prefixes:
            self.etcdctl("role", "grant-permission", role, permission, prefix, "--prefix=true")
        self.etcdctl("user", "add", user, "--no-password")
        self.etcdctl("user", "grant-role", user, role)
        return self.client(user)

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> SecureEtcd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
