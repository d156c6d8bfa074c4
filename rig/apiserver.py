"""Real kube-apiserver on loopback with an admin identity and a kubeconfig file for it."""

from __future__ import annotations

import base64
import secrets
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import requests
import yaml

from rig.audit import AuditedRequest, audit_args, read_audit_log
from rig.binaries import binary
from rig.certs import CertificateAuthority, write_service_account_keys
from rig.etcd import EtcdServer
from rig.ports import free_port
from rig.process import ManagedProcess

START_TIMEOUT = 90.0
AdminAuth = Literal["token", "client-cert"]


class KubeAPIServer:
    """One kube-apiserver; with no ``etcd_url`` it brings its own etcd (isolated and cheap)."""

    def __init__(self, name: str = "host", workdir: Path | None = None, etcd_url: str | None = None,
                 admin_auth: AdminAuth = "token", host: str = "127.0.0.1", extra_args: Sequence[str] = (),
                 audit: bool = False) -> None:
        """``audit``: log every request a ServiceAccount makes (``audited_requests``; rig/audit.py)."""
        self.name = name
        self.audit = audit
        self.extra_args = tuple(extra_args)  # e.g. rig/controllers.py's APISERVER_ARGS
        self.host = host
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"fleetdns-kube-{name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.own_etcd = EtcdServer(self.workdir / "etcd") if etcd_url is None else None
        self.etcd_url = etcd_url
        self.admin_auth = admin_auth
        self.port = free_port(host)
        self.kubeconfig = self.workdir / "kubeconfig"
        self.process: ManagedProcess | None = None
        self._ca = CertificateAuthority.create(f"fleetdns-rig-{name}-ca")
        self._ca_path = self.workdir / "ca.crt"
        self._token = secrets.token_hex(16)
        self._prepared = False

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self, wait: bool = True) -> KubeAPIServer:
        if self.own_etcd is not None and not self.own_etcd.members[0].process:
            self.own_etcd.start()
            self.etcd_url = self.own_etcd.url
        if not self._prepared:
            self._prepare_files()
        self.process = ManagedProcess(f"kube-apiserver {self.name}", self._argv(),
                                      self.workdir / "kube-apiserver.log").start()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        assert self.process is not None
        self.process.wait_until(self._ready, timeout, "ready (/readyz)")

    def restart(self) -> None:
        """Start again after ``stop_apiserver``, same port, same data."""
        self.start()

    def restart_with_empty_etcd(self) -> None:
        """Stop the API server, replace its own etcd by an empty one (a restore or a wipe) and start it
        again on the same port with the same credentials: resourceVersions its clients hold now lie
        ahead of (or mean something else on) the server."""
        if self.own_etcd is None:
            raise ValueError(f"API server {self.name} shares an etcd; only one with its own etcd can be wiped")
        self.stop_apiserver()
        self.own_etcd.restart_empty()
        self.start()

    # SIGTERM, then SIGKILL after this long. Alone a server exits in under 2 s; with a member's controllers connected
    # it can hang in its shutdown (rig/README.md), and a hang that accepts connections and never answers looks like
    # a hung member to the aggregator, whose backoff then outlasts the outage under test.
    STOP_GRACE_SECONDS = 3.0

    def stop_apiserver(self) -> None:
        """Stop only the API server; its etcd (and so its data) stays."""
        if self.process is not None:
            self.process.stop(timeout=self.STOP_GRACE_SECONDS)

    def stop(self) -> None:
        self.stop_apiserver()
        if self.own_etcd is not None:
            self.own_etcd.stop()

    def __enter__(self) -> KubeAPIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ready(self) -> bool:
        response = requests.get(f"{self.url}/readyz", headers=self._auth_headers(), verify=str(self._ca_path),
                                cert=self._client_cert(), timeout=2)
        return response.status_code == 200

    @property
    def admin_token(self) -> str:
        """The rig's admin token (``system:masters``): a secret the product must never show (tests search for it)."""
        return self._token

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self.admin_auth == "token" else {}

    def _client_cert(self) -> tuple[str, str] | None:
        if self.admin_auth != "client-cert":
            return None
        return str(self.workdir / "admin.crt"), str(self.workdir / "admin.key")

    def _prepare_files(self) -> None:
        self._ca_path.write_bytes(self._ca.cert_pem())
        self._ca.issue("kube-apiserver", self.workdir, "serving", ips=(self.host,), dns_names=("localhost",),
                       server=True)
        self._ca.issue("rig-admin", self.workdir, "admin", organization="system:masters")
        (self.workdir / "tokens.csv").write_text(f'{self._token},rig-admin,rig-admin,"system:masters"\n')
        write_service_account_keys(self.workdir)
        self._write_kubeconfig()
        self._prepared = True

    def _argv(self) -> list[str]:
        w = self.workdir
        return [
            binary("kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            f"--etcd-prefix=/registry-{self.name}",
            f"--cert-dir={w / 'certs'}",
            f"--tls-cert-file={w / 'serving.crt'}",
            f"--tls-private-key-file={w / 'serving.key'}",
            f"--client-ca-file={self._ca_path}",
            f"--token-auth-file={w / 'tokens.csv'}",
            f"--secure-port={self.port}",
            f"--bind-address={self.host}",
            f"--advertise-address={self.host}",
            "--service-cluster-ip-range=10.0.0.0/16",  # room for thousands of Services (benchmarks)
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--authorization-mode=RBAC",
            f"--service-account-issuer=https://{self.host}:{self.port}/",
            f"--service-account-key-file={w / 'sa.pub'}",
            f"--service-account-signing-key-file={w / 'sa.key'}",
            "--enable-priority-and-fairness=false",  # fewer background controllers on 2 cores
            "--v=1",
            *(audit_args(w) if self.audit else ()),
            *self.extra_args,
        ]

    def _write_kubeconfig(self) -> None:
        user: dict[str, str] = (
            {"token": self._token} if self.admin_auth == "token"
            else {"client-certificate": str(self.workdir / "admin.crt"), "client-key": str(self.workdir / "admin.key")}
        )
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": {"server": self.url,
                                                           "certificate-authority": str(self._ca_path)}}],
            "users": [{"name": f"{self.name}-admin", "user": user}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": f"{self.name}-admin"}}],
            "current-context": self.name,
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))

    def audited_requests(self) -> list[AuditedRequest]:
        """Every request ServiceAccounts made of this server so far (started with ``audit``)."""
        if not self.audit:
            raise ValueError(f"API server {self.name} was started without audit=True")
        return read_audit_log(self.workdir / "audit.log")

    def service_account_kubeconfig(self, namespace: str, account: str, path: Path, hours: int = 24) -> Path:
        """A self-contained kubeconfig for ServiceAccount ``namespace/account`` (a bound token from the TokenRequest
        API, as the kubelet mounts into a pod running under it, or ``kubectl create token`` makes), written to
        ``path``."""
        from kubernetes import client

        request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=hours * 3600))
        status = client.CoreV1Api(self.api_client()).create_namespaced_service_account_token(
            account, namespace, request).status
        assert status is not None, f"no token for {namespace}/{account}"
        token = status.token
        config = yaml.safe_load(self.embedded_kubeconfig())
        config["users"] = [{"name": account, "user": {"token": token}}]
        config["contexts"] = [{"name": account, "context": {"cluster": self.name, "user": account}}]
        config["current-context"] = account
        path.write_text(yaml.safe_dump(config))
        return path

    def kubeconfig_text(self) -> str:
        return self.kubeconfig.read_text()

    def client_cert_kubeconfig(self, user: str, directory: Path, *, organization: str | None = None,
                               expired: bool = False) -> str:
        """A self-contained kubeconfig authenticating as ``user`` by a client certificate this server's CA signs
        (``expired``: one that lapsed yesterday)."""
        directory.mkdir(parents=True, exist_ok=True)
        crt, key = self._ca.issue(user, directory, user, organization=organization, expired=expired)
        config = yaml.safe_load(self.embedded_kubeconfig())
        config["users"][0]["user"] = {"client-certificate-data": base64.b64encode(crt.read_bytes()).decode(),
                                      "client-key-data": base64.b64encode(key.read_bytes()).decode()}
        return yaml.safe_dump(config)

    def embedded_kubeconfig(self) -> str:
        """Self-contained kubeconfig (CA and credentials inline), as stored in a member-cluster Secret."""
        import base64

        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = yaml.safe_load(self.kubeconfig_text())
        config["clusters"][0]["cluster"] = {"server": self.url, "certificate-authority-data": b64(self._ca_path)}
        if self.admin_auth == "client-cert":
            config["users"][0]["user"] = {"client-certificate-data": b64(self.workdir / "admin.crt"),
                                          "client-key-data": b64(self.workdir / "admin.key")}
        return yaml.safe_dump(config)

    def api_client(self):  # noqa: ANN201 - kubernetes.client.ApiClient, imported lazily
        """A kubernetes ApiClient for this server's admin identity."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))


def wait_all_ready(servers: list[KubeAPIServer], timeout: float = START_TIMEOUT) -> None:
    """Wait for servers started with ``wait=False`` (their start-ups overlap)."""
    deadline = time.monotonic() + timeout
    for server in servers:
        server.wait_ready(max(1.0, deadline - time.monotonic()))
