"""OpenShift Routes end to end on real API servers: east and west serve the real Route CRD (from OpenShift's
API module); hand-written ``status.ingress[]`` admissions and ``router-<name>`` LoadBalancer Services stand in
for OpenShift's routers and ingress operator, as EndpointSlices stand in for the endpoint controller. A third
member, the host's own API server, serves no Routes: it stays connected and is not listed on Route intents.
One aggregator for the module."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import pytest

from fleetdns.apipaths import MEMBER_CLUSTERS, ROUTE_DNS_RECORDS, SECRETS, Resource
from fleetdns.kubeapi import KubeError
from rig import Fleet
from rig.openshift import create_route, create_router_service, set_route_admission
from rig.workloads import register_member, set_endpoints, set_load_balancer_status
from tests.support.aggregator import VIPS, new_namespace, prepare_fleet, unique, wait_for, wait_records
from tests.support.world import FleetWorld, running_aggregator

pytestmark = pytest.mark.apiserver
MEMBERS = ("east", "west")


@dataclass
class World(FleetWorld):
    no_routes: str  # the member without the Route API
    intents: ClassVar[Resource] = ROUTE_DNS_RECORDS

    def app(self, name: str, routers: dict[str, str | None], admitted: dict[str, bool] | None = None,
            ready: bool = True, alternate: str = "") -> str:
        """Route ``name`` in each member of ``routers`` (member → its router's IP; None: no address yet), to
        backend Service ``name`` (and ``alternate``), admitted by that member's own router unless ``admitted``
        says otherwise; the backend's endpoints ready or not. Returns the Route's host."""
        host = f"{name}.apps.example.org"
        for member, address in routers.items():
            api, router = self.api(member), f"{name}-{member}"
            create_router_service(api, self.ns, router, ips=[address] if address else [])
            set_endpoints(api, self.ns, name, ["10.1.0.1"], ready=ready)
            create_route(api, self.ns, name, host, name, [alternate] if alternate else [])
            set_route_admission(api, self.ns, name, host, {router: (admitted or {}).get(member, True)})
        self.host.create(ROUTE_DNS_RECORDS.path(self.ns), ROUTE_DNS_RECORDS.manifest(name, spec={"recordTTL": 5}))
        return host


@pytest.fixture(scope="module")
def world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    host = prepare_fleet(fleet)
    fleet.install_openshift_routes(*MEMBERS)
    namespace = new_namespace(fleet, "routes")
    no_routes = unique("noroutes")
    register_member(fleet.host.api_client(), no_routes, "noroutes", "noroutes-a", fleet.host.embedded_kubeconfig())
    # Routers' Services live beside the apps here: --namespace limits what members show to one namespace.
    try:
        with running_aggregator(fleet.host.kubeconfig, namespace, tmp_path_factory.mktemp("aggregator"),
                                "--openshift-router-namespace={namespace}", "--member-grace-period=3s",
                                leader_election=False) as aggregator:
            yield World(fleet, host, namespace, aggregator, no_routes)
    finally:
        host.delete(MEMBER_CLUSTERS.path(name=no_routes))
        host.delete(SECRETS.path("fleetdns-system", f"member-{no_routes}"))


def test_a_route_admitted_by_a_router_with_an_address_is_published_from_both_members(world: World) -> None:
    name = unique("shop")
    host = world.app(name, {"east": VIPS["east"], "west": VIPS["west"]})

    found = wait_records(world.host, world.ns, f"route-{name}",
                         lambda r: r.get((host, "A")) == {VIPS["east"], VIPS["west"]}, timeout=30)
    assert set(found) == {(host, "A")}
    # The status is written after the DNSEndpoint: wait for the one that goes with these records.
    status = wait_for(lambda: (s := world.status(name)).get("healthyClusters") == 2 and s, 30,
                      what="east and west healthy in the status")
    assert status["fqdn"] == host
    assert {d["cluster"]: d["hosts"] for d in status["dns"]} == {"east": [host], "west": [host]}
    assert {d["cluster"]: d["loadBalancer"]["ingress"] for d in status["dns"]} == {
        "east": [{"ip": VIPS["east"]}], "west": [{"ip": VIPS["west"]}]}
    assert all(d["reason"] == f"ReadyEndpoints: backend {name}" for d in status["dns"])


def test_a_route_not_admitted_or_whose_router_has_no_address_is_no_target_and_says_why(world: World) -> None:
    name = unique("claimed")
    host = world.app(name, {"east": VIPS["east"], "west": None}, admitted={"east": False})

    east = wait_for(lambda: world.entry(name, "east"), 30, what="east listed")
    assert not east["healthy"] and east["loadBalancer"]["ingress"] == []
    assert east["reason"].startswith(f"NotAdmitted: no router admitted the Route ({name}-east: not admitted")
    assert "HostAlreadyClaimed" in east["reason"]
    west = wait_for(lambda: world.entry(name, "west"), 30, what="west listed")
    assert not west["healthy"]
    assert west["reason"] == (f"NoLoadBalancerAddress: router {name}-west: Service {world.ns}/router-{name}-west "
                              "has no load-balancer address yet (status.loadBalancer)")
    assert world.status(name)["healthyClusters"] == 0

    # The router's load balancer gets its address: the Route it admitted is published (the router Service
    # index re-queues it), and east joins once its router admits the Route.
    set_load_balancer_status(world.api("west"), world.ns, f"router-{name}-west", ips=[VIPS["west"]])
    wait_records(world.host, world.ns, f"route-{name}", lambda r: r.get((host, "A")) == {VIPS["west"]}, timeout=30)
    set_route_admission(world.api("east"), world.ns, name, host, {f"{name}-east": True})
    wait_records(world.host, world.ns, f"route-{name}",
                 lambda r: r.get((host, "A")) == {VIPS["east"], VIPS["west"]}, timeout=30)


def test_a_router_service_address_change_republishes_the_routes_it_admitted(world: World) -> None:
    name = unique("moved")
    host = world.app(name, {"east": VIPS["east"], "west": VIPS["west"]})
    wait_records(world.host, world.ns, f"route-{name}",
                 lambda r: r.get((host, "A")) == {VIPS["east"], VIPS["west"]}, timeout=30)

    moved = "192.0.2.77"
    set_load_balancer_status(world.api("east"), world.ns, f"router-{name}-east", ips=[moved])
    wait_records(world.host, world.ns, f"route-{name}", lambda r: r.get((host, "A")) == {moved, VIPS["west"]},
                 timeout=30)


def test_a_backend_readiness_drop_withdraws_the_cluster_any_ready_backend_keeps_it(world: World) -> None:
    name, canary = unique("ready"), unique("canary")
    host = world.app(name, {"east": VIPS["east"], "west": VIPS["west"]}, alternate=canary)
    wait_records(world.host, world.ns, f"route-{name}",
                 lambda r: r.get((host, "A")) == {VIPS["east"], VIPS["west"]}, timeout=30)

    set_endpoints(world.api("east"), world.ns, canary, ["10.1.0.9"], ready=True)
    set_endpoints(world.api("east"), world.ns, name, ["10.1.0.1"], ready=False)
    wait_for(lambda: (e := world.entry(name, "east")) and e["reason"] == f"ReadyEndpoints: backend {canary}", 30,
             what="east kept by its alternate backend")
    assert wait_records(world.host, world.ns, f"route-{name}", lambda r: bool(r))[(host, "A")] == {
        VIPS["east"], VIPS["west"]}

    set_endpoints(world.api("east"), world.ns, canary, ["10.1.0.9"], ready=False)
    wait_records(world.host, world.ns, f"route-{name}", lambda r: r.get((host, "A")) == {VIPS["west"]}, timeout=30)
    east = wait_for(lambda: (e := world.entry(name, "east")) and not e["healthy"] and e, 30, what="east unhealthy")
    assert east["reason"] == f"NoReadyBackends: no ready endpoint behind {canary}, {name}"


def test_a_member_without_the_route_crd_stays_connected_and_is_not_listed(world: World) -> None:
    name = unique("solo")
    host = world.app(name, {"east": VIPS["east"]})
    wait_records(world.host, world.ns, f"route-{name}", lambda r: r.get((host, "A")) == {VIPS["east"]}, timeout=30)

    member = wait_for(lambda: (m := world.host.get(MEMBER_CLUSTERS.path(name=world.no_routes))).get("status", {})
                      .get("state") == "Connected" and m, 30, what="the member without Routes connected")
    assert any(k["kind"] == "routes" and k["code"] == 404 for k in member["status"]["unavailableKinds"])
    assert world.metric("fleetdns_aggregator_member_connected", cluster=world.no_routes) == 1.0
    assert world.metric("fleetdns_aggregator_member_kind_available", cluster=world.no_routes, kind="routes") == 0.0
    assert world.metric("fleetdns_aggregator_member_kind_available", cluster="east", kind="routes") == 1.0
    assert [d["cluster"] for d in wait_for(lambda: world.status(name).get("dns"), 30, what="status")] == ["east"]


def test_a_route_dns_record_needs_no_hosts_and_refuses_bad_ones_at_admission(world: World) -> None:
    name = unique("plain")
    created = world.host.create(ROUTE_DNS_RECORDS.path(world.ns), ROUTE_DNS_RECORDS.manifest(name, spec={}))
    assert created["spec"] == {"recordTTL": 30, "loadBalancerHostnames": "Resolve"}
    for spec, message in (({"hosts": ["*.apps.example.org"]}, "wildcard hosts cannot be served"),
                          ({"domainRef": "Not_A_Label"}, "must be a DNS label"),
                          ({"hosts": []}, "should have at least 1 items")):
        with pytest.raises(KubeError) as refused:
            world.host.create(ROUTE_DNS_RECORDS.path(world.ns), ROUTE_DNS_RECORDS.manifest(unique("bad"), spec=spec))
        assert refused.value.status == 422 and message in str(refused.value)
