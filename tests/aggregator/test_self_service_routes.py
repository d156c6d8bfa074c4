"""Self-service for the route kinds, end to end: the aggregator as a real process against real host, east and west
kube-apiservers, east and west serving the real Gateway API and OpenShift Route CRDs (the host serves neither: other
modules use it as the member without them). App teams annotate or label their own HTTPRoutes and Routes; hand-written
Gateway ``status.addresses``, route ``status.parents[]`` and Route ``status.ingress[]`` stand in for the controllers,
as EndpointSlices stand in for the endpoint controller. The tests read the generated intents, their DNSEndpoints,
conditions and Events on the host. One aggregator for the module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fleetdns.apipaths import (
    DISCOVERY_RULES,
    GATEWAY_DNS_RECORDS,
    HTTP_ROUTES,
    OPENSHIFT_ROUTES,
    ROUTE_DNS_RECORDS,
    Resource,
)
from rig import Fleet
from rig.openshift import create_route as create_openshift_route
from rig.openshift import create_router_service, set_route_admission
from rig.workloads import set_endpoints
from tests.support.aggregator import (
    VIPS,
    accepted_http_route,
    condition,
    dns_endpoint,
    events_for,
    records,
    unique,
    wait_for,
    wait_records,
)
from tests.support.world import FleetWorld as World
from tests.support.world import fleet_world

pytestmark = pytest.mark.apiserver
MEMBERS = ("east", "west")
TIMEOUT = 30.0
RULE_PREFIX = "sroutes-"
GLOBAL = {"fleetdns.io/global": "true", "fleetdns.io/domain": "fleet"}  # the Domain fleet: example.com
ANNOTATIONS_FROM = {"fleetdns.io/generated-by": "annotations"}


@pytest.fixture(scope="module")
def world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """No --self-service-domain: every annotated object names its Domain (``fleetdns.io/domain``), every rule too."""
    fleet.install_gateway_api(*MEMBERS)
    fleet.install_openshift_routes(*MEMBERS)
    # Router Services live beside the apps (the aggregator's namespace): --namespace limits what members show.
    with fleet_world(fleet, tmp_path_factory.mktemp("aggregator"), "sroutes",
                     "--openshift-router-namespace={namespace}") as world:
        yield world
    for item in world.host.get(DISCOVERY_RULES.path()).get("items") or []:
        if item["metadata"]["name"].startswith(RULE_PREFIX):
            world.host.delete(DISCOVERY_RULES.path(name=item["metadata"]["name"]))


# --- what the app teams and the members' controllers do ----------------------------------------------


def http_route(world: World, cluster: str, name: str, hostname: str) -> None:
    accepted_http_route(world.fleet, cluster, world.ns, name, hostname)


def openshift_route(world: World, cluster: str, name: str, hostname: str) -> None:
    """Route ``name`` for ``hostname``, admitted by the cluster's own router (its LoadBalancer Service has the
    cluster's VIP), to a backend with a ready endpoint."""
    api, router = world.api(cluster), f"{name}-{cluster}"
    create_router_service(api, world.ns, router, ips=[VIPS[cluster]])
    set_endpoints(api, world.ns, name, ["10.1.0.1"], ready=True)
    create_openshift_route(api, world.ns, name, hostname, name)
    set_route_admission(api, world.ns, name, hostname, {router: True})


def patch_metadata(world: World, cluster: str, resource: Resource, name: str, field: str,
                   values: dict[str, str | None]) -> None:
    """``kubectl annotate`` / ``kubectl label`` on a member object (None removes one)."""
    world.member(cluster).merge_patch(resource.path(world.ns, name), {"metadata": {field: values}})



def generated(world: World, resource: Resource, name: str, check: Any = lambda obj: True) -> dict[str, Any]:
    """The host intent once ``check`` holds for it."""
    return world.wait_object(resource, name, check, TIMEOUT)


def from_clusters(*clusters: str) -> Any:
    return lambda obj: (obj["metadata"].get("annotations") or {}).get("fleetdns.io/source-clusters") == \
        ",".join(clusters)


def withdrawn_from_each(world: World, resource: Resource, intents: Resource, name: str, endpoint: str) -> None:
    """The annotation removed from east (west still asks: the intent stays), then from west: intent and DNSEndpoint
    gone."""
    patch_metadata(world, "east", resource, name, "annotations", {"fleetdns.io/global": None})
    generated(world, intents, name, from_clusters("west"))
    patch_metadata(world, "west", resource, name, "annotations", {"fleetdns.io/global": None})
    wait_for(lambda: world.get(intents, name) is None, TIMEOUT, what=f"{intents.kind} {name} deleted")
    wait_for(lambda: dns_endpoint(world.host, world.ns, endpoint) is None, TIMEOUT, what=f"{endpoint} deleted")


# --- the tests -----------------------------------------------------------------------------------------


def test_an_annotated_http_route_in_two_members_gets_a_gateway_intent_until_no_member_asks(world: World) -> None:
    name = unique("web")
    hostname = f"{name}.example.com"
    for cluster in MEMBERS:
        http_route(world, cluster, name, hostname)
    assert world.get(GATEWAY_DNS_RECORDS, name) is None  # not annotated yet: nothing is generated

    for cluster in MEMBERS:
        patch_metadata(world, cluster, HTTP_ROUTES, name, "annotations", GLOBAL)
    obj = generated(world, GATEWAY_DNS_RECORDS, name, from_clusters("east", "west"))
    assert obj["metadata"]["labels"] == ANNOTATIONS_FROM | {"fleetdns.io/source-kind": "HTTPRoute"}
    assert obj["spec"]["routeKind"] == "HTTPRoute" and obj["spec"]["domainRef"] == "fleet"
    assert "hosts" not in obj["spec"]  # the route's own hostnames are published
    wait_records(world.host, world.ns, f"gateway-{name}",
                 lambda r: r == {(hostname, "A"): {VIPS["east"], VIPS["west"]}}, timeout=TIMEOUT)

    withdrawn_from_each(world, HTTP_ROUTES, GATEWAY_DNS_RECORDS, name, f"gateway-{name}")


def test_an_annotated_openshift_route_in_two_members_gets_a_route_intent_until_no_member_asks(world: World) -> None:
    name = unique("shop")
    hostname = f"{name}.apps.example.com"
    for cluster in MEMBERS:
        openshift_route(world, cluster, name, hostname)
        patch_metadata(world, cluster, OPENSHIFT_ROUTES, name, "annotations", GLOBAL | {"fleetdns.io/ttl": "45"})

    obj = generated(world, ROUTE_DNS_RECORDS, name, from_clusters("east", "west"))
    assert obj["metadata"]["labels"] == ANNOTATIONS_FROM | {"fleetdns.io/source-kind": "Route"}
    assert obj["spec"]["domainRef"] == "fleet" and obj["spec"]["recordTTL"] == 45
    wait_records(world.host, world.ns, f"route-{name}",
                 lambda r: r == {(hostname, "A"): {VIPS["east"], VIPS["west"]}}, timeout=TIMEOUT)

    withdrawn_from_each(world, OPENSHIFT_ROUTES, ROUTE_DNS_RECORDS, name, f"route-{name}")


def test_a_discovery_rule_selecting_http_routes_by_label_generates_their_intent(world: World) -> None:
    name, rule = unique("found"), unique(RULE_PREFIX.rstrip("-"))
    hostname = f"{name}.example.com"
    world.host.create(DISCOVERY_RULES.path(), DISCOVERY_RULES.manifest(rule, spec={
        "kinds": ["HTTPRoute"], "selector": {"matchLabels": {"fleetdns.io/test": name}}, "domainRef": "fleet"}))
    for cluster in MEMBERS:
        http_route(world, cluster, name, hostname)
        patch_metadata(world, cluster, HTTP_ROUTES, name, "labels", {"fleetdns.io/test": name})

    obj = generated(world, GATEWAY_DNS_RECORDS, name, from_clusters("east", "west"))
    assert obj["metadata"]["labels"] == {"fleetdns.io/generated-by": "discovery", "fleetdns.io/discovery-rule": rule,
                                         "fleetdns.io/source-kind": "HTTPRoute"}
    assert obj["spec"]["routeKind"] == "HTTPRoute"
    assert "healthCheck" not in obj["spec"]  # its backends have no Service (no pods, no readiness probe)
    wait_records(world.host, world.ns, f"gateway-{name}",
                 lambda r: r == {(hostname, "A"): {VIPS["east"], VIPS["west"]}}, timeout=TIMEOUT)
    status = wait_for(lambda: (s := (world.host.get(DISCOVERY_RULES.path(name=rule)).get("status") or {}))
                      .get("discovered") == 1 and s, TIMEOUT, what=f"DiscoveryRule {rule} discovered 1")
    assert condition({"status": status}, "Ready").get("status") == "True", status


def test_a_generated_intent_whose_name_an_older_hand_written_one_claimed_waits_for_it_and_says_so(
        world: World) -> None:
    base = unique("claim")
    hostname = f"{base}.example.com"
    first, second = f"{base}-1", f"{base}-2"  # the hand-written one sorts first even within the same second
    http_route(world, "east", first, hostname)
    world.host.create(GATEWAY_DNS_RECORDS.path(world.ns), GATEWAY_DNS_RECORDS.manifest(first, spec={"recordTTL": 5}))
    wait_records(world.host, world.ns, f"gateway-{first}", lambda r: r == {(hostname, "A"): {VIPS["east"]}},
                 timeout=TIMEOUT)

    http_route(world, "west", second, hostname)
    patch_metadata(world, "west", HTTP_ROUTES, second, "annotations", GLOBAL)
    obj = generated(world, GATEWAY_DNS_RECORDS, second,
                    lambda o: condition(o, "HostnamesClaimed").get("status") == "False")
    claimed = condition(obj, "HostnamesClaimed")
    assert claimed["reason"] == "ClaimedByAnotherIntent", claimed
    assert f"{hostname} claimed first by GatewayDNSRecord {world.ns}/{first}" in claimed["message"], claimed
    assert condition(obj, "Ready")["status"] == "False", obj["status"]
    assert (hostname, "A") not in records(dns_endpoint(world.host, world.ns, f"gateway-{second}"))
    warned = wait_for(lambda: [e for e in events_for(world.host, world.ns, second)
                               if e["reason"] == "ClaimedByAnotherIntent"], TIMEOUT, what="the Warning event")
    assert warned[0]["type"] == "Warning", warned
    assert records(dns_endpoint(world.host, world.ns, f"gateway-{first}")) == {(hostname, "A"): {VIPS["east"]}}

    world.host.delete(GATEWAY_DNS_RECORDS.path(world.ns, first))  # the owner lets go: the generated one takes it
    wait_records(world.host, world.ns, f"gateway-{second}", lambda r: r == {(hostname, "A"): {VIPS["west"]}},
                 timeout=TIMEOUT)
    generated(world, GATEWAY_DNS_RECORDS, second, lambda o: condition(o, "HostnamesClaimed").get("status") == "True")
