"""The last stages of a reconcile kept apart: the source lays out the intent's names, the policy answers every one of
them in one call, and render turns the layout and the answers into records without asking the policy again."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

import aggregator.plan
from aggregator.health.readiness import MemberView, Reachability
from aggregator.model import (
    ClusterStatus,
    Domain,
    IntentStatus,
    LoadBalancerAddress,
    MemberCluster,
    Policy,
    SecretKeyRef,
)
from aggregator.plan import Member, Observed, plan
from aggregator.policy.loadbalancing import NameAnswer, Pick, Selector, Slot, ViewPick
from aggregator.policy.proximity import Locality, View
from aggregator.registry.domains import DomainLookup
from aggregator.render.records import Layout, render_records
from aggregator.sources.base import Source, desired
from aggregator.sources.gateway.source import GatewaySource, parse_gateway_intent
from aggregator.sources.ingress import IngressSource, parse_ingress_intent
from aggregator.sources.intent import Intent
from aggregator.sources.openshift_route import RouteSource, parse_route_intent
from aggregator.sources.service import ServiceSource, parse_service_intent
from fleetdns.apipaths import GATEWAY_DNS_RECORDS, INGRESS_DNS_RECORDS, ROUTE_DNS_RECORDS, SERVICE_DNS_RECORDS
from fleetdns.dnsview import Location
from fleetdns.endpoint import Endpoint
from tests.support.fakes import Member as FakeMember

pytestmark = pytest.mark.unit
IPS = {"east": "198.18.1.1", "east-b": "198.18.1.2", "west": "198.18.2.1"}
REGIONS = {"east": "us-east", "east-b": "us-east", "west": "us-west"}
ZONES = {"east": "us-east-1a", "east-b": "us-east-1b", "west": "us-west-1a"}
PREFIX = "web.shop.fleet.svc"
DOMAINS = DomainLookup("fleetdns-system", {("shop", "fleet"): Domain("shop", "fleet", "example.com")})
EUROPE = View("europe", Location(51.5072, -0.1276))  # London: the east coast is nearer than the west
NEAR_EAST = Locality((EUROPE,), {"east": Location(40.7128, -74.0060), "east-b": Location(40.7357, -74.1724),
                                 "west": Location(37.7749, -122.4194)})


def entry(name: str, healthy: bool = True, hosts: tuple[str, ...] = ()) -> ClusterStatus:
    return ClusterStatus(name, REGIONS[name], ZONES[name], (LoadBalancerAddress(ip=IPS[name]),), healthy,
                         "ReadyEndpoints: 1 ready" if healthy else "NoReadyEndpoints: 0 ready", hosts=hosts)


def shown(records: list[Endpoint]) -> list[tuple[str, str, tuple[str, ...], str]]:
    return [(e.dns_name, e.record_type, e.targets, e.set_identifier) for e in records]


def spec_of(policy: Policy, **spec: Any) -> dict[str, Any]:
    return {"loadBalancing": {"policy": str(policy)}, "recordTTL": 30, **spec}


def member(name: str) -> Member:
    cluster = MemberCluster(name, REGIONS[name], ZONES[name], SecretKeyRef("fleetdns-system", name))
    objects = FakeMember(cluster)
    objects.serve("shop", "web", IPS[name])
    return Member(MemberView(cluster, Reachability.CONNECTED), objects)


class OneCallSelector(Selector):
    """A Selector that records each ``answer_all`` and refuses to be asked anything after it."""

    calls: list[list[str]] = []

    def answer_all(self, slots: Iterable[Slot]) -> dict[str, NameAnswer]:
        slots = tuple(slots)
        self.calls.append([slot.name for slot in slots])
        answers = super().answer_all(slots)
        self.answered = True
        return answers

    def pick(self, candidates: Iterable[ClusterStatus]) -> Pick:
        assert not getattr(self, "answered", False), "the policy was asked again after it answered every name"
        return super().pick(candidates)

    def pick_views(self, candidates: Iterable[ClusterStatus]) -> tuple[ViewPick, ...]:
        assert not getattr(self, "answered", False), "the policy was asked again after it answered every name"
        return super().pick_views(candidates)


def test_the_policy_answers_every_name_of_a_reconcile_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aggregator.plan, "Selector", OneCallSelector)
    OneCallSelector.calls = []
    intent = parse_service_intent(SERVICE_DNS_RECORDS.manifest("web", "shop", spec=spec_of(
        Policy.GEO_PROXIMITY, domainRef="fleet")))
    result = plan(ServiceSource(), intent, IntentStatus(), Observed(
        (member("east"), member("east-b"), member("west")), DOMAINS, locality=NEAR_EAST))
    assert OneCallSelector.calls == [[f"{PREFIX}.{name}example.com" for name in (
        "", "us-east.", "us-east-1a.us-east.", "us-east-1b.us-east.", "us-west.", "us-west-1a.us-west.")]]
    assert (f"{PREFIX}.example.com", "A", (IPS["east"], IPS["east-b"]), "europe") in shown(result.endpoints)


def test_render_turns_a_layout_and_its_answers_into_records_without_a_policy() -> None:
    east, west = entry("east"), entry("west", healthy=False)
    layout = Layout((Slot("a.example.com", (east, west)), Slot("a.us-west.example.com", (west,), per_view=False)),
                    {"a.us-west.example.com": "a.example.com"}, (("www.example.com", "a.example.com"),),
                    anchor="a.example.com")
    answers = {"a.example.com": NameAnswer(Pick((east,))), "a.us-west.example.com": NameAnswer(Pick())}
    assert shown(render_records(layout, answers, 30)) == [
        ("a.example.com", "A", (IPS["east"],), ""),
        ("a.us-west.example.com", "CNAME", ("a.example.com",), ""),
        ("www.example.com", "CNAME", ("a.example.com",), ""),
    ]
    nothing = {"a.example.com": NameAnswer(Pick()), "a.us-west.example.com": NameAnswer(Pick())}
    assert render_records(layout, nothing, 30) == []  # no global answer: not even the CNAMEs


def stages(source: Source[Any], intent: Intent, clusters: tuple[ClusterStatus, ...],
           locality: Locality | None = None) -> list[tuple[str, str, tuple[str, ...], str]]:
    """plan.py's last stages, each on its own; ``Source.render`` (their composition) must give the same."""
    selector = Selector(intent.load_balancing, clusters, locality=locality)
    layout = source.layout(intent, clusters, DOMAINS)
    records = desired(layout, clusters, render_records(layout, selector.answer_all(layout.slots), intent.record_ttl))
    assert records == source.render(intent, clusters, DOMAINS, selector)
    return shown(records.endpoints)


def test_a_service_gets_kubefeds_names_with_their_fallbacks_and_views_on_the_global_name_only() -> None:
    intent = parse_service_intent(SERVICE_DNS_RECORDS.manifest("web", "shop", spec=spec_of(
        Policy.GEO_PROXIMITY, domainRef="fleet", dnsPrefix="www")))
    clusters = (entry("east"), entry("east-b"), entry("west", healthy=False))
    assert stages(ServiceSource(), intent, clusters, NEAR_EAST) == [
        (f"{PREFIX}.example.com", "A", (IPS["east"], IPS["east-b"]), ""),
        (f"{PREFIX}.example.com", "A", (IPS["east"], IPS["east-b"]), "europe"),
        (f"{PREFIX}.us-east-1a.us-east.example.com", "A", (IPS["east"],), ""),
        (f"{PREFIX}.us-east-1b.us-east.example.com", "A", (IPS["east-b"],), ""),
        (f"{PREFIX}.us-east.example.com", "A", (IPS["east"], IPS["east-b"]), ""),
        (f"{PREFIX}.us-west-1a.us-west.example.com", "CNAME", (f"{PREFIX}.us-west.example.com",), ""),
        (f"{PREFIX}.us-west.example.com", "CNAME", (f"{PREFIX}.example.com",), ""),
        ("www.example.com", "CNAME", (f"{PREFIX}.example.com",), ""),
    ]


def test_an_ingress_gets_one_answer_per_host_and_view() -> None:
    intent = parse_ingress_intent(INGRESS_DNS_RECORDS.manifest("web", "shop", spec=spec_of(
        Policy.GEO_PROXIMITY, hosts=["b.example.org", "a.example.org"])))
    assert stages(IngressSource(), intent, (entry("east"), entry("west")), NEAR_EAST) == [
        ("a.example.org", "A", (IPS["east"], IPS["west"]), ""),
        ("a.example.org", "A", (IPS["east"],), "europe"),
        ("b.example.org", "A", (IPS["east"], IPS["west"]), ""),
        ("b.example.org", "A", (IPS["east"],), "europe"),
    ]


@pytest.mark.parametrize("source, intent", [
    (GatewaySource(), parse_gateway_intent(GATEWAY_DNS_RECORDS.manifest("web", "shop", spec=spec_of(
        Policy.FAILOVER, domainRef="fleet") | {"loadBalancing": {"policy": "Failover",
                                                                   "failoverOrder": ["us-west", "us-east"]}}))),
    (RouteSource(), parse_route_intent(ROUTE_DNS_RECORDS.manifest("web", "shop", spec=spec_of(
        Policy.FAILOVER, domainRef="fleet") | {"loadBalancing": {"policy": "Failover",
                                                                   "failoverOrder": ["us-west", "us-east"]}}))),
], ids=["gateway", "route"])
def test_a_served_name_is_answered_among_the_clusters_that_serve_it(source: Source[Any], intent: Intent) -> None:
    clusters = (entry("east", hosts=("a.example.com", "b.example.com")), entry("west", hosts=("b.example.com",)))
    assert stages(source, intent, clusters) == [
        ("a.example.com", "A", (IPS["east"],), ""),  # west comes first in failoverOrder, but does not serve it
        ("b.example.com", "A", (IPS["west"],), ""),
    ]


def test_a_region_name_that_cannot_be_published_is_refused_once_the_global_name_answers() -> None:
    long_region, zone = "r" * 60, f"{'d' * 60}.{'e' * 60}.{'f' * 50}.Example.com."  # the global name fits, not more
    domains = DomainLookup("fleetdns-system", {("shop", "fleet"): Domain("shop", "fleet", zone)})
    intent = parse_service_intent(SERVICE_DNS_RECORDS.manifest("web", "shop", spec=spec_of(
        Policy.ROUND_ROBIN, domainRef="fleet")))
    far = ClusterStatus("far", long_region, "z", (LoadBalancerAddress(ip=IPS["west"]),), True, "ReadyEndpoints: 1")
    layout = ServiceSource().layout(intent, (far,), domains)
    assert layout.problem is not None and layout.problem.once_answered and layout.problem.zone == zone
    refused = ServiceSource().render(intent, (far,), domains)
    assert refused.endpoints == [] and (refused.outcome.problem, refused.outcome.fqdn) == ("InvalidName", "")
    assert long_region in refused.outcome.problem_message
    down = ServiceSource().render(intent, (ClusterStatus("far", long_region, "z", (), False, "NoAddress"),), domains)
    assert down.outcome.problem == "" and down.endpoints == [] and down.outcome.fqdn.startswith(PREFIX)
