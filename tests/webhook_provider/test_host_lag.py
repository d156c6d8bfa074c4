"""The region's lag behind the host and when it is repaired; what the host relay forwards (pure parts)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from fleetdns.config import ConfigError
from fleetdns.endpoint import Endpoint
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.host_lag import HostDNSEndpoint, LagTracker, expected_records, missing_records
from webhook_provider.host_relay import HostRelay, relay_allows, watch_timeout
from webhook_provider.metrics import HostMetrics
from webhook_provider.settings import load_settings
from webhook_provider.watch_resume import list_query, missed_events, resume_version

pytestmark = pytest.mark.unit
ZONE = DomainFilter.from_lists(["gslb.example.com"], [])
APP = Endpoint("app.gslb.example.com", "A", ("198.18.0.1", "198.18.1.1"), record_ttl=30)


class SteppedClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_lag(stored: dict[str, list[Endpoint]], resets: list[int], clock: SteppedClock) -> LagTracker:
    def reset() -> int:
        resets.append(1)
        return 1

    return LagTracker(ZONE, lambda name: stored.get(name, []), HostMetrics.create(CollectorRegistry(), "east"),
                      repair_after=2.0, reset_watches=reset, clock=clock)


def test_records_the_webhook_would_not_store_are_not_expected():
    outside = Endpoint("app.other.org", "A", ("198.18.0.1",))
    dotted = Endpoint("www.gslb.example.com", "CNAME", ("app.gslb.example.com.",))  # ExternalDNS skips it
    expected = expected_records((APP, outside, dotted), ZONE)
    assert [key[0] for key in expected] == ["app.gslb.example.com"]


def test_a_name_is_missing_until_etcd_holds_the_same_targets_in_any_order_and_case():
    expected = expected_records((APP,), ZONE)
    assert missing_records(expected, lambda name: []) == ["app.gslb.example.com"]
    one_target = Endpoint("app.gslb.example.com", "A", ("198.18.0.1",))
    assert missing_records(expected, lambda name: [one_target]) == ["app.gslb.example.com"]
    same = Endpoint("APP.gslb.example.com", "A", ("198.18.1.1", "198.18.0.1"), record_ttl=5)
    assert missing_records(expected, lambda name: [same]) == []


def test_the_lag_grows_from_the_first_unapplied_change_and_a_repair_follows_after_two_seconds():
    clock, stored, resets = SteppedClock(), {}, []
    lag = make_lag(stored, resets, clock)
    lag.changed(None, HostDNSEndpoint("shop/app", (APP,)))
    clock.now += 1.5
    assert lag.check() == 1.5 and resets == []
    clock.now += 1.0
    lag.changed(None, HostDNSEndpoint("shop/app", (APP,)))  # changed again: still behind since the first
    assert lag.check() == 2.5 and resets == [1]
    stored["app.gslb.example.com"] = [APP]
    assert lag.check() == 0.0


def test_repairs_back_off_while_the_same_change_stays_unapplied_and_restart_fast_once_in_step():
    clock, stored, resets = SteppedClock(), {}, []
    lag = make_lag(stored, resets, clock)
    lag.changed(None, HostDNSEndpoint("shop/app", (APP,)))
    repaired_at = []
    for step in range(1, 401):  # 40 s in 0.1 s steps
        clock.now = 100.0 + step / 10
        before = len(resets)
        lag.check()
        if len(resets) > before:
            repaired_at.append(round(clock.now - 100.0, 1))
    assert repaired_at == [2.0, 4.0, 8.0, 16.0, 32.0]  # 2 s, then 2, 4, 8, 16 s apart
    stored["app.gslb.example.com"] = [APP]
    lag.check()
    stored.clear()
    lag.changed(None, HostDNSEndpoint("shop/app", (Endpoint("app.gslb.example.com", "A", ("198.18.2.1",)),)))
    clock.now += 2.0
    lag.check()
    assert len(resets) == 6  # a new lag is repaired after 2 s again, not after the old backoff


def test_a_deleted_dnsendpoint_no_longer_counts_as_lag():
    clock, resets = SteppedClock(), []
    lag = make_lag({}, resets, clock)
    lag.changed(None, HostDNSEndpoint("shop/app", (APP,)))
    clock.now += 1.0
    lag.changed(HostDNSEndpoint("shop/app", (APP,)), None)
    assert lag.check() == 0.0


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


def test_the_relay_listens_on_loopback_only(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(ConfigError, match="loopback"):
        load_settings([f"--host-kubeconfig={kubeconfig}", "--host-relay-listen=0.0.0.0:8889"], {})
    settings = load_settings([f"--host-kubeconfig={kubeconfig}", "--region=east"], {})
    assert settings.host is not None and settings.host.relay_listen == ("127.0.0.1", 8889)
    assert load_settings([], {}).host is None
    with pytest.raises(ConfigError, match="--host-kubeconfig"):
        load_settings([f"--host-kubeconfig={tmp_path / 'missing'}"], {})


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
