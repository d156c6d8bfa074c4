"""Real etcd as a security-minded operator runs it: TLS only, client certificates required, authentication on, and
each client an etcd user whose role covers only the key prefixes it needs: named by its certificate's common name, or
(``grant(password=...)``) by a user name and password its process reads from a Secret."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.binaries import binary
from rig.certs import CertificateAuthority
from rig.ports import free_port
from rig.process import ManagedProcess

ETCD_CLIENT_SECRET = "fleetdns-etcd-client"  # region.etcd.tls.clientSecret's default
ETCD_USER_SECRET = "fleetdns-etcd-user"  # the rig's Secret with a region's etcd password (key "password")
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


@dataclass(frozen=True)
class EtcdPasswordUser:
    """An etcd user that authenticates with a password, kept in the Secret ``ETCD_USER_SECRET``."""

    name: str
    password: str

    def extra_env(self) -> list[dict[str, Any]]:
        """The chart's ``extraEnv`` for a process that reads etcd as this user (the webhook, the zone-file sidecar):
        the name as a value, the password from the Secret."""
        return [{"name": "ETCD_USERNAME", "value": self.name},
                {"name": "ETCD_PASSWORD", "valueFrom": {"secretKeyRef": {"name": ETCD_USER_SECRET, "key": "password"}}}]

    def secret(self) -> dict[str, str]:
        return {"password": self.password}


class SecureEtcd:
    """One member on loopback serving https; ``root`` is the rig's own identity (certificate and password).
    ``server_name``: the serving certificate names only that DNS name, not 127.0.0.1, so a client must set it
    (ETCD_TLS_SERVER_NAME) to verify the server; default: the certificate names 127.0.0.1."""

    def __init__(self, workdir: Path, server_name: str = "") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.server_name = server_name
        self.port, self.peer = free_port(), free_port()
        self.authority = CertificateAuthority.create("rig-etcd-ca")
        ca = workdir / "ca.crt"
        ca.write_bytes(self.authority.cert_pem())
        cert, key = self.authority.issue("etcd", workdir, "server", server=True,
                                         dns_names=(server_name,) if server_name else (),
                                         ips=() if server_name else ("127.0.0.1",))
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

    def client(self, common_name: str) -> EtcdClientTLS:
        """Files for a client whose certificate names ``common_name`` (with authentication on: that etcd user)."""
        cert, key = self.authority.issue(common_name, self.workdir, f"client-{common_name}")
        return EtcdClientTLS(self.workdir / "ca.crt", cert, key)

    def client_env(self, identity: EtcdClientTLS, user: str = "", password: str = "") -> dict[str, str]:
        """The ``ETCD_*`` variables of a FleetDNS process with ``identity``'s files (and ``user`` and ``password``
        when given), as ExternalDNS's coredns provider reads them."""
        env = {"ETCD_CA_FILE": str(identity.ca), "ETCD_CERT_FILE": str(identity.cert),
               "ETCD_KEY_FILE": str(identity.key)}
        if self.server_name:
            env["ETCD_TLS_SERVER_NAME"] = self.server_name
        if user:
            env |= {"ETCD_USERNAME": user, "ETCD_PASSWORD": password}
        return env

    def etcdctl(self, *args: str, identity: EtcdClientTLS | None = None, user: str = "",
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """etcdctl as ``identity`` (default: root), and as ``user`` ("name:password") when given."""
        who = identity or self.root
        etcdctl = str(Path(binary("etcd")).with_name("etcdctl"))
        # etcdctl cannot be told a server name: with one, it skips verifying the server (its certificate still
        # authenticates it to etcd)
        verify = ["--insecure-skip-tls-verify"] if self.server_name else []
        return subprocess.run([etcdctl, f"--endpoints={self.url}", f"--cacert={who.ca}", f"--cert={who.cert}",
                               f"--key={who.key}", *verify, *([f"--user={user}"] if user else []), *args],
                              check=check, capture_output=True, text=True, timeout=20)

    def start(self) -> SecureEtcd:
        self.process.start()
        self.process.wait_until(lambda: self.etcdctl("endpoint", "health", check=False).returncode == 0, 30,
                                "healthy")
        self.etcdctl("user", "add", f"root:{ROOT_PASSWORD}")
        self.etcdctl("auth", "enable")
        return self

    def grant(self, user: str, prefixes: tuple[str, ...], permission: str = "readwrite",
              password: str = "") -> EtcdClientTLS:
        """A user whose one role reads (and writes) only under ``prefixes``, and the client files to use with it:
        without ``password``, a certificate naming the user (its only credential); with one, a certificate naming
        no etcd user (``<user>-tls``), so only the password makes the client that user."""
        role = f"{user}-role"
        self.etcdctl("role", "add", role)
        for prefix in prefixes:
            self.etcdctl("role", "grant-permission", role, permission, prefix, "--prefix=true")
        self.etcdctl("user", "add", f"{user}:{password}" if password else user,
                     *([] if password else ["--no-password"]))
        self.etcdctl("user", "grant-role", user, role)
        return self.client(f"{user}-tls" if password else user)

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> SecureEtcd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
