"""Gateway API as the aggregator reads it: parsing Gateways and routes, the hostname intersection of a route with its
listeners (the Gateway API's wildcard rules), which parents accepted a route, and the names that get published."""

from __future__ import annotations

from typing import Any

import pytest

from aggregator.model import LoadBalancerAddress, ParseError
from aggregator.sources.gateway.objects import (
    Gateway,
    Listener,
    ParentRef,
    RouteKind,
    attach,
    covers,
    gateway_addresses,
    intersect,
    parse_gateway,
    parse_parent_ref,
    parse_route,
    published_names,
)
from fleetdns.apipaths import GATEWAY_API_GROUP

pytestmark = pytest.mark.unit


def parent(name: str = "gw", namespace: str = "shop", section: str = "", port: int = 0) -> ParentRef:
    return ParentRef(GATEWAY_API_GROUP, "Gateway", namespace, name, section, port)


def route_json(hostnames: list[str] | None = None, parent_refs: list[dict[str, Any]] | None = None,
               parents: list[dict[str, Any]] | None = None, rules: list[dict[str, Any]] | None = None,
               namespace: str = "shop") -> dict[str, Any]:
    spec: dict[str, Any] = {"parentRefs": parent_refs if parent_refs is not None else [{"name": "gw"}],
                            "rules": rules if rules is not None else [{"backendRefs": [{"name": "web", "port": 80}]}]}
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return {"metadata": {"namespace": namespace, "name": "web", "labels": {"app": "web"},
                         "annotations": {"fleetdns.io/global": "true",
                                         "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                         "creationTimestamp": "2026-01-02T03:04:05Z"},
            "spec": spec,
            "status": {"parents": parents if parents is not None else [accepted({"name": "gw"})]}}


def accepted(ref: dict[str, Any], status: str = "True", reason: str = "Accepted") -> dict[str, Any]:
    return {"parentRef": ref, "controllerName": "example.com/gateway",
            "conditions": [{"type": "Accepted", "status": status, "reason": reason, "message": f"{reason} here"}]}


def gateway(*listeners: Listener, addresses: tuple[str, ...] = ("192.0.2.10",), namespace: str = "shop",
            name: str = "gw") -> Gateway:
    return Gateway(namespace, name, listeners, tuple(LoadBalancerAddress(ip=a) for a in addresses))


HTTP = Listener("http", 80, "HTTP")


@pytest.mark.parametrize(("listener", "route", "expected"), [
    ("test.example.com", "test.example.com", "test.example.com"),
    ("test.example.com", "*.example.com", "test.example.com"),  # the spec's first example
    ("*.example.com", "test.example.com", "test.example.com"),
    ("*.example.com", "foo.test.example.com", "foo.test.example.com"),  # a suffix match, any depth
    ("*.example.com", "*.example.com", "*.example.com"),
    ("*.example.com", "*.foo.example.com", "*.foo.example.com"),  # the more specific wildcard
    ("*.foo.example.com", "*.example.com", "*.foo.example.com"),
    ("*.example.com", "example.com", None),  # a wildcard never matches its own suffix
    ("*.example.com", "test.example.net", None),
    ("test.example.com", "other.example.com", None),
    ("", "test.example.com", "test.example.com"),  # a listener without a hostname takes the route's
    ("test.example.com", "", "test.example.com"),  # a route without hostnames takes the listener's
    ("", "", "*"),  # neither: every name
])
def test_listener_and_route_hostnames_intersect_as_the_gateway_api_specifies(listener: str, route: str,
                                                                             expected: str | None) -> None:
    assert intersect(listener, route) == expected


def test_a_wildcard_covers_names_below_its_suffix_only() -> None:
    assert covers("*.example.com", "a.b.example.com")
    assert not covers("*.example.com", "example.com")
    assert covers("*", "anything.example.org")
    assert not covers("a.example.com", "b.example.com")


def test_a_route_is_parsed_with_defaults_applied_to_its_parent_refs_backends_and_metadata() -> None:
    route = parse_route(RouteKind.HTTP, route_json(
        hostnames=["Shop.Example.com", "*.example.com"],
        parent_refs=[{"name": "gw", "sectionName": "https"}, {"name": "edge", "namespace": "infra", "port": 443},
                     {"group": "", "kind": "Service", "name": "mesh"}],
        rules=[{"backendRefs": [{"name": "web"}, {"name": "api", "namespace": "backend", "weight": 3}]},
               {"backendRefs": [{"name": "drained", "weight": 0}, {"group": "example.com", "kind": "Bucket",
                                                                    "name": "static"}]}]))
    assert route.hostnames == ("*.example.com", "shop.example.com")
    assert route.parent_refs == (parent(section="https"), parent("edge", "infra", port=443),
                                 ParentRef("", "Service", "shop", "mesh"))
    assert [ref.is_gateway for ref in route.parent_refs] == [True, True, False]
    # Service backends only (the default kind), in their own namespace; weight 0 takes no traffic
    assert route.backends == (("backend", "api"), ("shop", "web"))
    assert route.labels == {"app": "web"}
    assert route.annotations == {"fleetdns.io/global": "true"}  # only the fleetdns.io/* ones are kept
    assert route.created == "2026-01-02T03:04:05Z"


def test_tcp_and_udp_routes_carry_no_hostnames() -> None:
    raw = route_json(hostnames=["ignored.example.com"])
    assert parse_route(RouteKind.TCP, raw).hostnames == ()
    assert parse_route(RouteKind.UDP, raw).hostnames == ()
    assert parse_route(RouteKind.TLS, raw).hostnames == ("ignored.example.com",)


def test_a_parent_ref_without_a_name_is_a_parse_error_naming_the_field() -> None:
    with pytest.raises(ParseError, match=r"parentRefs\[\]\.name"):
        parse_parent_ref({"kind": "Gateway"}, "shop")


def test_a_gateway_is_parsed_with_its_listeners_and_its_ip_and_hostname_addresses() -> None:
    gw = parse_gateway({
        "metadata": {"namespace": "infra", "name": "edge", "labels": {"tier": "edge"}},
        "spec": {"gatewayClassName": "example", "listeners": [
            {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "*.Example.com",
             "allowedRoutes": {"namespaces": {"from": "All"}, "kinds": [{"kind": "HTTPRoute"}]}},
            {"name": "tcp", "port": 5432, "protocol": "TCP"}]},
        "status": {"addresses": [{"type": "IPAddress", "value": "2001:db8::0010"}, {"value": "192.0.2.10"},
                                 {"type": "Hostname", "value": "LB.example.net."},
                                 {"type": "NamedAddress", "value": "pool-a"}, {"type": "IPAddress", "value": "nope"}]}})
    assert gw.listeners == (Listener("https", 443, "HTTPS", "*.example.com", ("HTTPRoute",), "All"),
                            Listener("tcp", 5432, "TCP"))
    assert gw.addresses == (LoadBalancerAddress(ip="192.0.2.10"), LoadBalancerAddress(ip="2001:db8::10"),
                            LoadBalancerAddress(hostname="lb.example.net"))
    assert gw.labels == {"tier": "edge"}
    assert gateway_addresses(None) == ()


def test_only_parents_that_accepted_the_route_count_and_the_others_are_named() -> None:
    route = parse_route(RouteKind.HTTP, route_json(
        hostnames=["shop.example.com"],
        parent_refs=[{"name": "gw"}, {"name": "refusing"}, {"name": "silent"}],
        parents=[accepted({"name": "gw", "namespace": "shop", "group": GATEWAY_API_GROUP, "kind": "Gateway"}),
                 accepted({"name": "refusing"}, "False", "NotAllowedByListeners")]))
    gateways = {("shop", n): gateway(HTTP, addresses=(a,), name=n)
                for n, a in (("gw", "192.0.2.10"), ("refusing", "192.0.2.20"), ("silent", "192.0.2.30"))}
    attached = attach(route, gateways)
    assert attached.accepted == (parent("gw"),)
    assert attached.addresses == (LoadBalancerAddress(ip="192.0.2.10"),)
    assert attached.hostnames == ("shop.example.com",)
    assert attached.problems == (
        "parent shop/refusing has not accepted the route (Accepted=False, NotAllowedByListeners: "
        "NotAllowedByListeners here)",
        "parent shop/silent has not accepted the route (no status from its controller yet)")


def test_a_status_entry_for_another_section_does_not_accept_the_parent_ref() -> None:
    route = parse_route(RouteKind.HTTP, route_json(parent_refs=[{"name": "gw", "sectionName": "https"}],
                                                   parents=[accepted({"name": "gw", "sectionName": "http"})]))
    assert attach(route, {("shop", "gw"): gateway(HTTP)}).accepted == ()


def test_an_accepted_parent_that_is_not_in_the_cache_is_named() -> None:
    route = parse_route(RouteKind.HTTP, route_json(hostnames=["shop.example.com"]))
    attached = attach(route, {})
    assert attached.accepted == () and attached.problems == ("parent Gateway shop/gw not found",)


def test_names_come_from_the_listeners_the_route_attaches_to_by_section_port_protocol_and_namespace() -> None:
    gw = gateway(Listener("http", 80, "HTTP", "*.shop.example.com"),
                 Listener("https", 443, "HTTPS", "secure.example.com"),
                 Listener("tls", 8443, "TLS", "passthrough.example.com"),
                 Listener("grpc-only", 9090, "HTTP", "grpc.example.com", ("GRPCRoute",)))
    hostnames = ["www.shop.example.com", "secure.example.com", "passthrough.example.com", "grpc.example.com"]

    def names(kind: RouteKind, ref: dict[str, Any], namespace: str = "shop") -> tuple[str, ...]:
        ref = {"namespace": "shop", **ref}
        raw = route_json(hostnames=hostnames, parent_refs=[ref], parents=[accepted(ref)], namespace=namespace)
        return attach(parse_route(kind, raw), {("shop", "gw"): gw}).hostnames

    assert names(RouteKind.HTTP, {"name": "gw"}) == ("secure.example.com", "www.shop.example.com")
    assert names(RouteKind.HTTP, {"name": "gw", "sectionName": "https"}) == ("secure.example.com",)
    assert names(RouteKind.HTTP, {"name": "gw", "port": 80}) == ("www.shop.example.com",)
    assert names(RouteKind.TLS, {"name": "gw"}) == ("passthrough.example.com",)
    assert names(RouteKind.GRPC, {"name": "gw"}) == ("grpc.example.com", "secure.example.com", "www.shop.example.com")
    assert names(RouteKind.HTTP, {"name": "gw", "sectionName": "grpc-only"}) == ()  # allowedRoutes.kinds
    # a listener that takes routes of its own namespace only (Same, the default) does not serve another's
    assert names(RouteKind.HTTP, {"name": "gw"}, namespace="elsewhere") == ()


def test_a_route_and_listener_without_hostnames_serve_every_name() -> None:
    raw = route_json(hostnames=None)
    assert attach(parse_route(RouteKind.HTTP, raw), {("shop", "gw"): gateway(HTTP)}).hostnames == ("*",)


def test_tcp_routes_take_the_addresses_of_accepted_parents_and_no_names() -> None:
    raw = route_json()
    attached = attach(parse_route(RouteKind.TCP, raw), {("shop", "gw"): gateway(Listener("db", 5432, "TCP"))})
    assert attached.accepted == (parent(),) and attached.hostnames == ()
    assert attached.addresses == (LoadBalancerAddress(ip="192.0.2.10"),)


def test_exact_names_are_published_and_wildcards_are_reported() -> None:
    published = published_names(RouteKind.HTTP, ("*.example.com", "shop.example.com"), ())
    assert published.names == ("shop.example.com",)
    assert published.left_out == ("*.example.com (wildcard: list the names in spec.hosts)",)


def test_listed_hosts_limit_the_names_and_a_served_wildcard_covers_them() -> None:
    published = published_names(RouteKind.HTTP, ("*.example.com", "shop.example.com"),
                                ("api.example.com", "shop.example.com", "shop.example.org"))
    assert published.names == ("api.example.com", "shop.example.com")
    assert published.left_out == ("shop.example.org (the route does not serve it here)",)


def test_tcp_and_udp_routes_publish_the_listed_hosts() -> None:
    assert published_names(RouteKind.UDP, (), ("dns.example.com",)).names == ("dns.example.com",)
    assert published_names(RouteKind.TCP, (), ()).names == ()


def test_a_name_that_cannot_be_published_is_left_out_with_the_reason_and_the_rest_stay() -> None:
    long_label = "a" * 60
    published = published_names(RouteKind.HTTP, (f"{long_label}.example.com", "shop.example.com"), ())
    assert published.names == ("shop.example.com",)
    assert published.left_out[0].startswith(f"{long_label}.example.com (") and "cname-" in published.left_out[0]
