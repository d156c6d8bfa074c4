"""The webhook against a real etcd that requires TLS client certificates and a user (ExternalDNS's ETCD_* variables)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from kubernetes import client

from fleetdns.apipaths import DNS_ENDPOINTS, DNS_VIEWS
from fleetdns.dnsview import VIEWS_KEY_PREFIX
from fleetdns.kubeapi import KubeClient
from rig.apiserver import KubeAPIServer
from rig.coredns import dns_answers, regional_coredns
from rig.externaldns import ExternalDNS
from rig.ports import free_port
from rig.process import ManagedProcess, stop_together
from rig.region import WebhookProvider
from rig.secure_etcd import ROOT_PASSWORD, EtcdPasswordUser, SecureEtcd
from rig.waiting import wait_for
from rig.webhook_client import WebhookClient
from rig.workloads import apply_crds
from tests.support import secrets as secret_sweep

pytestmark = pytest.mark.etcd
SERVER_NAME = "etcd.test"  # the serving certificate's only name: reaching 127.0.0.1 needs ETCD_TLS_SERVER_NAME


@pytest.fixture(scope="module")
def secure_etcd(tmp_path_factory) -> Iterator[SecureEtcd]:
    with SecureEtcd(tmp_path_factory.mktemp("etcd-tls"), server_name=SERVER_NAME) as server:
        yield server


def root_env(etcd: SecureEtcd, password: str = ROOT_PASSWORD) -> dict[str, str]:
    """ExternalDNS's ETCD_* variables as root: the certificate naming root, and root's password."""
    return etcd.client_env(etcd.root, "root", password)


def start_webhook(etcd: SecureEtcd, workdir: Path, env: dict[str, str],
                  name: str) -> tuple[ManagedProcess, WebhookClient]:
    """Negotiating, not necessarily ready: some tests give it credentials etcd refuses (a start-up can take 10 s on a
    loaded machine)."""
    server = WebhookProvider(etcd.endpoints, workdir, name=name, env=env).start(timeout=30, wait_for_etcd=False)
    return server.process, server.client


def test_tls_client_certificates_server_name_and_user_from_the_etcd_variables(secure_etcd, tmp_path):
    process, hook = start_webhook(secure_etcd, tmp_path, root_env(secure_etcd), "webhook-tls")
    try:
        process.wait_until(lambda: hook.ready() == 200, 10, "ready")
        change = {"create": [{"dnsName": "tls.example.org", "recordType": "A", "targets": ["192.0.2.1"]}]}
        assert hook.apply(change).status_code == 204
        assert hook.endpoints()[("tls.example.org", "A")]["targets"] == ["192.0.2.1"]
    finally:
        process.stop()
    assert ROOT_PASSWORD not in process.log_path.read_text()


def test_a_wrong_password_keeps_it_unready_and_the_password_out_of_the_log(secure_etcd, tmp_path):
    process, hook = start_webhook(secure_etcd, tmp_path, root_env(secure_etcd, "wrong-Pa55word"), "webhook-badpw")
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
                             env={**root_env(secure_etcd), "ETCD_TIMEOUT": "1s"}).start(timeout=30,
                                                                                         wait_for_etcd=False)
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
@pytest.mark.parametrize("credential", ["certificate", "password"])
def test_a_region_publishes_and_serves_through_an_etcd_user_limited_to_its_prefixes_and_shows_no_secret(
        tmp_path: Path, credential: str) -> None:
    """etcd with TLS, client certificates and authentication; the region's etcd user has one role: read and write
    under the region's prefixes. The user is the common name of the region's certificate (the chart's
    region.etcd.tls.clientSecret, as docs/install.md sets it up), or a user name and a password the webhook and the
    sidecar read from a Secret (their extraEnv), their certificate then naming no etcd user. ExternalDNS's records and
    the host's DNSViews reach CoreDNS; the user cannot read or write anything else, keys outside the prefixes stay as
    they were, and no password or token is in any log, object on the host or metrics page."""
    password = secrets.token_hex(12) if credential == "password" else ""
    with SecureEtcd(tmp_path / "etcd") as etcd, KubeAPIServer("secure-host", tmp_path / "host") as host:
        apply_crds(host.api_client())
        for key, value in {**OUTSIDE, **NOT_OURS}.items():
            etcd.etcdctl("put", key, value)
        region = etcd.grant("fleetdns-region", REGION_PREFIXES, password=password)
        user = EtcdPasswordUser("fleetdns-region", password) if password else None
        as_region = {"identity": region, "user": f"fleetdns-region:{password}" if password else ""}
        coredns = regional_coredns(ZONE, etcd.endpoints, tmp_path / "coredns", "coredns-secure", region="east",
                                   etcd_tls=region, etcd_user=user).start()
        webhook = WebhookProvider(etcd.endpoints, tmp_path, domain_filter=ZONE, name="webhook-secure",
                                  host_kubeconfig=host.kubeconfig, region="east", etcd_tls=region, etcd_user=user,
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
                denied = etcd.etcdctl("get", key, **as_region, check=False)
                assert denied.returncode != 0 and "permission denied" in denied.stderr, (key, denied)
            refused = etcd.etcdctl("put", "/other-app/config", "overwritten", **as_region, check=False)
            assert refused.returncode != 0 and "permission denied" in refused.stderr
            if password:  # the certificate alone is no etcd user: the password is what let the region in
                alone = etcd.etcdctl("get", "/skydns/", "--prefix", identity=region, check=False)
                assert alone.returncode != 0 and "permission denied" in alone.stderr, alone
            canaries = {**OUTSIDE, **NOT_OURS}
            assert {key: etcd.etcdctl("get", key, "--print-value-only").stdout.strip() for key in canaries} == canaries
            assert ("x.example.com", "A") not in webhook.client.endpoints()
            assert "permission denied" not in webhook.process.log_path.read_text()

            credentials = {"etcd's root password": ROOT_PASSWORD, "the host API server's token": host.admin_token}
            if password:
                credentials["the region's etcd password"] = password
            pages = {name: requests.get(url + "/metrics", timeout=5).text for name, url in (
                ("webhook", webhook.client.health_url), ("sidecar", coredns.sidecar.health_url),
                ("external-dns", f"http://127.0.0.1:{webhook.externaldns_metrics_port}"))}
            logs = sorted(tmp_path.rglob("*.log"))
            assert len(logs) >= 6, logs  # etcd, the API server and its etcd, CoreDNS, the sidecar, the webhook, ...
            found = (secret_sweep.in_files(logs, credentials)
                     + secret_sweep.in_api_objects({"host": KubeClient(host.api_client())}, credentials)
                     + secret_sweep.in_pages(pages, credentials))
            assert found == [], "\n".join(found)
        finally:
            stop_together([externaldns.stop, webhook.stop, coredns.stop])
