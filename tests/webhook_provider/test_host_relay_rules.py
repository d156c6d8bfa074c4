"""What the host relay forwards and how (pure parts and a relay on loopback): only what ExternalDNS's CRD source
needs, long read timeouts for watches only, loopback listening, and resumed watches."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from webhook_provider.host_relay import HostRelay, relay_allows, watch_timeout
from webhook_provider.metrics import HostMetrics
from webhook_provider.watch_resume import list_query, missed_events, resume_version

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/api", True),
    ("GET", "/apis", True),
    ("GET", "/apis/externaldns.k8s.io/v1alpha1", True),
    ("GET", "/apis/externaldns.k8s.io/v1alpha1/dnsendpoints", True),
    ("PUT", "/apis/externaldns.k8s.io/v1alpha1/namespaces/shop/dnsendpoints/app/status", True),
    ("PUT", "/apis/externaldns.k8s.io/v1alpha1/namespaces/shop/dnsendpoints/app", False),
    ("PUT", "/apis/externaldns.k8s.io/v1alpha1/namespaces/shop/dnsendpoints/app/status\n", False),
    ("DELETE", "/apis/externaldns.k8s.io/v1alpha1/namespaces/shop/dnsendpoints/app", False),
    ("GET", "/api/v1/secrets", False),
    ("GET", "/apis/fleetdns.io/v1alpha1/memberclusters", False),
])
def test_the_relay_forwards_only_what_externaldns_crd_source_needs(method, path, allowed):
    assert relay_allows(method, path) is allowed


def test_only_watches_get_a_long_read_timeout():
    assert watch_timeout("labelSelector=a%3Db") is None
    assert watch_timeout("watch=true&timeoutSeconds=300") == 330.0


def item(name: str, version: int, targets: tuple[str, ...] = ("198.18.0.1",)) -> dict:
    return {"metadata": {"namespace": "shop", "name": name, "resourceVersion": str(version)},
            "spec": {"endpoints": [{"dnsName": f"{name}.gslb.example.com", "recordType": "A",
                                    "targets": list(targets)}]}}


def listing(version: int, *items: dict) -> dict:
    return {"apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpointList",
            "metadata": {"resourceVersion": str(version)}, "items": list(items)}


def test_a_resumed_watch_gets_what_a_watch_from_its_version_would_have_in_version_order():
    before = listing(10, item("kept", 3), item("changed", 5), item("gone", 7))
    now = listing(20, item("kept", 3), item("changed", 15, ("198.18.9.9",)), item("new", 12))
    events = missed_events(before, now)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "new"), ("MODIFIED", "changed"), ("DELETED", "gone")]
    assert all(e["object"]["kind"] == "DNSEndpoint" and e["object"]["apiVersion"] == "externaldns.k8s.io/v1alpha1"
               for e in events)
    assert events[-1]["object"]["metadata"]["resourceVersion"] == "20"  # the client then watches from 20


def test_only_a_watch_that_resumes_from_a_version_is_resumed():
    assert resume_version("watch=true&resourceVersion=42&allowWatchBookmarks=true") == "42"
    assert resume_version("watch=true") is None
    assert resume_version("watch=true&resourceVersion=0") is None
    assert resume_version("watch=true&resourceVersion=42&sendInitialEvents=true") is None
    assert list_query("watch=true&resourceVersion=42&labelSelector=a%3Db&timeoutSeconds=9", "42") == \
        "labelSelector=a%3Db&resourceVersion=42&resourceVersionMatch=Exact"
    assert list_query("watch=true&resourceVersion=42&labelSelector=a%3Db", None) == "labelSelector=a%3Db"


def test_the_relay_listens_on_ipv6_loopback_and_refuses_outside_its_allowlist_with_a_kubernetes_status():
    import requests

    relay = HostRelay(None, ("::1", 0), 1.0, HostMetrics.create(CollectorRegistry(), "east")).start()  # type: ignore[arg-type]
    try:
        response = requests.get(f"http://[::1]:{relay.port}/api/v1/namespaces/kube-system/secrets", timeout=5)
    finally:
        relay.stop()
    assert response.status_code == 403
    assert response.json()["kind"] == "Status" and "host relay" in response.json()["message"]
