"""The OpenShift Route source's pure parts: parsing a Route and a RouteDNSRecord, a cluster's entry (names,
the admitting routers' addresses, backend readiness and the reasons when any of them is missing), the index
from member changes to intents, and the records per name."""

from __future__ import annotations

from typing import Any

import pytest

from aggregator.health.readiness import KindProblem, Reachability
from aggregator.model import (
    ClusterStatus,
    IntentKey,
    IntentKind,
    LoadBalancerAddress,
    MemberCluster,
    ParseError,
    SecretKeyRef,
)
from aggregator.render.status import Outcome
from aggregator.sources import build_sources
from aggregator.sources.openshift_route import (
    ROUTE_KIND,
    MemberRoute,
    RouterService,
    RouteSource,
    RouteView,
    evaluate_route_cluster,
    parse_member_route,
    parse_route_intent,
)
from aggregator.sources.request import AppRequest, RequestError
from aggregator.sources.service import SERVICE_KIND, MemberService
from fleetdns.apipaths import ROUTE_DNS_RECORDS
from fleetdns.endpoint import Endpoint
from tests.support.fakes import Domains
from tests.support.model import EAST, WEST, by_name, serving

pytestmark = pytest.mark.unit

ROUTERS = "openshift-ingress"


def route_json(host: str = "shop.apps.example.com", status: list[dict[str, Any]] | None = None,
               **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "route.openshift.io/v1", "kind": "Route",
            "metadata": {"namespace": "shop", "name": "web", "labels": {"app": "web"},
                         "annotations": {"fleetdns.io/global": "true", "kubectl.kubernetes.io/x": "{}"},
                         "creationTimestamp": "2026-01-02T03:04:05Z"},
            "spec": {"host": host, "to": {"kind": "Service", "name": "web"}, **spec},
            "status": {"ingress": status if status is not None else [admitted("default")]}}


def admitted(router: str, yes: bool = True, reason: str = "") -> dict[str, Any]:
    condition: dict[str, Any] = {"type": "Admitted", "status": "True" if yes else "False"}
    if reason:
        condition |= {"reason": reason, "message": f"{reason} by another route"}
    return {"host": "shop.apps.example.com", "routerName": router, "conditions": [condition]}


def router_service(router: str, *ips: str, load_balancer: bool = True) -> RouterService:
    addresses = tuple(LoadBalancerAddress(ip=a) for a in ips)
    return RouterService(router, MemberService(ROUTERS, f"router-{router}", load_balancer, addresses))


def view(route: MemberRoute | None, routers: tuple[RouterService, ...] = (), ready: dict[str, int] | None = None,
         cluster: MemberCluster = EAST, **fields: Any) -> RouteView:
    return RouteView(cluster, Reachability.CONNECTED, route=route, routers=routers,
                     backend_ready=ready if ready is not None else {"web": 1}, router_namespace=ROUTERS, **fields)


# --- parsing ------------------------------------------------------------------------------------

def test_a_route_is_parsed_with_its_host_backends_admissions_and_self_service_metadata() -> None:
    route = parse_member_route(route_json(
        host="Shop.Apps.Example.com.", alternateBackends=[{"kind": "Service", "name": "web-canary"}, {"name": "b"}],
        status=[admitted("default"), admitted("internal", False, "HostAlreadyClaimed")]))
    assert route.host == "shop.apps.example.com"
    assert route.backend_services == ("b", "web", "web-canary")
    assert route.admitted_by == ("default",)
    assert [a.describe() for a in route.admissions] == [
        "default: Admitted",
        "internal: not admitted (HostAlreadyClaimed: HostAlreadyClaimed by another route)"]
    assert (route.labels, route.annotations, route.created) == (
        {"app": "web"}, {"fleetdns.io/global": "true"}, "2026-01-02T03:04:05Z")


def test_a_router_listed_twice_counts_as_admitting_when_either_entry_admits() -> None:
    route = parse_member_route(route_json(status=[admitted("default", False), admitted("default")]))
    assert route.admitted_by == ("default",)
    assert len(route.admissions) == 1


def test_an_intent_without_hosts_or_domain_parses_and_a_bad_ttl_names_the_field() -> None:
    raw = ROUTE_DNS_RECORDS.manifest("web", "shop", spec={"recordTTL": 60})
    raw["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    parsed = parse_route_intent(raw)
    assert (parsed.hosts, parsed.domain_ref, parsed.record_ttl, parsed.created) == ((), "", 60,
                                                                                    "2026-01-01T00:00:00Z")
    assert parsed.key == IntentKey(IntentKind.ROUTE, "shop", "web")
    with pytest.raises(ParseError, match="spec.recordTTL"):
        parse_route_intent(ROUTE_DNS_RECORDS.manifest("web", "shop", spec={"recordTTL": "60"}))


def test_the_route_source_is_registered_with_routes_as_an_optional_member_kind() -> None:
    sources = build_sources()
    assert isinstance(sources.for_kind(IntentKind.ROUTE), RouteSource)
    kinds = {kind.resource.plural: kind.required for kind in sources.member_kinds()}
    assert kinds["routes"] is False
    assert kinds["services"] is True


# --- a cluster's entry --------------------------------------------------------------------------

def test_a_route_admitted_by_a_router_with_an_address_is_healthy_over_that_address() -> None:
    entry = evaluate_route_cluster(view(parse_member_route(route_json()), (router_service("default", "192.0.2.1"),)))
    assert entry is not None and entry.healthy
    assert entry.addresses == (LoadBalancerAddress(ip="192.0.2.1"),)
    assert entry.hosts == ("shop.apps.example.com",)
    assert entry.reason == "ReadyEndpoints: backend web"


def test_every_admitting_router_contributes_its_addresses_ips_and_hostnames() -> None:
    route = parse_member_route(route_json(status=[admitted("default"), admitted("public")]))
    hostname = RouterService("public", MemberService(ROUTERS, "router-public", True,
                                                     (LoadBalancerAddress(hostname="lb.example.net"),)))
    entry = evaluate_route_cluster(view(route, (router_service("default", "192.0.2.1"), hostname)))
    assert entry is not None and entry.addresses == (LoadBalancerAddress(ip="192.0.2.1"),
                                                     LoadBalancerAddress(hostname="lb.example.net"))


def test_a_route_no_router_admitted_is_listed_unhealthy_saying_what_the_routers_said() -> None:
    route = parse_member_route(route_json(status=[admitted("default", False, "HostAlreadyClaimed")]))
    entry = evaluate_route_cluster(view(route))
    assert entry is not None and not entry.healthy and entry.addresses == ()
    assert entry.reason.startswith("NotAdmitted: no router admitted the Route (default: not admitted")
    assert "HostAlreadyClaimed" in entry.reason
    assert entry.hosts == ("shop.apps.example.com",)  # still a candidate for its name (fail open)
    silent = evaluate_route_cluster(view(parse_member_route(route_json(status=[]))))
    assert silent is not None and "status.ingress is empty" in silent.reason


@pytest.mark.parametrize(("service", "says"), [
    (RouterService("default", None), "no Service openshift-ingress/router-default"),
    (router_service("default", load_balancer=False), "Service openshift-ingress/router-default is not of type"),
    (router_service("default"), "Service openshift-ingress/router-default has no load-balancer address yet"),
])
def test_an_admitting_router_without_an_address_names_the_service_looked_up(service: RouterService,
                                                                           says: str) -> None:
    entry = evaluate_route_cluster(view(parse_member_route(route_json()), (service,)))
    assert entry is not None and not entry.healthy
    assert entry.reason.startswith("NoLoadBalancerAddress: router default: ")
    assert says in entry.reason


def test_a_router_namespace_outside_the_watched_namespace_is_named_with_the_fix() -> None:
    entry = evaluate_route_cluster(view(parse_member_route(route_json()), (RouterService("default", None),),
                                        unwatched_namespace="shop"))
    assert entry is not None and not entry.healthy
    assert "outside the member namespace the aggregator watches (shop)" in entry.reason
    assert "--openshift-router-namespace" in entry.reason


def test_health_is_any_backend_with_a_ready_endpoint_to_or_alternate() -> None:
    route = parse_member_route(route_json(alternateBackends=[{"kind": "Service", "name": "canary"}]))
    routers = (router_service("default", "192.0.2.1"),)
    alternate_only = evaluate_route_cluster(view(route, routers, {"web": 0, "canary": 2}))
    assert alternate_only is not None and alternate_only.healthy
    assert alternate_only.reason == "ReadyEndpoints: backend canary"
    none = evaluate_route_cluster(view(route, routers, {"web": 0, "canary": 0}))
    assert none is not None and not none.healthy
    assert none.reason == "NoReadyBackends: no ready endpoint behind canary, web"
    assert none.addresses == (LoadBalancerAddress(ip="192.0.2.1"),)  # kept for fail-open and the probers


def test_the_intents_hosts_limit_the_routes_that_serve() -> None:
    route = parse_member_route(route_json())
    routers = (router_service("default", "192.0.2.1"),)
    listed = evaluate_route_cluster(view(route, routers), ("shop.apps.example.com",))
    assert listed is not None and listed.healthy
    other = evaluate_route_cluster(view(route, routers), ("shop.example.com",))
    assert other is not None and not other.healthy and other.hosts == ()
    assert other.reason == ("NoHostnames: the Route's spec.host shop.apps.example.com is not among the intent's "
                            "spec.hosts")


def test_a_route_without_a_host_or_with_an_unpublishable_one_serves_no_name() -> None:
    empty = evaluate_route_cluster(view(parse_member_route(route_json(host=""))))
    assert empty is not None and empty.reason == "NoHostnames: the Route has no spec.host" and empty.hosts == ()
    long_label = "a" * 60 + ".example.com"
    bad = evaluate_route_cluster(view(parse_member_route(route_json(host=long_label))))
    assert bad is not None and bad.reason.startswith("NoHostnames: ") and "cname-" in bad.reason


def test_a_member_without_the_route_api_is_not_listed_and_one_that_forbids_it_is() -> None:
    assert evaluate_route_cluster(view(None, problem=KindProblem("routes", 404, "NotFound"))) is None
    forbidden = evaluate_route_cluster(view(None, problem=KindProblem("routes", 403, "Forbidden")))
    assert forbidden is not None and forbidden.reason.startswith("KindUnavailable: routes")
    assert evaluate_route_cluster(view(None)) is None


# --- index ---------------------------------------------------------------------------------------

def test_the_index_maps_routes_router_services_and_backend_readiness_to_intents() -> None:
    index = RouteSource(router_namespace=ROUTERS).new_index()
    route = parse_member_route(route_json(alternateBackends=[{"kind": "Service", "name": "canary"}]))
    key = IntentKey(IntentKind.ROUTE, "shop", "web")
    assert index.object_changed(ROUTE_KIND, None, route) == [key]
    router = MemberService(ROUTERS, "router-default", True, ())
    assert index.object_changed(SERVICE_KIND, None, router) == [key]
    assert index.object_changed(SERVICE_KIND, router, None) == [key]
    assert index.object_changed(SERVICE_KIND, None, MemberService("shop", "router-default", True, ())) == []
    assert index.object_changed(SERVICE_KIND, None, MemberService(ROUTERS, "router-other", True, ())) == []
    assert index.readiness_changed(("shop", "canary")) == [key]
    assert index.readiness_changed(("shop", "other")) == []

    refused = parse_member_route(route_json(status=[admitted("default", False)], to={"kind": "Service",
                                                                                       "name": "web2"}))
    assert index.object_changed(ROUTE_KIND, route, refused) == [key]
    assert index.object_changed(SERVICE_KIND, None, router) == []  # the router no longer admits it
    assert index.readiness_changed(("shop", "canary")) == []
    assert index.readiness_changed(("shop", "web2")) == [key]
    assert index.object_changed(ROUTE_KIND, refused, None) == [key]
    assert index.readiness_changed(("shop", "web2")) == []


# --- records --------------------------------------------------------------------------------------

def render(clusters: tuple[ClusterStatus, ...], domain: str | None = None, **spec: Any) -> tuple[list[Endpoint],
                                                                                                   Outcome]:
    intent = parse_route_intent(ROUTE_DNS_RECORDS.manifest("web", "shop", spec=spec))
    desired = RouteSource().render(intent, clusters, Domains(domain))
    return desired.endpoints, desired.outcome


def test_each_name_is_answered_by_the_clusters_whose_route_serves_it() -> None:
    endpoints, outcome = render((serving(EAST, "192.0.2.1", ("a.example.com",)),
                                 serving(WEST, "198.51.100.1", ("b.example.com",)),
                                 serving(MemberCluster("north", "n", "n-1", SecretKeyRef("x", "y")), "203.0.113.1",
                                         ("a.example.com",), healthy=False)))
    assert by_name(endpoints) == {("a.example.com", "A"): ("192.0.2.1",), ("b.example.com", "A"): ("198.51.100.1",)}
    assert outcome.fqdn == "a.example.com"
    assert outcome.published_records == 2


def test_the_fqdn_follows_the_order_of_the_intents_hosts() -> None:
    clusters = (serving(EAST, "192.0.2.1", ("a.example.com",)), serving(WEST, "198.51.100.1", ("b.example.com",)))
    _, outcome = render(clusters, hosts=["b.example.com", "a.example.com"])
    assert outcome.fqdn == "b.example.com"


def test_the_zone_comes_from_the_domain_and_no_served_name_is_a_problem() -> None:
    clusters = (serving(EAST, "192.0.2.1", ("a.example.com",)),)
    endpoints, outcome = render(clusters, "example.com", domainRef="fleet")
    assert by_name(endpoints) == {("a.example.com", "A"): ("192.0.2.1",)}  # the guard rails judge the Domain
    assert outcome.domain == "example.com"
    endpoints, outcome = render((serving(EAST, "192.0.2.1", ()),))
    assert endpoints == [] and outcome.problem == "NoHostnames"


# --- self-service ---------------------------------------------------------------------------------

def test_a_generated_intent_follows_the_routes_host_unless_the_request_lists_it() -> None:
    route = parse_member_route(route_json())
    source = RouteSource()
    spec = source.generated_spec(route, AppRequest(domain="fleet"))
    assert spec["domainRef"] == "fleet" and "hosts" not in spec
    listed = source.generated_spec(route, AppRequest(domain="fleet", hosts=("shop.apps.example.com",)))
    assert listed["hosts"] == ["shop.apps.example.com"]
    with pytest.raises(RequestError, match=r"hosts other.example.com are not the Route's spec.host"):
        source.generated_spec(route, AppRequest(domain="fleet", hosts=("other.example.com",)))
    with pytest.raises(RequestError, match="no spec.host"):
        source.generated_spec(parse_member_route(route_json(host="")), AppRequest(domain="fleet"))
    assert source.exposed_kinds == (ROUTE_KIND,)
