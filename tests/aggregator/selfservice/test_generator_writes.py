"""The intent generator on its own: members are in-memory stand-ins for the member caches (reachable or not, read
since start-up or not), the generated intents are written to a real kube-apiserver and watched back from it, and
every assertion is on what the host holds. One generator run is one ``sync`` of one intent, called directly."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from aggregator.health.readiness import Reachability
from aggregator.metrics import AggregatorMetrics
from aggregator.model import IntentKey, IntentKind, MemberCluster, SecretKeyRef
from aggregator.render.events import InvolvedObject
from aggregator.selfservice.generator import Generator
from aggregator.sources import SOURCES
from aggregator.sources.intent import InvalidIntent
from aggregator.sources.service import ServiceIntent, parse_service_intent
from fleetdns.apipaths import SERVICE_DNS_RECORDS
from fleetdns.kubeapi import KubeClient, KubeError, NotLeaderError
from rig import Fleet
from tests.support.aggregator import new_namespace, prepare_fleet, unique, wait_for
from tests.support.fakes import Member

pytestmark = pytest.mark.apiserver
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z"


@dataclass
class Inputs:
    """The engine as the generator reads it; intents are read from the real host."""

    host: KubeClient
    member_list: list[Member]

    def members(self) -> Sequence[Member]:
        return self.member_list

    def intent(self, key: IntentKey) -> ServiceIntent | InvalidIntent | None:
        try:
            return parse_service_intent(self.host.get(SERVICE_DNS_RECORDS.path(key.namespace, key.name)))
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def ready(self) -> tuple[bool, str]:
        return True, "leader"

    def may_write(self) -> bool:
        return True

    def requeue(self, keys: Iterable[IntentKey]) -> None:
        pass


@dataclass
class Events:
    """The events handed to the recorder."""

    recorded: list[tuple[str, str, str]] = field(default_factory=list)

    def record(self, involved: InvolvedObject, kind: str, reason: str, message: str) -> None:
        self.recorded.append((kind, reason, message))


class Scene:
    def __init__(self, fleet: Fleet) -> None:
        self.host = prepare_fleet(fleet)
        self.ns = new_namespace(fleet, "generator")
        self.east = Member(MemberCluster("east", "east", "east-1a", SecretKeyRef("fleetdns-system", "east")))
        self.west = Member(MemberCluster("west", "west", "west-1a", SecretKeyRef("fleetdns-system", "west")))
        self.events = Events()
        self.metrics = AggregatorMetrics()
        self.generators: list[Generator] = []

    def generator(self, host: KubeClient | None = None) -> Generator:
        """A fresh generator (a new process: no memory of earlier claims) whose caches of generated intents have
        listed."""
        generator = Generator(Inputs(self.host, [self.east, self.west]), host or self.host, SOURCES, self.metrics,
                              self.events, self.ns, "fleet")
        for informer in generator.informers.values():
            informer.start()
        wait_for(generator.listed, what="generated intents listed")
        self.generators.append(generator)
        return generator

    def intent(self, name: str) -> dict[str, Any] | None:
        try:
            return self.host.get(SERVICE_DNS_RECORDS.path(self.ns, name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def seen(self, generator: Generator, name: str, version: str) -> None:
        """Until the generator's cache holds the intent at ``version`` (its watch caught up)."""
        informer = generator.informers[IntentKind.SERVICE]
        wait_for(lambda: (i := informer.store.get(f"{self.ns}/{name}")) is not None and i.resource_version == version,
                 what="the generated intent in the generator's cache")


@pytest.fixture
def scene(fleet: Fleet) -> Iterator[Scene]:
    scene = Scene(fleet)
    yield scene
    for generator in scene.generators:
        generator.stop()


def clusters_of(obj: dict[str, Any] | None) -> str | None:
    return None if obj is None else obj["metadata"]["annotations"]["fleetdns.io/source-clusters"]


GLOBAL = {"fleetdns.io/global": "true"}


def test_an_unreachable_members_last_claims_stand_until_it_answers_again(scene: Scene) -> None:
    name = unique("away")
    key = IntentKey(IntentKind.SERVICE, scene.ns, name)
    scene.east.annotate(scene.ns, name, GLOBAL, T0)
    scene.west.annotate(scene.ns, name, GLOBAL, T1)
    generator = scene.generator()
    generator.sync(key)
    assert clusters_of(scene.intent(name)) == "east,west"

    # west stops answering past its grace period; east's team removes the annotation meanwhile
    scene.west.reachability = Reachability.LOST
    scene.west.services.clear()  # whatever its cache holds is not read any more
    scene.east.annotate(scene.ns, name, {}, T0)
    generator.sync(key)
    obj = scene.intent(name)
    assert clusters_of(obj) == "west", "west's last claim must keep the intent"

    # west answers again, without the annotation: nobody claims the intent any more
    assert obj is not None
    scene.seen(generator, name, obj["metadata"]["resourceVersion"])
    scene.west.reachability = Reachability.CONNECTED
    generator.sync(key)
    assert scene.intent(name) is None


def test_after_a_restart_a_member_not_read_yet_holds_the_intents_it_contributed_to(scene: Scene) -> None:
    name = unique("restart")
    key = IntentKey(IntentKind.SERVICE, scene.ns, name)
    scene.west.annotate(scene.ns, name, GLOBAL | {"fleetdns.io/ttl": "60"}, T0)
    scene.east.annotate(scene.ns, name, GLOBAL | {"fleetdns.io/ttl": "60"}, T1)
    scene.generator().sync(key)
    before = scene.intent(name)
    assert before is not None and clusters_of(before) == "east,west"

    # A new process: west not reached yet (its cache is cold), east read without the annotation, then with another TTL
    scene.west.reachability = Reachability.CONNECTING
    scene.east.annotate(scene.ns, name, {}, T1)
    generator = scene.generator()
    generator.sync(key)
    scene.east.annotate(scene.ns, name, GLOBAL | {"fleetdns.io/ttl": "90"}, T1)
    generator.sync(key)
    held = scene.intent(name)
    assert held is not None and held["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    # west is read: its older object decides again, and east's newer value is a conflict
    scene.west.reachability = Reachability.CONNECTED
    generator.sync(key)
    after = scene.intent(name)
    assert after is not None and after["spec"]["recordTTL"] == 60
    assert after["metadata"]["annotations"]["fleetdns.io/conflicts"] == (
        "fleetdns.io/ttl: west=60 (oldest, used), east=90")


def test_a_request_turned_invalid_holds_the_intent_and_is_reported_once(scene: Scene) -> None:
    name = unique("invalid")
    key = IntentKey(IntentKind.SERVICE, scene.ns, name)
    scene.east.annotate(scene.ns, name, GLOBAL | {"fleetdns.io/ttl": "60"}, T0)
    generator = scene.generator()
    generator.sync(key)
    created = scene.intent(name)
    assert created is not None
    scene.seen(generator, name, created["metadata"]["resourceVersion"])

    scene.east.annotate(scene.ns, name, GLOBAL | {"fleetdns.io/ttl": "soon"}, T0)
    for _ in range(3):
        generator.sync(key)
    held = scene.intent(name)
    assert held is not None and held["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    refused = [e for e in scene.events.recorded if e[1] == "InvalidSelfService"]
    assert len(refused) == 1 and refused[0][0] == "Warning"
    assert "east Service" in refused[0][2] and "fleetdns.io/ttl: 'soon'" in refused[0][2]

    scene.east.annotate(scene.ns, name, GLOBAL | {"fleetdns.io/ttl": "45"}, T0)
    generator.sync(key)
    fixed = scene.intent(name)
    assert fixed is not None and fixed["spec"]["recordTTL"] == 45
    assert len([e for e in scene.events.recorded if e[1] == "InvalidSelfService"]) == 1


def test_a_replica_that_does_not_lead_writes_nothing(scene: Scene) -> None:
    name = unique("standby")
    scene.east.annotate(scene.ns, name, GLOBAL, T0)
    generator = scene.generator(scene.host.fenced(lambda: False))
    with pytest.raises(NotLeaderError):
        generator.sync(IntentKey(IntentKind.SERVICE, scene.ns, name))
    assert scene.intent(name) is None
