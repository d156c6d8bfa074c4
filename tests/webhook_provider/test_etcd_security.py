"""The webhook against a real etcd that requires TLS client certificates and a user (ExternalDNS's ETCD_* variables)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from rig.binaries import binary
from rig.certs import CertificateAuthority
from rig.ports import free_port
from rig.process import ManagedProcess
from rig.region import WebhookProvider
from rig.webhook_client import WebhookClient

pytestmark = pytest.mark.etcd
PASSWORD = "s3cret-Pa55"  # noqa: S105 - a throwaway test credential


class SecureEtcd:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port, self.peer = free_port(), free_port()
        ca = CertificateAuthority.create("etcd-test-ca")
        self.ca = workdir / "ca.crt"
        self.ca.write_bytes(ca.cert_pem())
        # The serving certificate names only etcd.test: reaching 127.0.0.1 needs ETCD_TLS_SERVER_NAME.
        self.server_cert, self.server_key = ca.issue("etcd", workdir, "server", dns_names=("etcd.test",), server=True)
        self.client_cert, self.client_key = ca.issue("root", workdir, "client")
        self.url = f"https://127.0.0.1:{self.port}"
        self.process = ManagedProcess("etcd-tls", [
            binary("etcd"), "--name=tls", f"--data-dir={workdir / 'data'}",
            f"--listen-client-urls={self.url}", f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls=http://127.0.0.1:{self.peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{self.peer}",
            f"--initial-cluster=tls=http://127.0.0.1:{self.peer}",
            f"--cert-file={self.server_cert}", f"--key-file={self.server_key}", f"--trusted-ca-file={self.ca}",
            "--client-cert-auth", "--unsafe-no-fsync", "--log-level=warn"], workdir / "etcd.log")

    def etcdctl(self, *args: str) -> None:
        etcdctl = str(Path(binary("etcd")).with_name("etcdctl"))
        subprocess.run([etcdctl, f"--endpoints={self.url}", f"--cacert={self.ca}", f"--cert={self.client_cert}",
                        f"--key={self.client_key}", "--insecure-skip-tls-verify", *args],
                       check=True, capture_output=True, timeout=20)

    def start(self) -> SecureEtcd:
        self.process.start()
        self.process.wait_until(lambda: self.etcdctl("endpoint", "health") is None, 30, "healthy")
        self.etcdctl("user", "add", f"root:{PASSWORD}")
        self.etcdctl("auth", "enable")
        return self

    def env(self, password: str = PASSWORD) -> dict[str, str]:
        return {"ETCD_CA_FILE": str(self.ca), "ETCD_CERT_FILE": str(self.client_cert),
                "ETCD_KEY_FILE": str(self.client_key), "ETCD_TLS_SERVER_NAME": "etcd.test",
                "ETCD_USERNAME": "root", "ETCD_PASSWORD": password}


@pytest.fixture(scope="module")
def secure_etcd(tmp_path_factory) -> Iterator[SecureEtcd]:
    server = SecureEtcd(tmp_path_factory.mktemp("etcd-tls")).start()
    yield server
    server.process.stop()


def start_webhook(etcd: SecureEtcd, workdir: Path, env: dict[str, str],
                  name: str) -> tuple[ManagedProcess, WebhookClient]:
    """Negotiating, not necessarily ready: some tests give it credentials etcd refuses."""
    server = WebhookProvider([etcd.url], workdir, name=name, env=env).start(timeout=10, wait_for_etcd=False)
    return server.process, server.client


def test_tls_client_certificates_server_name_and_user_from_the_etcd_variables(secure_etcd, tmp_path):
    process, hook = start_webhook(secure_etcd, tmp_path, secure_etcd.env(), "webhook-tls")
    try:
        process.wait_until(lambda: hook.ready() == 200, 10, "ready")
        change = {"create": [{"dnsName": "tls.example.org", "recordType": "A", "targets": ["192.0.2.1"]}]}
        assert hook.apply(change).status_code == 204
        assert hook.endpoints()[("tls.example.org", "A")]["targets"] == ["192.0.2.1"]
    finally:
        process.stop()
    assert PASSWORD not in process.log_path.read_text()


def test_a_wrong_password_keeps_it_unready_and_the_password_out_of_the_log(secure_etcd, tmp_path):
    process, hook = start_webhook(secure_etcd, tmp_path, secure_etcd.env("wrong-Pa55word"), "webhook-badpw")
    try:
        assert hook.ready() == 503
        assert hook.records().status_code == 503
        assert requests.get(hook.health_url + "/healthz", timeout=5).status_code == 200
    finally:
        process.stop()
    assert "wrong-Pa55word" not in process.log_path.read_text()


def test_a_dead_endpoint_listed_first_costs_no_503_when_etcd_requires_a_user(secure_etcd, tmp_path):
    """With a user set the client authenticates as it is created, so a dead member fails before there is a
    client: the retry must still move on to the next endpoint."""
    dead = f"https://127.0.0.1:{free_port()}"
    server = WebhookProvider([dead, secure_etcd.url], tmp_path, name="webhook-failover",
                             env={**secure_etcd.env(), "ETCD_TIMEOUT": "1s"}).start(timeout=10, wait_for_etcd=False)
    try:
        server.process.wait_until(lambda: server.client.ready() == 200, 15, "ready through the live endpoint")
        change = {"create": [{"dnsName": "second.example.org", "recordType": "A", "targets": ["192.0.2.2"]}]}
        assert server.client.apply(change).status_code == 204
    finally:
        server.process.stop()
