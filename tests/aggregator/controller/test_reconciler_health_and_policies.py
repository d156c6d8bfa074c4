"""Health checks and policies through one reconciler: its reads come from in-memory caches (members, and the
probers' reports and Leases as the engine indexes them), its writes go to a real kube-apiserver, and every
assertion is on what ends up there: the DNSEndpoint, the status a user reads, the Events."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from aggregator.controller.reconciler import Reconciler
from aggregator.health.quorum import Freshness, ReportIndex, Votes
from aggregator.model import IntentKey
from aggregator.sources.service import parse_service_intent
from fleetdns.healthreport import DownEntry, HealthReport, ProberLease, intent_ref
from fleetdns.weights import WEIGHTS_PROPERTY
from prober.targets import parse_intent
from rig import Fleet
from tests.support.aggregator import condition, dns_endpoint, events_for, intent, records, unique
from tests.support.fakes import Caches
from tests.support.probers import CHECK, down_entry
from tests.support.world import ReconcilerScene

pytestmark = pytest.mark.apiserver
EAST_VIP, WEST_VIP = "192.0.2.10", "198.51.100.20"
REGIONS = ("r1", "r2", "r3")


@dataclass
class VotingCaches(Caches):
    """The engine's caches plus the probers' side, held by the same quorum classes the engine uses."""

    reports: ReportIndex = field(default_factory=ReportIndex)
    freshness: Freshness = field(default_factory=lambda: Freshness(10.0))

    def votes(self, key: IntentKey) -> Votes:
        return Votes(self.freshness.fresh(), self.freshness.regions(),
                     self.reports.down((key.namespace, intent_ref(str(key.kind), key.name))))


class PolicyScene(ReconcilerScene):
    def __init__(self, fleet: Fleet) -> None:
        super().__init__(fleet)
        self.caches = VotingCaches(member_list=[self.east, self.west], domains=self.caches.domains)
        self.reconciler = Reconciler(self.caches, self.host, self.metrics, "test-reconciler", "fleetdns-system",
                                     events=self.events)
        self._reports: dict[tuple[str, str], HealthReport] = {}
        for region in REGIONS:
            self.caches.freshness.observe(ProberLease(region, f"prober-{region}", "t0"))

    def report(self, region: str, cluster: str, *down: DownEntry) -> None:
        """What a region's prober writes for one member cluster (replacing its previous report)."""
        new = HealthReport(self.ns, region, cluster, down)
        self.caches.reports.apply(self._reports.get((region, cluster)), new)
        self._reports[(region, cluster)] = new

    def down(self, key: IntentKey, address: str, message: str = "HTTP 500") -> DownEntry:
        return down_entry(str(key.kind), key.name, self.global_name(key.name), address, message)

    def stored(self, key: IntentKey) -> dict[str, Any]:
        return intent(self.host, self.ns, "servicednsrecords", key.name)

    def answer(self, key: IntentKey) -> set[str]:
        return records(dns_endpoint(self.host, self.ns, f"service-{key.name}")).get((self.global_name(key.name),
                                                                                      "A"), set())

    def settle(self, key: IntentKey) -> None:
        """Reconcile, let the watch deliver the writes, and reconcile again (which must write nothing more)."""
        self.reconciler.reconcile(key)
        self.watch_catches_up(key)
        self.caches.intents[key] = parse_service_intent(self.stored(key))
        self.reconciler.forget_writes()  # compare with what the API server holds: it must read back as written
        before = (self.written("update"), self.status_writes())
        self.reconciler.reconcile(key)
        assert (self.written("update"), self.status_writes()) == before, "a second reconcile wrote again"


@pytest.fixture
def scene(fleet: Fleet) -> Iterator[PolicyScene]:
    yield PolicyScene(fleet)


def test_two_of_three_regions_down_withdraw_the_address_and_one_of_three_moves_nothing(scene: PolicyScene) -> None:
    key = scene.intent(unique("web"), healthCheck=CHECK)
    scene.report("r1", "east", scene.down(key, EAST_VIP, "connect timeout after 1s"))
    scene.settle(key)
    assert scene.answer(key) == {EAST_VIP, WEST_VIP}
    east = next(d for d in scene.stored(key)["status"]["dns"] if d["cluster"] == "east")
    assert east["healthy"] and east["healthCheck"]["verdict"] == "Up"
    assert [(r["region"], r["state"], r.get("message"), r["fresh"]) for r in east["healthCheck"]["regions"]] == [
        ("r1", "Down", "connect timeout after 1s", True), ("r2", "Up", None, True), ("r3", "Up", None, True)]

    scene.report("r2", "east", scene.down(key, EAST_VIP))
    scene.settle(key)
    assert scene.answer(key) == {WEST_VIP}
    stored = scene.stored(key)
    east = next(d for d in stored["status"]["dns"] if d["cluster"] == "east")
    assert not east["healthy"] and east["reason"] == "HealthCheckFailed: Down from 2 of 3 regions"
    assert east["healthCheck"]["verdict"] == "Down" and east["healthCheck"]["downAddresses"] == [EAST_VIP]
    assert "east: HealthCheckFailed" in condition(stored, "Degraded")["message"]
    assert scene.events.flush(timeout=10)
    left = [e for e in events_for(scene.host, scene.ns, key.name) if e["reason"] == "ClusterLeft"]
    assert "east (HealthCheckFailed: Down from 2 of 3 regions)" in left[0]["message"]


def test_a_report_for_an_older_check_definition_is_ignored(scene: PolicyScene) -> None:
    key = scene.intent(unique("web"), healthCheck=CHECK)
    stale = DownEntry(intent_ref(str(key.kind), key.name), EAST_VIP, "0123456789ab", "t", "HTTP 500")
    for region in REGIONS:
        scene.report(region, "east", stale)
    scene.settle(key)
    assert scene.answer(key) == {EAST_VIP, WEST_VIP}


def test_an_intent_without_a_health_check_ignores_the_reports(scene: PolicyScene) -> None:
    key = scene.intent(unique("web"))
    for region in REGIONS:
        scene.report(region, "east", scene.down(key, EAST_VIP))
    scene.settle(key)
    assert scene.answer(key) == {EAST_VIP, WEST_VIP}
    assert all("healthCheck" not in d for d in scene.stored(key)["status"]["dns"])


def test_weighted_publishes_webhook_weights_and_the_answer_in_status(scene: PolicyScene) -> None:
    key = scene.intent(unique("web"), loadBalancing={"policy": "Weighted", "weights": [
        {"target": "east", "weight": 80}, {"target": "west", "weight": 20}]})
    scene.settle(key)
    endpoint = next(e for e in dns_endpoint(scene.host, scene.ns, f"service-{key.name}")["spec"]["endpoints"]
                    if e["dnsName"] == scene.global_name(key.name))
    assert endpoint["providerSpecific"] == [{"name": WEIGHTS_PROPERTY, "value": f"{EAST_VIP}=255,{WEST_VIP}=64"}]
    stored = scene.stored(key)
    assert stored["status"]["answers"] == [{
        "view": "", "policy": "Weighted",
        "reason": "clusters with weight above 0 answer in proportion to their weights",
        "clusters": [{"cluster": "east", "addresses": [EAST_VIP], "weight": 255},
                     {"cluster": "west", "addresses": [WEST_VIP], "weight": 64}]}]
    assert condition(stored, "LoadBalancing")["status"] == "True"


def test_targets_naming_nothing_are_reported_on_the_load_balancing_condition(scene: PolicyScene) -> None:
    key = scene.intent(unique("web"), loadBalancing={"policy": "Failover", "failoverOrder": ["mars", "west"]})
    scene.settle(key)
    assert scene.answer(key) == {WEST_VIP}
    lb = condition(scene.stored(key), "LoadBalancing")
    assert (lb["status"], lb["reason"]) == ("False", "UnknownTargets") and "mars" in lb["message"]


def test_failover_moves_the_answer_when_the_first_target_fails_its_checks_and_back(scene: PolicyScene) -> None:
    key = scene.intent(unique("web"), healthCheck=CHECK,
                       loadBalancing={"policy": "Failover", "failoverOrder": ["east", "west"]})
    scene.settle(key)
    assert scene.answer(key) == {EAST_VIP}
    for region in ("r1", "r2"):
        scene.report(region, "east", scene.down(key, EAST_VIP))
    scene.settle(key)
    assert scene.answer(key) == {WEST_VIP}
    for region in ("r1", "r2"):
        scene.report(region, "east")
    scene.settle(key)
    assert scene.answer(key) == {EAST_VIP}
    assert scene.events.flush(timeout=10)
    moved = {e["type"]: e["message"] for e in events_for(scene.host, scene.ns, key.name)
             if e["reason"] == "AnswerMoved"}
    assert moved["Warning"].startswith("answer moved from east to west: west: first target in failoverOrder")
    assert moved["Normal"].startswith("answer moved from west to east")


def test_all_down_keeps_the_last_healthy_set_through_a_restart(scene: PolicyScene) -> None:
    key = scene.intent(unique("web"), healthCheck=CHECK)
    scene.settle(key)
    for region in REGIONS:
        scene.report(region, "east", scene.down(key, EAST_VIP))
        scene.report(region, "west", scene.down(key, WEST_VIP))
    scene.settle(key)
    assert scene.answer(key) == {EAST_VIP, WEST_VIP}  # the last healthy set, not an empty answer
    stored = scene.stored(key)
    assert condition(stored, "FailOpen")["status"] == "True"
    assert condition(stored, "FailOpen")["message"].endswith("still answers: east, west")
    assert condition(stored, "Ready")["status"] == "False"
    assert all(d["reason"] == "HealthCheckFailed: Down from 3 of 3 regions" for d in stored["status"]["dns"])
    # What the quorum withdrew stays listed (downAddresses says which), so the probers keep checking it and can
    # see it recover: the status they read still names every address and the Host.
    assert [d["healthCheck"]["downAddresses"] for d in stored["status"]["dns"]] == [[EAST_VIP], [WEST_VIP]]
    probed = parse_intent("ServiceDNSRecord", stored)
    assert probed.check is not None and probed.check.http_get is not None
    assert probed.check.http_get.host == scene.global_name(key.name)
    assert [(c.cluster, c.addresses) for c in probed.clusters] == [("east", (EAST_VIP,)), ("west", (WEST_VIP,))]
    assert scene.events.flush(timeout=10)
    fail_open = [e for e in events_for(scene.host, scene.ns, key.name) if e["reason"] == "FailOpen"]
    assert len(fail_open) == 1 and fail_open[0]["type"] == "Warning" and "east, west" in fail_open[0]["message"]

    # A new leader (or a restarted aggregator) knows the last healthy set from the status alone.
    writes = (scene.written("update"), scene.status_writes())
    restarted = Reconciler(scene.caches, scene.host, scene.metrics, "new-leader", "fleetdns-system",
                           events=scene.events)
    restarted.reconcile(key)
    assert scene.answer(key) == {EAST_VIP, WEST_VIP} and (scene.written("update"), scene.status_writes()) == writes

    scene.west.services.pop((scene.ns, key.name))  # west's Service is deleted: it leaves the kept set
    restarted.reconcile(key)
    assert scene.answer(key) == {EAST_VIP}
    assert condition(scene.stored(key), "FailOpen")["message"].endswith("still answers: east")


def test_fail_open_applies_to_intents_without_health_checks_too(scene: PolicyScene) -> None:
    key = scene.intent(unique("web"))
    scene.settle(key)
    for member in (scene.east, scene.west):
        member.ready[(scene.ns, key.name)] = 0
    scene.settle(key)
    assert scene.answer(key) == {EAST_VIP, WEST_VIP}
    assert condition(scene.stored(key), "FailOpen")["status"] == "True"
    scene.east.ready[(scene.ns, key.name)] = 1
    scene.settle(key)
    assert scene.answer(key) == {EAST_VIP} and condition(scene.stored(key), "FailOpen")["status"] == "False"
