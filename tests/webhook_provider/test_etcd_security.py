"""The webhook against a real etcd that requires TLS client certificates and a user (ExternalDNS's ETCD_* variables)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from kubernetes import client

from fleetdns.apipaths import DNS_ENDPOINTS, DNS_VIEWS
from fleetdns.dnsview import VIEWS_KEY_PREFIX
from rig.apiserver import KubeAPIServer
from rig.binaries import binary
from rig.certs import CertificateAuthority
from rig.coredns import dns_answers, regional_coredns
from rig.externaldns import ExternalDNS
from rig.ports import free_port
from rig.process import ManagedProcess, stop_together
from rig.region import WebhookProvider
from rig.secure_etcd import ROOT_PASSWORD
from rig.secure_etcd import SecureEtcd as RoleEtcd
from rig.waiting import wait_for
from rig.webhook_client import WebhookClient
from rig.workloads import apply_crds

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


# --- a region as the chart configures it, against an etcd whose user may touch only the region's prefixes -------

ZONE = "gslb.example.com"
# The key spaces the region reads and writes, each a prefix without its final slash, as docs/install.md tells the
# operator to grant them: region.etcd.prefix's (the records: /skydns/ and each view's /skydns-<view>/), and the
# host's DNSViews the webhook copies for the sidecar (/fleetdns/views/)
REGION_PREFIXES = ("/skydns", VIEWS_KEY_PREFIX.rstrip("/"))
OUTSIDE = {"/other-app/config": "left alone"}  # the region's user may not even read it
NOT_OURS = {"/skydns2/com/example/x/1": '{"host":"192.0.2.99"}'}  # readable under the role, never touched


@pytest.mark.apiserver
@pytest.mark.externaldns
@pytest.mark.coredns
def test_a_region_publishes_and_serves_through_an_etcd_user_limited_to_its_prefixes(tmp_path):
    """etcd with TLS, client certificates and authentication; the region's identity (the chart's
    region.etcd.tls.clientSecret, whose common name is the etcd user) has one role: read and write under the region's
    prefixes. ExternalDNS's records and the host's DNSViews reach CoreDNS; the user cannot read or write anything
    else, and keys outside the prefixes stay as they were."""
    with RoleEtcd(tmp_path / "etcd") as etcd, KubeAPIServer("secure-host", tmp_path / "host") as host:
        apply_crds(host.api_client())
        for key, value in {**OUTSIDE, **NOT_OURS}.items():
            etcd.etcdctl("put", key, value)
        region = etcd.grant("fleetdns-region", REGION_PREFIXES)
        coredns = regional_coredns(ZONE, etcd.endpoints, tmp_path / "coredns", "coredns-secure", region="east",
                                   etcd_tls=region).start()
        webhook = WebhookProvider(etcd.endpoints, tmp_path, domain_filter=ZONE, name="webhook-secure",
                                  host_kubeconfig=host.kubeconfig, region="east", etcd_tls=region,
                                  externaldns_args=["--interval=500ms"]).start()
        assert webhook.pod is not None
        externaldns = ExternalDNS.of_pod(webhook.pod, webhook.externaldns_metrics_port, tmp_path,
                                         "external-dns-secure").start()
        try:
            custom = client.CustomObjectsApi(host.api_client())
            custom.create_namespaced_custom_object(DNS_ENDPOINTS.group, DNS_ENDPOINTS.version, "default",
                                                   DNS_ENDPOINTS.plural, DNS_ENDPOINTS.manifest("app", spec={
                                                       "endpoints": [{"dnsName": f"app.{ZONE}", "recordType": "A",
                                                                      "targets": ["192.0.2.10"], "recordTTL": 30}]}))
            custom.create_cluster_custom_object(DNS_VIEWS.group, DNS_VIEWS.version, DNS_VIEWS.plural,
                                                DNS_VIEWS.manifest("office", spec={"clientCIDRs": ["10.9.0.0/16"]}))
            wait_for(lambda: dns_answers(coredns.host, coredns.port, f"app.{ZONE}", "A") == {"192.0.2.10"}, 60,
                     "ExternalDNS's record answered by CoreDNS through the limited etcd user")
            wait_for(lambda: coredns.corefile_views() == ["office"], 60, "the host's DNSView in the Corefile")

            for key in OUTSIDE:
                denied = etcd.etcdctl("get", key, identity=region, check=False)
                assert denied.returncode != 0 and "permission denied" in denied.stderr, (key, denied)
            refused = etcd.etcdctl("put", "/other-app/config", "overwritten", identity=region, check=False)
            assert refused.returncode != 0 and "permission denied" in refused.stderr
            canaries = {**OUTSIDE, **NOT_OURS}
            assert {key: etcd.etcdctl("get", key, "--print-value-only").stdout.strip() for key in canaries} == canaries
            assert ("x.example.com", "A") not in webhook.client.endpoints()
            logs = [webhook.process.log_path, coredns.sidecar.process.log_path]
            assert not [path for path in logs if ROOT_PASSWORD in path.read_text()]
            assert "permission denied" not in webhook.process.log_path.read_text()
        finally:
            stop_together([externaldns.stop, webhook.stop, coredns.stop])
