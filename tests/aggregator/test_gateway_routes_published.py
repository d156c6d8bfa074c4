"""Gateway API routes end to end on real API servers: east and west serve the real Gateway API CRDs (standard channel
of sigs.k8s.io/gateway-api v1.6.1); hand-written Gateway ``status.addresses`` and route ``status.parents[]`` verdicts
stand in for a Gateway controller, as EndpointSlices stand in for the endpoint controller. A third member, the host's
own API server, has no Gateway API: it stays connected and its status says which kinds it serves. One aggregator
for the module; the last test takes one route through ExternalDNS to a real CoreDNS answer."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from fleetdns.apipaths import (
    DNS_ENDPOINTS,
    GATEWAY_DNS_RECORDS,
    GATEWAYS,
    GRPC_ROUTES,
    HTTP_ROUTES,
    MEMBER_CLUSTERS,
    SECRETS,
    TCP_ROUTES,
    TLS_ROUTES,
    UDP_ROUTES,
    Resource,
)
from fleetdns.kubeapi import KubeError
from rig import Fleet
from rig.dnsclient import DNSClient, client_answers
from rig.gatewayapi import create_gateway, create_route, set_gateway_addresses, set_route_parents
from rig.region import Region
from rig.workloads import register_member, set_endpoints
from tests.support.aggregator import new_namespace, prepare_fleet, records, unique, wait_for
from tests.support.world import FleetWorld, running_aggregator

pytestmark = pytest.mark.apiserver
MEMBERS = ("east", "west")
TIMEOUT = 30.0
HTTP = {"name": "http", "port": 80, "protocol": "HTTP"}


@dataclass
class World(FleetWorld):
    bare: str  # the member without the Gateway API
    workdir: Path
    intents: ClassVar[Resource] = GATEWAY_DNS_RECORDS

    def gateway(self, member: str, name: str, listeners: Sequence[Mapping[str, Any]], *addresses: str) -> None:
        create_gateway(self.api(member), self.ns, name, listeners)
        if addresses:
            set_gateway_addresses(self.api(member), self.ns, name, addresses)

    def route(self, member: str, kind: Resource, name: str, accepted_by: Mapping[str, bool],
              hostnames: Sequence[str] = (), backends: Sequence[str] = (), ready: Mapping[str, bool] | None = None,
              parents: Sequence[Mapping[str, Any]] | None = None) -> None:
        """A route to ``backends`` (each with one endpoint, ready unless ``ready`` says otherwise) whose parent
        Gateways' verdicts are ``accepted_by`` (Gateway name -> Accepted)."""
        api = self.api(member)
        for backend in backends or (name,):
            set_endpoints(api, self.ns, backend, ["10.1.0.1"], ready=(ready or {}).get(backend, True))
        create_route(api, kind, self.ns, name, parents or [{"name": g} for g in accepted_by], backends or (name,),
                     hostnames)
        set_route_parents(api, kind, self.ns, name, accepted_by)

    def intent(self, name: str, **spec: Any) -> None:
        self.host.create(GATEWAY_DNS_RECORDS.path(self.ns), GATEWAY_DNS_RECORDS.manifest(name, spec={
            "recordTTL": 5, **spec}))

    def records(self, name: str, predicate: Any) -> dict[tuple[str, str], set[str]]:
        def check() -> dict[tuple[str, str], set[str]] | None:
            try:
                found = records(self.host.get(DNS_ENDPOINTS.path(self.ns, f"gateway-{name}")))
            except KubeError:
                return None
            return found if predicate(found) else None
        return wait_for(check, TIMEOUT, what=f"DNSEndpoint gateway-{name}")

    def member_cluster(self, name: str) -> dict[str, Any]:
        return self.host.get(MEMBER_CLUSTERS.path(name=name))


@pytest.fixture(scope="module")
def world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    host = prepare_fleet(fleet)
    fleet.install_gateway_api(*MEMBERS)
    try:  # the member without the Gateway API is the host's own API server: it must really lack it
        host.get(GATEWAYS.path())
        raise AssertionError("the host API server serves Gateways: it cannot stand for a member without them")
    except KubeError as error:
        assert error.status == 404, error
    namespace = new_namespace(fleet, "gateways")
    bare = unique("bare")
    register_member(fleet.host.api_client(), bare, "bare", "bare-a", fleet.host.embedded_kubeconfig())
    try:
        with running_aggregator(fleet.host.kubeconfig, namespace, tmp_path_factory.mktemp("aggregator"),
                                "--member-grace-period=3s", leader_election=False) as aggregator:
            yield World(fleet, host, namespace, aggregator, bare, tmp_path_factory.mktemp("gateway-world"))
    finally:
        host.delete(MEMBER_CLUSTERS.path(name=bare))
        host.delete(SECRETS.path("fleetdns-system", f"member-{bare}"))


def test_an_http_route_publishes_the_names_it_shares_with_its_listeners_from_the_clusters_serving_each(
        world: World) -> None:
    name = unique("shop")
    web, admin, wildcard = (f"{label}.{world.ns}.example.org" for label in ("web", "admin", "*"))
    # east: a wildcard listener and an exact one; west: only web's listener
    world.gateway("east", f"{name}-gw", [{**HTTP, "hostname": f"*.{world.ns}.example.org"},
                                         {**HTTP, "name": "admin", "port": 8080, "hostname": admin}], "192.0.2.10")
    world.gateway("west", f"{name}-gw", [{**HTTP, "hostname": web}], "198.51.100.20")
    for member in MEMBERS:
        world.route(member, HTTP_ROUTES, name, {f"{name}-gw": True},
                    hostnames=[web, admin, wildcard, "api.example.net"])
    world.intent(name)

    found = world.records(name, lambda r: r.get((web, "A")) == {"192.0.2.10", "198.51.100.20"}
                          and r.get((admin, "A")) == {"192.0.2.10"})
    assert set(found) == {(web, "A"), (admin, "A")}  # the wildcard and the name no listener shares are not
    status = wait_for(lambda: (s := world.status(name)).get("healthyClusters") == 2 and s, TIMEOUT,
                      what="east and west healthy")
    assert status["fqdn"] == admin  # the first published name (sorted), the checks' default Host
    assert {d["cluster"]: d["hosts"] for d in status["dns"]} == {"east": [admin, web], "west": [web]}
    east = next(d for d in status["dns"] if d["cluster"] == "east")
    assert east["loadBalancer"]["ingress"] == [{"ip": "192.0.2.10"}]
    assert east["reason"] == (f"ReadyEndpoints: backend {name}; not published: {wildcard} (wildcard: list the names "
                              "in spec.hosts)")
    # the member without the Gateway API has no route and is not listed
    assert world.bare not in {d["cluster"] for d in status["dns"]}


def test_a_parent_that_did_not_accept_the_route_is_no_target_until_it_does(world: World) -> None:
    name = unique("accept")
    hostname = f"{name}.example.org"
    world.gateway("east", f"{name}-a", [HTTP], "192.0.2.11")
    world.gateway("east", f"{name}-b", [HTTP], "192.0.2.12")
    world.route("east", HTTP_ROUTES, name, {f"{name}-a": True, f"{name}-b": False}, hostnames=[hostname])
    world.gateway("west", f"{name}-a", [HTTP], "198.51.100.21")
    world.route("west", HTTP_ROUTES, name, {f"{name}-a": False}, hostnames=[hostname])
    world.intent(name)

    world.records(name, lambda r: r.get((hostname, "A")) == {"192.0.2.11"})
    refused = (f"NotAccepted: parent {world.ns}/{name}-a has not accepted the route (Accepted=False, "
               "NotAllowedByListeners: no listener of this Gateway allows the route)")
    # the member's cache may show the route before its status: wait for the verdict, not the first entry
    west = wait_for(lambda: (e := world.entry(name, "west")) and e["reason"] == refused and e, TIMEOUT,
                    what="west listed as not accepted")
    assert not west["healthy"] and west["loadBalancer"]["ingress"] == [] and "hosts" not in west

    # the second Gateway accepts it (a route change); then the first Gateway moves (a Gateway change)
    set_route_parents(world.api("east"), HTTP_ROUTES, world.ns, name, {f"{name}-a": True, f"{name}-b": True})
    world.records(name, lambda r: r.get((hostname, "A")) == {"192.0.2.11", "192.0.2.12"})
    set_gateway_addresses(world.api("east"), world.ns, f"{name}-a", ["192.0.2.13", "2001:db8::13"])
    found = world.records(name, lambda r: r.get((hostname, "A")) == {"192.0.2.12", "192.0.2.13"})
    assert found[(hostname, "AAAA")] == {"2001:db8::13"}


def test_all_backends_needs_every_backend_ready_any_backend_needs_one(world: World) -> None:
    any_of, all_of = unique("any"), unique("all")
    api, backends = unique("api"), (unique("web"), unique("api"))
    world.gateway("east", api, [HTTP], "192.0.2.14")
    for name, policy in ((any_of, "AnyBackend"), (all_of, "AllBackends")):
        world.route("east", HTTP_ROUTES, name, {api: True}, hostnames=[f"{name}.example.org"], backends=backends,
                    ready={backends[1]: False})
        world.intent(name, serviceHealthPolicy=policy)

    world.records(any_of, lambda r: r.get((f"{any_of}.example.org", "A")) == {"192.0.2.14"})
    waiting = f"NoReadyBackends: no ready endpoint behind {backends[1]} (AllBackends)"
    east = wait_for(lambda: (e := world.entry(all_of, "east")) and e["reason"] == waiting and e, TIMEOUT,
                    what="east listed as waiting for its second backend")
    assert not east["healthy"]
    # the status follows the DNSEndpoint's write: it exists, with no record
    assert records(world.host.get(DNS_ENDPOINTS.path(world.ns, f"gateway-{all_of}"))) == {}

    set_endpoints(world.api("east"), world.ns, backends[1], ["10.1.0.1"], ready=True)  # a readiness change
    world.records(all_of, lambda r: r.get((f"{all_of}.example.org", "A")) == {"192.0.2.14"})


@pytest.mark.parametrize(("kind", "listener", "hosts_in"), [
    (GRPC_ROUTES, {"name": "grpc", "port": 80, "protocol": "HTTP"}, "route"),
    (TLS_ROUTES, {"name": "tls", "port": 443, "protocol": "TLS", "tls": {"mode": "Passthrough"}}, "route"),
    (TCP_ROUTES, {"name": "tcp", "port": 5432, "protocol": "TCP"}, "intent"),
    (UDP_ROUTES, {"name": "udp", "port": 5353, "protocol": "UDP"}, "intent"),
], ids=lambda v: v.kind if isinstance(v, Resource) else None)
def test_every_route_kind_reaches_a_dns_endpoint(world: World, kind: Resource, listener: dict[str, Any],
                                                 hosts_in: str) -> None:
    name = unique(kind.plural[:4])
    hostname = f"{name}.example.org"
    world.gateway("west", name, [listener], "198.51.100.30")
    world.route("west", kind, name, {name: True}, hostnames=[hostname] if hosts_in == "route" else ())
    world.intent(name, routeKind=kind.kind, **({"hosts": [hostname]} if hosts_in == "intent" else {}))

    world.records(name, lambda r: r == {(hostname, "A"): {"198.51.100.30"}})
    wait_for(lambda: world.status(name).get("fqdn") == hostname, TIMEOUT, what="status.fqdn")  # written after


def test_a_tcp_route_of_the_same_name_stays_apart_from_the_http_route(world: World) -> None:
    name = unique("twin")
    world.gateway("east", name, [HTTP, {"name": "tcp", "port": 5432, "protocol": "TCP"}], "192.0.2.15")
    world.route("east", HTTP_ROUTES, name, {name: True}, hostnames=[f"{name}.example.org"])
    world.route("east", TCP_ROUTES, name, {name: True})
    world.intent(name, routeKind="TCPRoute", hosts=[f"db.{name}.example.org"])

    found = world.records(name, lambda r: bool(r))
    assert found == {(f"db.{name}.example.org", "A"): {"192.0.2.15"}}  # the HTTPRoute's name is not its


def test_a_member_without_the_gateway_api_stays_connected_and_says_which_kinds_it_serves(world: World) -> None:
    name = unique("solo")
    world.gateway("east", name, [HTTP], "192.0.2.16")
    world.route("east", HTTP_ROUTES, name, {name: True}, hostnames=[f"{name}.example.org"])
    world.intent(name)
    world.records(name, lambda r: r.get((f"{name}.example.org", "A")) == {"192.0.2.16"})

    gateway_kinds = {"gateways", "httproutes", "grpcroutes", "tlsroutes", "tcproutes", "udproutes"}
    bare = wait_for(lambda: (m := world.member_cluster(world.bare)).get("status", {}).get("state") == "Connected" and m,
                    TIMEOUT, what="the member without the Gateway API connected")["status"]
    assert not gateway_kinds & set(bare["servedKinds"]) and "ingresses" in bare["servedKinds"]
    assert gateway_kinds <= {k["kind"] for k in bare["unavailableKinds"] if k["code"] == 404}
    east = wait_for(lambda: (m := world.member_cluster("east")).get("status", {}).get("servedKinds") and m, TIMEOUT,
                    what="east's served kinds")["status"]
    assert gateway_kinds | {"ingresses"} <= set(east["servedKinds"])
    assert world.metric("fleetdns_aggregator_member_connected", cluster=world.bare) == 1.0
    assert world.metric("fleetdns_aggregator_member_kind_available", cluster=world.bare, kind="httproutes") == 0.0
    assert world.metric("fleetdns_aggregator_member_kind_available", cluster="east", kind="httproutes") == 1.0
    assert [d["cluster"] for d in world.status(name)["dns"]] == ["east"]


@pytest.mark.etcd
@pytest.mark.coredns
@pytest.mark.externaldns
def test_an_http_route_is_answered_by_a_real_coredns(world: World) -> None:
    """The whole path once: route and Gateways in two members -> DNSEndpoint -> ExternalDNS -> webhook -> etcd
    -> CoreDNS, through one region's DNS stack (rig.Region) watching the host."""
    zone = f"{world.ns}.example.test"
    name = unique("dns")
    hostname = f"www.{zone}"
    for member, address in (("east", "192.0.2.17"), ("west", "198.51.100.17")):
        world.gateway(member, name, [{**HTTP, "hostname": hostname}], address)
        world.route(member, HTTP_ROUTES, name, {name: True})  # no hostnames: the listener's
    world.intent(name)
    world.records(name, lambda r: r.get((hostname, "A")) == {"192.0.2.17", "198.51.100.17"})

    with Region("gw", zone, world.fleet.host.kubeconfig, world.workdir / name) as region:
        coredns = region.coredns
        assert coredns is not None
        wait_for(lambda: client_answers(coredns.host, coredns.port, hostname, "A", DNSClient()) ==
                 {"192.0.2.17", "198.51.100.17"}, 60, what=f"CoreDNS answering {hostname}")


@pytest.mark.parametrize(("spec", "message"), [
    ({"routeKind": "TCPRoute"}, "spec.hosts is required for routeKind TCPRoute and UDPRoute"),
    ({"routeKind": "Ingress"}, 'Unsupported value: "Ingress"'),
    ({"serviceHealthPolicy": "Most"}, 'Unsupported value: "Most"'),
    ({"hosts": ["*.example.org"]}, "wildcard hosts cannot be served by stock CoreDNS"),
])
def test_the_api_server_refuses_a_gateway_record_it_cannot_serve_saying_why(world: World, spec: dict[str, Any],
                                                                           message: str) -> None:
    with pytest.raises(KubeError) as refused:
        world.intent(unique("bad"), **spec)
    assert refused.value.status == 422 and message in str(refused.value)


def test_a_gateway_record_gets_its_defaults_at_admission(world: World) -> None:
    name = unique("defaults")
    world.intent(name)
    spec = world.host.get(GATEWAY_DNS_RECORDS.path(world.ns, name))["spec"]
    assert spec["routeKind"] == "HTTPRoute" and spec["serviceHealthPolicy"] == "AnyBackend"
    assert spec["loadBalancerHostnames"] == "Resolve"
