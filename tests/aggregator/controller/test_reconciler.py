"""The reconciler on its own: its reads come from an in-memory stand-in for the engine's caches
(``ReconcileInputs``), its writes go to a real kube-apiserver, and every assertion is on what ends up there."""

from __future__ import annotations

import pytest

from aggregator.controller.reconciler import Reconciler
from aggregator.model import (
    Domain,
    IntentKind,
)
from fleetdns.apipaths import DNS_ENDPOINTS, SERVICE_DNS_RECORDS
from fleetdns.kubeapi import NotLeaderError
from rig import Fleet
from tests.support.aggregator import condition, dns_endpoint, events_for, intent, records, unique
from tests.support.world import ReconcilerScene

pytestmark = pytest.mark.apiserver


@pytest.fixture
def scene(fleet: Fleet) -> ReconcilerScene:
    return ReconcilerScene(fleet)


def test_a_reconcile_writes_the_dns_endpoint_the_status_and_one_join_event(scene: ReconcilerScene) -> None:
    key = scene.intent(unique("web"), dnsPrefix="shop")
    scene.reconciler.reconcile(key)

    obj = dns_endpoint(scene.host, scene.ns, f"service-{key.name}")
    assert obj is not None
    assert records(obj)[(scene.global_name(key.name), "A")] == {"192.0.2.10", "198.51.100.20"}
    assert records(obj)[("shop.example.com", "CNAME")] == {scene.global_name(key.name)}
    assert obj["metadata"]["labels"] == {"fleetdns.io/intent-kind": "ServiceDNSRecord",
                                         "fleetdns.io/intent-name": key.name}
    owner = obj["metadata"]["ownerReferences"][0]
    assert (owner["apiVersion"], owner["kind"], owner["uid"]) == (
        SERVICE_DNS_RECORDS.api_version, "ServiceDNSRecord", scene.caches.intents[key].uid)

    stored = intent(scene.host, scene.ns, "servicednsrecords", key.name)
    assert stored["status"]["healthyClusters"] == 2 and condition(stored, "Ready")["status"] == "True"
    assert scene.events.flush(timeout=10)
    joined = [e for e in events_for(scene.host, scene.ns, key.name) if e["reason"] == "ClusterJoined"]
    assert len(joined) == 1 and "east" in joined[0]["message"] and "west" in joined[0]["message"]
    assert joined[0]["reportingInstance"] == "test-reconciler"


def test_reconciling_again_before_the_watch_catches_up_writes_nothing(scene: ReconcilerScene) -> None:
    """The reconciler's own record of its write stands in for the cache until the watch event arrives."""
    key = scene.intent(unique("web"))
    scene.reconciler.reconcile(key)
    before = dns_endpoint(scene.host, scene.ns, f"service-{key.name}")
    assert before is not None and scene.caches.dns_endpoint(scene.ns, f"service-{key.name}") is None

    scene.reconciler.reconcile(key)
    scene.reconciler.reconcile(key)
    after = dns_endpoint(scene.host, scene.ns, f"service-{key.name}")
    assert after is not None and after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert (scene.written("create"), scene.written("update"), scene.status_writes()) == (1.0, 0.0, 1.0)


def test_a_changed_answer_is_written_once_and_announced_once(scene: ReconcilerScene) -> None:
    key = scene.intent(unique("web"))
    scene.reconciler.reconcile(key)
    scene.watch_catches_up(key)

    scene.east.ready[(scene.ns, key.name)] = 0
    scene.reconciler.reconcile(key)
    scene.reconciler.reconcile(key)  # the cache still shows the old records: the record of the write wins
    obj = dns_endpoint(scene.host, scene.ns, f"service-{key.name}")
    assert records(obj)[(scene.global_name(key.name), "A")] == {"198.51.100.20"}
    assert (scene.written("create"), scene.written("update"), scene.status_writes()) == (1.0, 1.0, 2.0)
    assert scene.events.flush(timeout=10)
    left = [e for e in events_for(scene.host, scene.ns, key.name) if e["reason"] == "ClusterLeft"]
    assert len(left) == 1 and left[0].get("count", 1) == 1 and "east (NoReadyEndpoints" in left[0]["message"]


def test_a_dns_endpoint_edited_by_hand_is_restored_once_the_cache_shows_the_edit(scene: ReconcilerScene) -> None:
    key = scene.intent(unique("web"))
    scene.reconciler.reconcile(key)
    scene.watch_catches_up(key)
    scene.host.merge_patch(DNS_ENDPOINTS.path(scene.ns, f"service-{key.name}"), {"spec": {"endpoints": []}})
    scene.watch_catches_up(key)

    scene.reconciler.reconcile(key)
    obj = dns_endpoint(scene.host, scene.ns, f"service-{key.name}")
    assert records(obj)[(scene.global_name(key.name), "A")] == {"192.0.2.10", "198.51.100.20"}


def test_a_dns_endpoint_deleted_after_our_write_is_created_again(scene: ReconcilerScene) -> None:
    key = scene.intent(unique("web"))
    scene.reconciler.reconcile(key)  # the cache never saw the create: only the deletion reaches it
    scene.host.delete(DNS_ENDPOINTS.path(scene.ns, f"service-{key.name}"))
    scene.watch_catches_up(key)

    scene.reconciler.reconcile(key)
    obj = dns_endpoint(scene.host, scene.ns, f"service-{key.name}")
    assert records(obj)[(scene.global_name(key.name), "A")] == {"192.0.2.10", "198.51.100.20"}


def test_a_deleted_intent_takes_its_dns_endpoint_but_not_a_foreign_one_of_the_same_name(scene: ReconcilerScene) -> None:
    ours, theirs = scene.intent(unique("web")), scene.intent(unique("web"))
    scene.reconciler.reconcile(ours)
    scene.host.create(DNS_ENDPOINTS.path(scene.ns), DNS_ENDPOINTS.manifest(f"service-{theirs.name}", spec={
        "endpoints": [{"dnsName": "theirs.example.com", "recordType": "A", "targets": ["192.0.2.99"]}]}))
    scene.watch_catches_up(theirs)
    del scene.caches.intents[ours], scene.caches.intents[theirs]

    scene.reconciler.reconcile(ours)
    scene.reconciler.reconcile(theirs)
    assert dns_endpoint(scene.host, scene.ns, f"service-{ours.name}") is None
    assert records(dns_endpoint(scene.host, scene.ns, f"service-{theirs.name}")) == {
        ("theirs.example.com", "A"): {"192.0.2.99"}}
    assert scene.written("delete") == 1.0


def test_a_domain_is_found_in_the_domain_namespace_and_a_missing_one_is_reported(scene: ReconcilerScene) -> None:
    shared, missing = scene.intent(unique("web"), domainRef="shared"), scene.intent(unique("web"), domainRef="none")
    scene.caches.domains[("fleetdns-system", "shared")] = Domain("fleetdns-system", "shared", "shared.example.net")
    scene.reconciler.reconcile(shared)
    scene.reconciler.reconcile(missing)

    assert (f"{shared.name}.{scene.ns}.shared.svc.shared.example.net", "A") in records(
        dns_endpoint(scene.host, scene.ns, f"service-{shared.name}"))
    ready = condition(intent(scene.host, scene.ns, "servicednsrecords", missing.name), "Ready")
    assert ready["reason"] == "DomainNotFound" and f"{scene.ns} or fleetdns-system" in ready["message"]
    assert records(dns_endpoint(scene.host, scene.ns, f"service-{missing.name}")) == {}


def test_a_replica_that_may_not_write_writes_nothing(scene: ReconcilerScene) -> None:
    key = scene.intent(unique("web"))
    fenced = Reconciler(scene.caches, scene.host.fenced(lambda: False), scene.metrics, "standby", "fleetdns-system")
    with pytest.raises(NotLeaderError):
        fenced.reconcile(key)
    assert dns_endpoint(scene.host, scene.ns, f"service-{key.name}") is None
    assert "status" not in intent(scene.host, scene.ns, "servicednsrecords", key.name)


def test_condition_counts_follow_the_last_results(scene: ReconcilerScene) -> None:
    healthy, down = scene.intent(unique("web")), scene.intent(unique("web"))
    for member in (scene.east, scene.west):
        member.ready[(scene.ns, down.name)] = 0
    scene.reconciler.reconcile(healthy)
    scene.reconciler.reconcile(down)
    counts = scene.reconciler.condition_counts()
    assert counts[(str(IntentKind.SERVICE), "Ready", "True")] == 1
    assert counts[(str(IntentKind.SERVICE), "Ready", "False")] == 1
