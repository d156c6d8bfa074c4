"""The webhook keeps the host's DNSViews in the region's etcd (``/fleetdns/views/<name>`` = the spec as JSON) for the
zone-file sidecar's Corefile (docs/design/views.md §7): a real kube-apiserver as the host, a real etcd, the webhook
as its own process. Keys follow the host's changes; nothing is removed from a cold cache or during a host outage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from fleetdns.apipaths import DNS_VIEWS
from fleetdns.dnsview import VIEWS_KEY_PREFIX, stored_view
from rig.apiserver import KubeAPIServer
from rig.etcd import EtcdServer
from rig.region import WebhookProvider
from rig.waiting import holds_for, wait_for
from rig.workloads import apply_crds
from tests.support.etcd import etcd_kv
from webhook_provider.host_views import parse_host_view, plan_view_keys

OFFICE = {"clientCIDRs": ["10.1.0.0/16"], "location": {"latitude": 48.85, "longitude": 2.35}}
GERMANY = {"countries": ["DE"]}


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """An etcd of its own: the views' prefix is one per region (the session's etcd serves other tests' sidecars)."""
    with EtcdServer(tmp_path_factory.mktemp("views-etcd")) as server:
        yield server


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    with KubeAPIServer("views-host", tmp_path_factory.mktemp("views-host")) as server:
        apply_crds(server.api_client())
        yield server


def views_in_etcd(etcd_url: str) -> dict[str, dict]:
    kv = etcd_kv(etcd_url)
    try:
        return {meta.key.decode().removeprefix(VIEWS_KEY_PREFIX): json.loads(value)
                for value, meta in kv.get_prefix(VIEWS_KEY_PREFIX)}
    finally:
        kv.close()


def put_view(host: KubeAPIServer, name: str, spec: dict | None) -> None:
    custom = client.CustomObjectsApi(host.api_client())
    args = (DNS_VIEWS.group, DNS_VIEWS.version, DNS_VIEWS.plural)
    if spec is None:
        custom.delete_cluster_custom_object(*args, name)
        return
    existing = {item["metadata"]["name"]: item for item in custom.list_cluster_custom_object(*args)["items"]}
    body = DNS_VIEWS.manifest(name, spec=spec)
    if name in existing:
        body["metadata"]["resourceVersion"] = existing[name]["metadata"]["resourceVersion"]
        custom.replace_cluster_custom_object(*args, name, body)
    else:
        custom.create_cluster_custom_object(*args, body)


def webhook(etcd, host: KubeAPIServer, workdir: Path) -> WebhookProvider:
    return WebhookProvider(etcd.endpoints, workdir, domain_filter="gslb.example.com", name="webhook-views",
                           host_kubeconfig=host.kubeconfig, region="east", host_relay=False)


@pytest.mark.etcd
@pytest.mark.apiserver
def test_host_dnsviews_are_kept_in_etcd_and_follow_every_change(etcd, host, tmp_path):
    kv = etcd_kv(etcd.endpoints[0])
    kv.put(VIEWS_KEY_PREFIX + "stale", json.dumps(GERMANY))  # left by an earlier host state
    kv.close()
    put_view(host, "office", OFFICE)
    provider = webhook(etcd, host, tmp_path).start()
    try:
        # the first listing makes etcd hold exactly the host's views
        wait_for(lambda: views_in_etcd(etcd.endpoints[0]) == {"office": OFFICE}, 15, "office written, stale removed")
        put_view(host, "germany", GERMANY)
        changed = {**OFFICE, "clientCIDRs": ["10.2.0.0/16"]}
        put_view(host, "office", changed)
        wait_for(lambda: views_in_etcd(etcd.endpoints[0]) == {"office": changed, "germany": GERMANY}, 15,
                 "germany added, office changed")
        kv = etcd_kv(etcd.endpoints[0])
        value, _ = kv.get(VIEWS_KEY_PREFIX + "office")
        kv.close()
        assert stored_view(VIEWS_KEY_PREFIX + "office", value).client_cidrs[0].compressed == "10.2.0.0/16"
        put_view(host, "germany", None)
        wait_for(lambda: views_in_etcd(etcd.endpoints[0]) == {"office": changed}, 15, "germany removed")
        metrics = provider.client.metrics()
        assert metrics["fleetdns_webhook_host_views"] == 1
        assert metrics['fleetdns_webhook_host_view_writes_total{change="delete"}'] == 2  # stale, germany

        host.stop_apiserver()  # an outage keeps what is there, however long
        try:
            wait_for(lambda: "connection down" in provider.process.log_path.read_text(), 30, "the host seen away")
            assert views_in_etcd(etcd.endpoints[0]) == {"office": changed}
        finally:
            host.restart()
        put_view(host, "office", None)
        wait_for(lambda: views_in_etcd(etcd.endpoints[0]) == {}, 30, "office removed after the outage")
    finally:
        provider.stop()


@pytest.mark.etcd
@pytest.mark.apiserver
def test_a_webhook_that_cannot_list_the_host_leaves_the_views_in_etcd_alone(etcd, host, tmp_path):
    kv = etcd_kv(etcd.endpoints[0])
    kv.put(VIEWS_KEY_PREFIX + "office", json.dumps(OFFICE))
    kv.close()
    host.stop_apiserver()
    try:
        provider = webhook(etcd, host, tmp_path).start()
        try:
            # the cache is cold, so nothing may be removed
            holds_for(lambda: views_in_etcd(etcd.endpoints[0]) == {"office": OFFICE}
                      and provider.client.metrics()["fleetdns_webhook_host_views"] == -1, 3,
                      "the views in etcd left alone with a cold cache", interval=0.2)
        finally:
            provider.stop()
    finally:
        host.restart()


@pytest.mark.unit
def test_the_plan_puts_changed_views_and_removes_only_keys_under_the_prefix():
    stored = {VIEWS_KEY_PREFIX + "same": b'{"countries":["DE"]}', VIEWS_KEY_PREFIX + "old": b"{}",
              VIEWS_KEY_PREFIX + "moved": b'{"countries":["FR"]}', "/fleetdns/views-other/x": b"{}"}
    puts, deletes = plan_view_keys({"same": '{"countries":["DE"]}', "moved": '{"countries":["IT"]}',
                                    "new": '{"continents":["EU"]}'}, stored)
    assert puts == [(VIEWS_KEY_PREFIX + "moved", '{"countries":["IT"]}'), (VIEWS_KEY_PREFIX + "new",
                                                                           '{"continents":["EU"]}')]
    assert deletes == [VIEWS_KEY_PREFIX + "old"]


@pytest.mark.unit
def test_a_host_view_is_stored_as_its_spec_and_read_back_by_the_same_rules():
    view = parse_host_view(DNS_VIEWS.manifest("office", spec={"location": {"longitude": 2.35, "latitude": 48.85},
                                                               "clientCIDRs": ["10.1.0.0/16"]}))
    assert view.value == '{"clientCIDRs":["10.1.0.0/16"],"location":{"latitude":48.85,"longitude":2.35}}'
    assert stored_view(VIEWS_KEY_PREFIX + "office", view.value).name == "office"
    with pytest.raises(ValueError, match="spec.countries"):
        parse_host_view(DNS_VIEWS.manifest("bad", spec={"countries": ["de"]}))
    with pytest.raises(ValueError, match="not a DNSView's key"):
        stored_view("/fleetdns/views/a/b", "{}")
