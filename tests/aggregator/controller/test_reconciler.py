"""The reconciler on its own: its reads come from an in-memory stand-in for the engine's caches
(``ReconcileInputs``), its writes go to a real kube-apiserver, and every assertion is on what ends up there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from aggregator.controller.events import EventRecorder
from aggregator.controller.reconciler import Reconciler
from aggregator.health.readiness import KindProblem, MemberView, Reachability
from aggregator.metrics import AggregatorMetrics
from aggregator.model import (
    DNSEndpointObject,
    Domain,
    Intent,
    IntentKey,
    IntentKind,
    LoadBalancerAddress,
    MemberCluster,
    MemberService,
    SecretKeyRef,
    parse_dns_endpoint,
    parse_service_intent,
)
from aggregator.sources.base import MemberKind
from fleetdns.apipaths import DNS_ENDPOINTS, SERVICE_DNS_RECORDS
from fleetdns.kubeapi import KubeClient, NotLeaderError
from rig import Fleet
from tests.support.aggregator import (
    condition,
    create_service_intent,
    dns_endpoint,
    events_for,
    intent,
    new_namespace,
    prepare_fleet,
    records,
    unique,
)

pytestmark = pytest.mark.apiserver
EAST = MemberCluster("east", "east", "east-1a", SecretKeyRef("fleetdns-system", "east"))
WEST = MemberCluster("west", "west", "west-1a", SecretKeyRef("fleetdns-system", "west"))


@dataclass
class Member:
    """One member as the sources read it: a few Services and their ready endpoints."""

    cluster: MemberCluster
    services: dict[tuple[str, str], MemberService] = field(default_factory=dict)
    ready: dict[tuple[str, str], int] = field(default_factory=dict)
    reachability: Reachability = Reachability.CONNECTED

    @property
    def name(self) -> str:
        return self.cluster.name

    def serve(self, namespace: str, name: str, ip: str, ready: int = 1) -> None:
        self.services[(namespace, name)] = MemberService(namespace, name, True, (LoadBalancerAddress(ip=ip),))
        self.ready[(namespace, name)] = ready

    def view(self) -> MemberView:
        return MemberView(self.cluster, self.reachability)

    def get(self, kind: MemberKind, namespace: str, name: str) -> Any | None:
        return self.services.get((namespace, name)) if kind.name == "services" else None

    def ready_endpoints(self, namespace: str, service: str) -> int:
        return self.ready.get((namespace, service), 0)

    def kind_problem(self, kind: MemberKind) -> KindProblem | None:
        return None


@dataclass
class Caches:
    """The engine's caches, in memory: what the watches would have delivered so far."""

    intents: dict[IntentKey, Intent] = field(default_factory=dict)
    member_list: list[Member] = field(default_factory=list)
    domains: dict[tuple[str, str], Domain] = field(default_factory=dict)
    endpoints: dict[tuple[str, str], DNSEndpointObject] = field(default_factory=dict)

    def synced(self, kind: IntentKind) -> bool:
        return True

    def intent(self, key: IntentKey) -> Intent | None:
        return self.intents.get(key)

    def members(self) -> Sequence[Member]:
        return self.member_list

    def domain(self, namespace: str, name: str) -> Domain | None:
        return self.domains.get((namespace, name))

    def dns_endpoint(self, namespace: str, name: str) -> DNSEndpointObject | None:
        return self.endpoints.get((namespace, name))


class Scene:
    def __init__(self, fleet: Fleet) -> None:
        self.host: KubeClient = prepare_fleet(fleet)
        self.ns = new_namespace(fleet, "agg-reconciler")
        self.east, self.west = Member(EAST), Member(WEST)
        self.caches = Caches(member_list=[self.east, self.west])
        self.caches.domains[(self.ns, "fleet")] = Domain(self.ns, "fleet", "example.com")
        self.metrics = AggregatorMetrics()
        self.events = EventRecorder(self.host, self.metrics, "test-reconciler").start()  # posts in the background
        self.reconciler = Reconciler(self.caches, self.host, self.metrics, "test-reconciler", "fleetdns-system",
                                     events=self.events)

    def intent(self, name: str, **spec: Any) -> IntentKey:
        """A ServiceDNSRecord created in the API server and in the cache, served by both members."""
        parsed = parse_service_intent(create_service_intent(self.host, self.ns, name, **spec))
        self.caches.intents[parsed.key] = parsed
        self.east.serve(self.ns, name, "192.0.2.10")
        self.west.serve(self.ns, name, "198.51.100.20")
        return parsed.key

    def watch_catches_up(self, key: IntentKey) -> None:
        """What the DNSEndpoint watch would deliver: the API server's object into the cache."""
        obj = dns_endpoint(self.host, self.ns, f"service-{key.name}")
        if obj is None:
            self.caches.endpoints.pop((self.ns, f"service-{key.name}"), None)
            self.reconciler.dns_endpoint_observed(key, None)
        else:
            parsed = parse_dns_endpoint(obj)
            self.caches.endpoints[(self.ns, parsed.name)] = parsed
            self.reconciler.dns_endpoint_observed(key, parsed)

    def written(self, operation: str) -> float:
        return self.metrics.registry.get_sample_value("fleetdns_aggregator_dnsendpoint_writes_total",
                                                      {"operation": operation}) or 0.0

    def status_writes(self) -> float:
        return self.metrics.registry.get_sample_value("fleetdns_aggregator_status_writes_total",
                                                      {"kind": "ServiceDNSRecord"}) or 0.0


@pytest.fixture
def scene(fleet: Fleet) -> Scene:
    return Scene(fleet)


def global_name(scene: Scene, name: str) -> str:
    return f"{name}.{scene.ns}.fleet.svc.example.com"


def test_a_reconcile_writes_the_dns_endpoint_the_status_and_one_join_event(scene: Scene) -> None:
    key = scene.intent(unique("web"), dnsPrefix="shop")
    scene.reconciler.reconcile(key)

    obj = dns_endpoint(scene.host, scene.ns, f"service-{key.name}")
    assert obj is not None
    assert records(obj)[(global_name(scene, key.name), "A")] == {"192.0.2.10", "198.51.100.20"}
    assert records(obj)[("shop.example.com", "CNAME")] == {global_name(scene, key.name)}
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


def test_reconciling_again_before_the_watch_catches_up_writes_nothing(scene: Scene) -> None:
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


def test_a_changed_answer_is_written_once_and_announced_once(scene: Scene) -> None:
    key = scene.intent(unique("web"))
    scene.reconciler.reconcile(key)
    scene.watch_catches_up(key)

    scene.east.ready[(scene.ns, key.name)] = 0
    scene.reconciler.reconcile(key)
    scene.reconciler.reconcile(key)  # the cache still shows the old records: the record of the write wins
    obj = dns_endpoint(scene.host, scene.ns, f"service-{key.name}")
    assert records(obj)[(global_name(scene, key.name), "A")] == {"198.51.100.20"}
    assert (scene.written("create"), scene.written("update"), scene.status_writes()) == (1.0, 1.0, 2.0)
    assert scene.events.flush(timeout=10)
    left = [e for e in events_for(scene.host, scene.ns, key.name) if e["reason"] == "ClusterLeft"]
    assert len(left) == 1 and left[0].get("count", 1) == 1 and "east (NoReadyEndpoints" in left[0]["message"]


def test_a_dns_endpoint_edited_by_hand_is_restored_once_the_cache_shows_the_edit(scene: Scene) -> None:
    key = scene.intent(unique("web"))
    scene.reconciler.reconcile(key)
    scene.watch_catches_up(key)
    scene.host.merge_patch(DNS_ENDPOINTS.path(scene.ns, f"service-{key.name}"), {"spec": {"endpoints": []}})
    scene.watch_catches_up(key)

    scene.reconciler.reconcile(key)
    obj = dns_endpoint(scene.host, scene.ns, f"service-{key.name}")
    assert records(obj)[(global_name(scene, key.name), "A")] == {"192.0.2.10", "198.51.100.20"}


def test_a_dns_endpoint_deleted_after_our_write_is_created_again(scene: Scene) -> None:
    key = scene.intent(unique("web"))
    scene.reconciler.reconcile(key)  # the cache never saw the create: only the deletion reaches it
    scene.host.delete(DNS_ENDPOINTS.path(scene.ns, f"service-{key.name}"))
    scene.watch_catches_up(key)

    scene.reconciler.reconcile(key)
    obj = dns_endpoint(scene.host, scene.ns, f"service-{key.name}")
    assert records(obj)[(global_name(scene, key.name), "A")] == {"192.0.2.10", "198.51.100.20"}


def test_a_deleted_intent_takes_its_dns_endpoint_but_not_a_foreign_one_of_the_same_name(scene: Scene) -> None:
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


def test_a_domain_is_found_in_the_domain_namespace_and_a_missing_one_is_reported(scene: Scene) -> None:
    shared, missing = scene.intent(unique("web"), domainRef="shared"), scene.intent(unique("web"), domainRef="none")
    scene.caches.domains[("fleetdns-system", "shared")] = Domain("fleetdns-system", "shared", "shared.example.net")
    scene.reconciler.reconcile(shared)
    scene.reconciler.reconcile(missing)

    assert (f"{shared.name}.{scene.ns}.shared.svc.shared.example.net", "A") in records(
        dns_endpoint(scene.host, scene.ns, f"service-{shared.name}"))
    ready = condition(intent(scene.host, scene.ns, "servicednsrecords", missing.name), "Ready")
    assert ready["reason"] == "DomainNotFound" and f"{scene.ns} or fleetdns-system" in ready["message"]
    assert records(dns_endpoint(scene.host, scene.ns, f"service-{missing.name}")) == {}


def test_a_replica_that_may_not_write_writes_nothing(scene: Scene) -> None:
    key = scene.intent(unique("web"))
    fenced = Reconciler(scene.caches, scene.host.fenced(lambda: False), scene.metrics, "standby", "fleetdns-system")
    with pytest.raises(NotLeaderError):
        fenced.reconcile(key)
    assert dns_endpoint(scene.host, scene.ns, f"service-{key.name}") is None
    assert "status" not in intent(scene.host, scene.ns, "servicednsrecords", key.name)


def test_condition_counts_follow_the_last_results(scene: Scene) -> None:
    healthy, down = scene.intent(unique("web")), scene.intent(unique("web"))
    for member in (scene.east, scene.west):
        member.ready[(scene.ns, down.name)] = 0
    scene.reconciler.reconcile(healthy)
    scene.reconciler.reconcile(down)
    counts = scene.reconciler.condition_counts()
    assert counts[(str(IntentKind.SERVICE), "Ready", "True")] == 1
    assert counts[(str(IntentKind.SERVICE), "Ready", "False")] == 1
