"""The webhook's host relay against a real kube-apiserver: ExternalDNS's watch is held through a host outage (never
refused, so client-go never backs off), a reset ends it at once, and nothing outside the DNSEndpoint API passes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

from fleetdns.apipaths import DNS_ENDPOINTS
from fleetdns.kubeapi import KubeClient, host_api_client
from rig.apiserver import KubeAPIServer
from rig.waiting import wait_for
from rig.workloads import apply_crds, ensure_namespace
from webhook_provider.host_relay import HostRelay
from webhook_provider.metrics import HostMetrics

pytestmark = [pytest.mark.apiserver, pytest.mark.etcd]
NAMESPACE, NAME = "shop", "app"
HOLD_SECONDS = 60.0  # longer than the host takes to restart here


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    with KubeAPIServer("relay-host", tmp_path_factory.mktemp("relay-host")) as server:
        api = server.api_client()
        apply_crds(api)
        ensure_namespace(api, NAMESPACE)
        yield server


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def relay(host: KubeAPIServer, registry: CollectorRegistry) -> Iterator[HostRelay]:
    client = KubeClient(host_api_client(str(host.kubeconfig)))
    relay = HostRelay(client, ("127.0.0.1", 0), HOLD_SECONDS, HostMetrics.create(registry, "east")).start()
    yield relay
    relay.stop()


def dns_endpoint(targets: list[str]) -> dict[str, Any]:
    return DNS_ENDPOINTS.manifest(NAME, NAMESPACE, spec={"endpoints": [
        {"dnsName": "app.gslb.example.com", "recordType": "A", "targets": targets}]})


def put_dns_endpoint(host: KubeAPIServer, targets: list[str]) -> str:
    """Create or replace the DNSEndpoint; returns its resourceVersion."""
    client = KubeClient(host_api_client(str(host.kubeconfig)))
    path = DNS_ENDPOINTS.path(NAMESPACE, NAME)
    try:
        current = client.get(path)
    except Exception:  # noqa: BLE001 - absent: create it
        return str(client.create(DNS_ENDPOINTS.path(NAMESPACE), dns_endpoint(targets))["metadata"]["resourceVersion"])
    body = dns_endpoint(targets)
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    return str(client.replace(path, body)["metadata"]["resourceVersion"])


class RelayedWatch:
    """A watch through the relay as ExternalDNS opens it, read on a thread: its events and whether it ended."""

    def __init__(self, relay: HostRelay, resource_version: str) -> None:
        self.url = (f"http://127.0.0.1:{relay.port}{DNS_ENDPOINTS.path(NAMESPACE)}?watch=true"
                    f"&resourceVersion={resource_version}&timeoutSeconds=120")
        self.events: list[dict[str, Any]] = []
        self.status: int | None = None
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            with requests.get(self.url, stream=True, timeout=(5, 180)) as response:
                self.status = response.status_code
                for line in response.iter_lines():
                    if line.strip():
                        self.events.append(json.loads(line))
        finally:
            self.ended.set()

    def targets(self) -> list[list[str]]:
        return [event["object"]["spec"]["endpoints"][0]["targets"] for event in self.events
                if event.get("type") in ("ADDED", "MODIFIED")]


def test_a_watch_opened_while_the_host_is_down_is_held_and_delivers_the_change_made_after_it_returns(
        host, relay, registry):
    version = put_dns_endpoint(host, ["198.18.0.1"])
    host.stop_apiserver()
    try:
        watch = RelayedWatch(relay, version)
        wait_for(lambda: registry.get_sample_value("fleetdns_webhook_host_relay_holding") == 1, timeout=10,
                 what="the relay holding the watch")
        assert not watch.ended.is_set() and watch.status is None  # held: neither refused nor answered
    finally:
        host.restart()
    put_dns_endpoint(host, ["198.18.1.1"])
    wait_for(lambda: ["198.18.1.1"] in watch.targets(), timeout=30, what="the change through the held watch")
    # A restarted API server answers a watch from before its restart with 410 Expired (its watch cache starts
    # anew) and the client would re-list after a backoff; the relay resumed it instead.
    assert watch.status == 200 and all(event["type"] != "ERROR" for event in watch.events), watch.events
    assert registry.get_sample_value("fleetdns_webhook_host_relay_holding") == 0
    assert registry.get_sample_value("fleetdns_webhook_host_relay_held_seconds_count") >= 1


def test_a_watch_resumed_after_a_host_restart_gets_every_change_it_missed_instead_of_410(host, relay):
    client = KubeClient(host_api_client(str(host.kubeconfig)))
    put_dns_endpoint(host, ["198.18.4.1"])
    other = dns_endpoint(["198.18.5.1"])
    other["metadata"]["name"] = "gone"
    client.create(DNS_ENDPOINTS.path(NAMESPACE), other)
    version = str(client.get(DNS_ENDPOINTS.path(NAMESPACE))["metadata"]["resourceVersion"])
    first = RelayedWatch(relay, version)
    wait_for(lambda: first.status == 200, timeout=10, what="a watch through the relay")
    host.stop_apiserver()
    assert first.ended.wait(15), "the host's watch ends when it stops"
    host.restart()
    put_dns_endpoint(host, ["198.18.6.1"])  # missed: modified
    client.delete(DNS_ENDPOINTS.path(NAMESPACE, "gone"))  # missed: deleted
    added = dns_endpoint(["198.18.7.1"])
    added["metadata"]["name"] = "new"
    client.create(DNS_ENDPOINTS.path(NAMESPACE), added)  # missed: added
    # As client-go does: watch again from the last version seen. The restarted host would answer 410 Expired.
    watch = RelayedWatch(relay, version)
    wait_for(lambda: len(watch.events) >= 3, timeout=30, what="the missed events")
    seen = {(event["type"], event["object"]["metadata"]["name"]) for event in watch.events}
    assert seen == {("MODIFIED", NAME), ("DELETED", "gone"), ("ADDED", "new")}, watch.events
    assert all(event["object"]["kind"] == "DNSEndpoint" for event in watch.events)
    put_dns_endpoint(host, ["198.18.8.1"])  # and the watch goes on live
    wait_for(lambda: ["198.18.8.1"] in watch.targets(), timeout=10, what="a live change after the missed ones")
    client.delete(DNS_ENDPOINTS.path(NAMESPACE, "new"))


def test_a_reset_ends_every_relayed_watch_at_once_and_a_new_watch_resumes_where_it_left(host, relay):
    version = put_dns_endpoint(host, ["198.18.2.1"])
    watch = RelayedWatch(relay, version)
    wait_for(lambda: watch.status == 200, timeout=10, what="the watch open through the relay")
    assert relay.reset_watches() == 1
    assert watch.ended.wait(5), "a reset watch must end at once (ExternalDNS then watches again)"
    put_dns_endpoint(host, ["198.18.3.1"])
    resumed = RelayedWatch(relay, version)
    wait_for(lambda: ["198.18.3.1"] in resumed.targets(), timeout=10, what="the change missed while reset")


def test_the_relay_refuses_anything_outside_the_dnsendpoint_api_with_a_reason(relay):
    response = requests.get(f"http://127.0.0.1:{relay.port}/api/v1/namespaces/kube-system/secrets", timeout=10)
    assert response.status_code == 403
    assert "host relay" in response.json()["message"]
    deleted = requests.delete(f"http://127.0.0.1:{relay.port}{DNS_ENDPOINTS.path(NAMESPACE, NAME)}", timeout=10)
    assert deleted.status_code == 403
