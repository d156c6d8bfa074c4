"""The Gateway API source's pure parts: the GatewayDNSRecord, a cluster's entry (names, accepted parents' addresses,
AnyBackend / AllBackends and the reasons), the index from member changes to intents, and the records per name."""

from __future__ import annotations

from typing import Any

import pytest

from aggregator.health.readiness import KindProblem, Reachability
from aggregator.model import ClusterStatus, IntentKey, IntentKind, LoadBalancerAddress, ParseError
from aggregator.sources import build_sources
from aggregator.sources.gateway.objects import Gateway, Listener, RouteKind, parse_gateway, parse_route
from aggregator.sources.gateway.source import (
    GATEWAY_MEMBER_KIND,
    ROUTE_MEMBER_KINDS,
    GatewayIntent,
    GatewaySource,
    GatewayView,
    ServiceHealthPolicy,
    evaluate_gateway_cluster,
    parse_gateway_intent,
)
from aggregator.sources.request import AppRequest, RequestError
from fleetdns.apipaths import GATEWAY_DNS_RECORDS, GATEWAYS, HTTP_ROUTES
from prober.targets import parse_intent as parse_prober_intent
from tests.support.fakes import Domains
from tests.support.model import EAST, WEST, by_name, serving

pytestmark = pytest.mark.unit
GW = Gateway("shop", "gw", (Listener("http", 80, "HTTP", "*.example.com"),), (LoadBalancerAddress(ip="192.0.2.10"),))


def intent(**spec: Any) -> GatewayIntent:
    return parse_gateway_intent(GATEWAY_DNS_RECORDS.manifest("web", "shop", spec=spec))


def route(hostnames: tuple[str, ...] = ("shop.example.com",), accepted: str = "True",
          backends: tuple[str, ...] = ("web",), kind: RouteKind = RouteKind.HTTP) -> Any:
    return parse_route(kind, {
        "metadata": {"namespace": "shop", "name": "web"},
        "spec": {"hostnames": list(hostnames), "parentRefs": [{"name": "gw"}],
                 "rules": [{"backendRefs": [{"name": b, "port": 80} for b in backends]}]},
        "status": {"parents": [{"parentRef": {"name": "gw"}, "controllerName": "example.com/gw",
                                "conditions": [{"type": "Accepted", "status": accepted, "reason": "NotAllowed"}]}]}})


def entry(spec: dict[str, Any] | None = None, ready: dict[str, int] | None = None, gateway: Gateway | None = GW,
          **fields: Any) -> ClusterStatus | None:
    gateways = {("shop", "gw"): gateway} if gateway is not None else {}
    readiness = {("shop", name): count for name, count in (ready if ready is not None else {"web": 1}).items()}
    fields.setdefault("route", route())
    return evaluate_gateway_cluster(intent(**(spec or {})), GatewayView(
        EAST, Reachability.CONNECTED, gateways=gateways, backend_ready=readiness, **fields))


# --- the intent ----------------------------------------------------------------------------------

def test_an_intent_defaults_to_http_routes_and_any_backend() -> None:
    parsed = intent()
    assert parsed.route_kind is RouteKind.HTTP and parsed.service_health_policy is ServiceHealthPolicy.ANY
    assert parsed.key == IntentKey(IntentKind.GATEWAY, "shop", "web") and parsed.hosts == ()
    parsed = intent(routeKind="TCPRoute", hosts=["DB.Example.com."], serviceHealthPolicy="AllBackends",
                    domainRef="fleet", recordTTL=60)
    assert parsed.route_kind is RouteKind.TCP and parsed.hosts == ("db.example.com",)
    assert parsed.service_health_policy is ServiceHealthPolicy.ALL and parsed.domain_ref == "fleet"
    assert parsed.record_ttl == 60


@pytest.mark.parametrize(("spec", "message"), [
    ({"routeKind": "UDPRoute"}, "spec.hosts is required for routeKind UDPRoute"),
    ({"routeKind": "Ingress"}, "spec.routeKind must be one of HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute"),
    ({"serviceHealthPolicy": "Most"}, "spec.serviceHealthPolicy must be one of AnyBackend, AllBackends"),
    ({"recordTTL": "30"}, "spec.recordTTL must be an integer"),
])
def test_an_intent_that_cannot_be_read_names_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ParseError, match=message):
        intent(**spec)
    invalid = GatewaySource().read_intent(GATEWAY_DNS_RECORDS.manifest("web", "shop", spec=spec))
    assert message in getattr(invalid, "problem", "")


def test_the_source_is_registered_with_gateways_and_every_route_kind_optional() -> None:
    source = build_sources().for_kind(IntentKind.GATEWAY)
    assert isinstance(source, GatewaySource) and source.dns_endpoint_name("web") == "gateway-web"
    kinds = {kind.resource: kind for kind in build_sources().member_kinds()}
    assert not kinds[GATEWAYS].required and not kinds[HTTP_ROUTES].required
    assert {kind.resource for kind in ROUTE_MEMBER_KINDS.values()} <= set(kinds)


# --- one cluster ---------------------------------------------------------------------------------

def test_a_route_accepted_by_its_gateway_is_healthy_over_the_gateways_addresses_with_its_names() -> None:
    found = entry()
    assert found is not None and found.healthy
    assert found.addresses == (LoadBalancerAddress(ip="192.0.2.10"),) and found.hosts == ("shop.example.com",)
    assert found.reason == "ReadyEndpoints: backend web"


def test_a_route_its_gateway_did_not_accept_is_listed_without_targets_saying_why() -> None:
    found = entry(route=route(accepted="False"))
    assert found is not None and not found.healthy and found.addresses == () and found.hosts == ()
    assert found.reason.startswith("NotAccepted: parent shop/gw has not accepted the route (Accepted=False, NotAllowed")


def test_wildcard_names_are_reported_in_the_reason_and_not_published() -> None:
    found = entry(route=route(hostnames=("*.shop.example.com", "shop.example.com")))
    assert found is not None and found.healthy and found.hosts == ("shop.example.com",)
    assert "not published: *.shop.example.com (wildcard: list the names in spec.hosts)" in found.reason
    only_wildcards = entry(route=route(hostnames=("*.shop.example.com",)))
    assert only_wildcards is not None and not only_wildcards.healthy and only_wildcards.hosts == ()
    assert only_wildcards.reason.startswith("NoHostnames: nothing to publish; not published: *.shop.example.com")
    listed = entry({"hosts": ["a.shop.example.com"]}, route=route(hostnames=("*.shop.example.com",)))
    assert listed is not None and listed.healthy and listed.hosts == ("a.shop.example.com",)


def test_any_backend_needs_one_ready_backend_and_all_backends_needs_every_one() -> None:
    two = route(backends=("web", "api"))
    any_one = entry(route=two, ready={"web": 1, "api": 0})
    assert any_one is not None and any_one.healthy and any_one.reason == "ReadyEndpoints: backend web"
    all_of = entry({"serviceHealthPolicy": "AllBackends"}, route=two, ready={"web": 1, "api": 0})
    assert all_of is not None and not all_of.healthy and all_of.hosts == ("shop.example.com",)
    assert all_of.reason == "NoReadyBackends: no ready endpoint behind api (AllBackends)"
    both = entry({"serviceHealthPolicy": "AllBackends"}, route=two, ready={"web": 1, "api": 2})
    assert both is not None and both.healthy
    none = entry(route=two, ready={})
    assert none is not None and not none.healthy and none.reason == "NoReadyBackends: no ready endpoint behind api, web"
    no_backend = entry(route=route(backends=()))
    assert no_backend is not None and not no_backend.healthy
    assert no_backend.reason == "NoReadyBackends: the route has no backend Service"


def test_an_accepted_gateway_without_addresses_lists_the_cluster_unhealthy() -> None:
    found = entry(gateway=Gateway("shop", "gw", GW.listeners, ()))
    assert found is not None and not found.healthy and found.addresses == ()
    assert found.reason.startswith("NoLoadBalancerAddress: no accepted parent Gateway has status.addresses")


def test_tcp_routes_publish_the_intents_hosts() -> None:
    tcp = route(hostnames=(), kind=RouteKind.TCP)
    gateway = Gateway("shop", "gw", (Listener("db", 5432, "TCP"),), GW.addresses)
    found = entry({"routeKind": "TCPRoute", "hosts": ["db.example.com"]}, route=tcp, gateway=gateway)
    assert found is not None and found.healthy and found.hosts == ("db.example.com",)


def test_a_member_without_the_route_kind_is_not_listed_and_one_that_forbids_it_is() -> None:
    assert entry(route=None, problem=KindProblem("httproutes", 404, "NotFound")) is None
    forbidden = entry(route=None, problem=KindProblem("httproutes", 403, "Forbidden"))
    assert forbidden is not None and forbidden.reason.startswith("KindUnavailable: httproutes")
    assert entry(route=None) is None


# --- index ---------------------------------------------------------------------------------------

def test_the_index_maps_routes_gateways_and_backend_readiness_to_intents() -> None:
    index = GatewaySource().new_index()
    http_kind, key = ROUTE_MEMBER_KINDS[RouteKind.HTTP], IntentKey(IntentKind.GATEWAY, "shop", "web")
    first = route(backends=("web", "api"))
    gateway = parse_gateway({"metadata": {"namespace": "shop", "name": "gw"}})
    assert index.object_changed(GATEWAY_MEMBER_KIND, None, gateway) == []
    assert index.object_changed(http_kind, None, first) == [key]
    assert index.object_changed(GATEWAY_MEMBER_KIND, None, gateway) == [key]
    assert index.readiness_changed(("shop", "api")) == [key]
    other = parse_gateway({"metadata": {"namespace": "shop", "name": "other"}})
    assert index.object_changed(GATEWAY_MEMBER_KIND, None, other) == []

    # a TCPRoute of the same name in the same member keeps its own references
    tcp = route(backends=("db",), kind=RouteKind.TCP)
    assert index.object_changed(ROUTE_MEMBER_KINDS[RouteKind.TCP], None, tcp) == [key]
    second = route(backends=("web",))
    assert index.object_changed(http_kind, first, second) == [key]
    assert index.readiness_changed(("shop", "api")) == []
    assert index.object_changed(http_kind, second, None) == [key]
    assert index.object_changed(GATEWAY_MEMBER_KIND, gateway, None) == [key]  # still the TCPRoute's parent
    assert index.readiness_changed(("shop", "web")) == []
    assert index.readiness_changed(("shop", "db")) == [key]


# --- records --------------------------------------------------------------------------------------

def test_each_name_is_answered_by_the_clusters_whose_route_serves_it_and_the_fqdn_is_the_first() -> None:
    clusters = (serving(EAST, "192.0.2.1", ("a.example.com", "b.example.com")),
                serving(WEST, "198.51.100.1", ("b.example.com",)))
    desired = GatewaySource().render(intent(domainRef="fleet"), clusters, Domains(ref="fleet"))
    assert by_name(desired.endpoints) == {("a.example.com", "A"): ("192.0.2.1",),
                                          ("b.example.com", "A"): ("192.0.2.1", "198.51.100.1")}
    assert desired.outcome.fqdn == "a.example.com" and desired.outcome.domain == "example.com"
    listed = GatewaySource().render(intent(hosts=["b.example.com", "a.example.com"]), clusters, Domains(ref="fleet"))
    assert listed.outcome.fqdn == "b.example.com"


def test_the_check_host_is_the_first_listed_host_else_the_fqdn_the_aggregator_wrote() -> None:
    source = GatewaySource()
    assert source.check_host(intent(hosts=["b.example.com", "a.example.com"]), Domains(ref="fleet")) == "b.example.com"
    written = parse_gateway_intent(GATEWAY_DNS_RECORDS.manifest("web", "shop", spec={},
                                                                status={"fqdn": "a.example.com"}))
    assert source.check_host(written, Domains(ref="fleet")) == "a.example.com"


def test_clusters_that_serve_no_publishable_name_make_the_intent_not_ready_with_the_reason() -> None:
    clusters = (ClusterStatus("east", "us-east", "us-east-1a", (), False, "NoHostnames: nothing to publish"),)
    desired = GatewaySource().render(intent(), clusters, Domains(ref="fleet"))
    assert desired.endpoints == [] and desired.outcome.problem == "NoHostnames"
    nowhere = GatewaySource().render(intent(), (), Domains(ref="fleet"))
    assert nowhere.outcome.problem == "" and nowhere.endpoints == []


# --- self-service ----------------------------------------------------------------------------------

def test_an_annotated_route_asks_for_an_intent_of_its_kind_with_its_hosts() -> None:
    source, request = GatewaySource(), AppRequest(domain="fleet")
    assert {kind.resource for kind in source.exposed_kinds} == {kind.resource for kind in ROUTE_MEMBER_KINDS.values()}
    spec = source.generated_spec(route(hostnames=("shop.example.com",)), request)
    assert spec["routeKind"] == "HTTPRoute" and spec["domainRef"] == "fleet" and "hosts" not in spec
    listed = source.generated_spec(route(hostnames=("*.example.com",)), AppRequest(domain="fleet",
                                                                                   hosts=("a.example.com",)))
    assert listed["hosts"] == ["a.example.com"]
    tcp = source.generated_spec(route(hostnames=(), kind=RouteKind.TCP), AppRequest(domain="fleet",
                                                                                    hosts=("db.example.com",)))
    assert tcp["routeKind"] == "TCPRoute" and tcp["hosts"] == ["db.example.com"]
    assert parse_gateway_intent(GATEWAY_DNS_RECORDS.manifest("db", "shop", spec=tcp)).route_kind is RouteKind.TCP


@pytest.mark.parametrize(("obj", "hosts", "message"), [
    (route(hostnames=(), kind=RouteKind.UDP), (), "a UDPRoute has no hostnames: list the names to publish"),
    (route(hostnames=("*.example.com",)), (), "hostnames are all wildcards"),
    (route(hostnames=("shop.example.com",)), ("api.example.com",), "hosts api.example.com are not covered"),
])
def test_a_request_that_cannot_be_published_says_what_to_change(obj: Any, hosts: tuple[str, ...],
                                                                message: str) -> None:
    with pytest.raises(RequestError, match=message):
        GatewaySource().generated_spec(obj, AppRequest(domain="fleet", hosts=hosts))


def test_the_prober_sends_the_same_host_the_aggregator_names_the_check_by() -> None:
    check = {"httpGet": {"port": 80, "path": "/healthz"}}
    for spec, status in (({"hosts": ["B.example.com."]}, {}), ({}, {"fqdn": "a.example.com"})):
        raw = GATEWAY_DNS_RECORDS.manifest("web", "shop", spec={**spec, "healthCheck": check}, status=status)
        parsed = parse_gateway_intent(raw)
        assert parsed.health_check is not None
        aggregator = parsed.health_check.resolved(GatewaySource().check_host(parsed, Domains(ref="fleet")))
        probed = parse_prober_intent(str(IntentKind.GATEWAY), raw).check
        assert probed is not None and probed.check_id == aggregator.check_id
        assert aggregator.http_get is not None and aggregator.http_get.host in ("b.example.com", "a.example.com")
