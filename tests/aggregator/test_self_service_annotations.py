"""Self-service by annotations, end to end: the aggregator as a real process against real host, east and west
kube-apiservers. App teams annotate their own Services and Ingresses in the members; no intent is written by hand
(except where a test says so), and the tests read the generated intents, DNSEndpoints and Events on the host.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from fleetdns.apipaths import DNS_ENDPOINTS, INGRESS_DNS_RECORDS, INGRESSES, SERVICE_DNS_RECORDS, SERVICES, Resource
from rig import Fleet
from rig.workloads import set_endpoints, set_load_balancer_status
from tests.support.aggregator import (
    VIPS,
    condition,
    create_service_intent,
    events_for,
    samples,
    unique,
    wait_for,
    wait_past_second_of,
    wait_records,
)
from tests.support.world import FleetWorld as World
from tests.support.world import fleet_world

pytestmark = pytest.mark.apiserver
GLOBAL = {"fleetdns.io/global": "true"}


@pytest.fixture(scope="module")
def world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One aggregator for the module, whose default Domain for annotated apps is ``fleet`` (example.com)."""
    with fleet_world(fleet, tmp_path_factory.mktemp("aggregator"), "selfsvc", "--self-service-domain=fleet") as world:
        yield world


# --- what the app teams and the members' controllers do ----------------------------------------------


def annotated_service(world: World, cluster: str, name: str, annotations: dict[str, str]) -> dict[str, Any]:
    """A LoadBalancer Service carrying ``annotations``, with its VIP and a ready endpoint."""
    body = SERVICES.manifest(name, world.ns, spec={"type": "LoadBalancer", "selector": {"app": name},
                                                   "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]})
    body["metadata"]["annotations"] = annotations
    created = world.member(cluster).create(SERVICES.path(world.ns), body)
    api = world.fleet.members[cluster].api_client()
    set_load_balancer_status(api, world.ns, name, ips=[VIPS[cluster]])
    set_endpoints(api, world.ns, name, ["10.1.0.1"], ready=True)
    return created


def annotated_ingress(world: World, cluster: str, name: str, host: str, annotations: dict[str, str]) -> None:
    """An Ingress for ``host`` carrying ``annotations``, its VIP, and a backend Service with a ready endpoint."""
    member = world.member(cluster)
    member.create(SERVICES.path(world.ns), SERVICES.manifest(f"{name}-backend", world.ns, spec={
        "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}))
    api = world.fleet.members[cluster].api_client()
    set_endpoints(api, world.ns, f"{name}-backend", ["10.1.0.1"], ready=True)
    body = INGRESSES.manifest(name, world.ns, spec={"rules": [{"host": host, "http": {"paths": [{
        "path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": f"{name}-backend", "port": {"number": 80}}}}]}}]})
    body["metadata"]["annotations"] = annotations
    member.create(INGRESSES.path(world.ns), body)
    set_load_balancer_status(api, world.ns, name, ips=[VIPS[cluster]], kind="ingress")


def annotate(world: World, cluster: str, name: str, annotations: dict[str, str | None],
             resource: Resource = SERVICES) -> None:
    """Change the object's annotations as ``kubectl annotate`` does (None removes one)."""
    world.member(cluster).merge_patch(resource.path(world.ns, name), {"metadata": {"annotations": annotations}})


def relabel(world: World, cluster: str, name: str, value: str) -> None:
    """A change to the member object that asks nothing new of the intent."""
    world.member(cluster).merge_patch(SERVICES.path(world.ns, name), {"metadata": {"labels": {"touched": value}}})



def generated(world: World, name: str, resource: Resource = SERVICE_DNS_RECORDS,
              check: Any = lambda obj: True, timeout: float = 20.0) -> dict[str, Any]:
    """The generated intent once ``check`` holds for it."""
    return world.wait_object(resource, name, check, timeout, what=f"generated {resource.kind} {world.ns}/{name}")


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    return obj["metadata"].get("annotations") or {}


# --- the tests -----------------------------------------------------------------------------------------


def test_a_service_annotated_in_two_members_gets_a_generated_intent_and_records(world: World) -> None:
    name = unique("web")
    for cluster in ("east", "west"):
        annotated_service(world, cluster, name, GLOBAL)

    obj = generated(world, name, check=lambda o: annotations_of(o).get("fleetdns.io/source-clusters") == "east,west")
    assert obj["metadata"]["labels"] == {"fleetdns.io/generated-by": "annotations",
                                         "fleetdns.io/source-kind": "Service"}
    assert "fleetdns.io/conflicts" not in annotations_of(obj)
    assert obj["spec"]["domainRef"] == "fleet" and obj["spec"]["recordTTL"] == 30
    assert obj["spec"]["loadBalancing"] == {"policy": "RoundRobin"}
    wait_records(world.host, world.ns, f"service-{name}",
                 lambda r: r.get((world.global_name(name), "A")) == {VIPS["east"], VIPS["west"]})
    agree = wait_for(lambda: condition(generated(world, name), "SourcesAgree"), what="SourcesAgree")
    assert agree["status"] == "True", agree


def test_changed_annotations_update_the_intent_and_its_records(world: World) -> None:
    name = unique("chg")
    for cluster in ("east", "west"):
        annotated_service(world, cluster, name, GLOBAL)
    wait_records(world.host, world.ns, f"service-{name}",
                 lambda r: r.get((world.global_name(name), "A")) == {VIPS["east"], VIPS["west"]})

    change = {"fleetdns.io/ttl": "120", "fleetdns.io/policy": "Failover", "fleetdns.io/failover-order": "west,east",
              "fleetdns.io/health-check-path": "/healthz"}
    for cluster in ("east", "west"):
        annotate(world, cluster, name, change)
    # each member's change arrives on its own watch: the older object's first (a conflict meanwhile), then both
    obj = generated(world, name, check=lambda o: o["spec"].get("recordTTL") == 120
                    and "fleetdns.io/conflicts" not in annotations_of(o))
    assert obj["spec"]["loadBalancing"] == {"policy": "Failover", "failoverOrder": ["west", "east"]}
    check = obj["spec"]["healthCheck"]["httpGet"]
    assert (check["path"], check["port"], check["scheme"]) == ("/healthz", 80, "HTTP")

    def failed_over() -> bool:
        endpoint = world.get(DNS_ENDPOINTS, f"service-{name}")
        records = [e for e in (endpoint or {}).get("spec", {}).get("endpoints", [])
                   if e["dnsName"] == world.global_name(name) and e["recordType"] == "A"]
        return bool(records) and records[0]["targets"] == [VIPS["west"]] and records[0]["recordTTL"] == 120
    wait_for(failed_over, timeout=20, what="the Failover answer with TTL 120")

    # The health check goes again when its annotation goes from both members: the generated spec drops it.
    for cluster in ("east", "west"):
        annotate(world, cluster, name, {"fleetdns.io/health-check-path": None})
    generated(world, name, check=lambda o: "healthCheck" not in o["spec"] and o["spec"]["recordTTL"] == 120
              and "fleetdns.io/conflicts" not in annotations_of(o))


def test_annotation_removed_from_every_member_deletes_the_intent_and_its_dnsendpoint(world: World) -> None:
    name = unique("gone")
    for cluster in ("east", "west"):
        annotated_service(world, cluster, name, GLOBAL)
    generated(world, name)
    wait_records(world.host, world.ns, f"service-{name}",
                 lambda r: r.get((world.global_name(name), "A")) == {VIPS["east"], VIPS["west"]})

    annotate(world, "east", name, {"fleetdns.io/global": None})
    obj = generated(world, name, check=lambda o: annotations_of(o).get("fleetdns.io/source-clusters") == "west")
    assert obj["metadata"]["labels"]["fleetdns.io/generated-by"] == "annotations"
    # one cluster still asks: the intent and its records stay (the intent covers the Service in every member)
    assert world.get(SERVICE_DNS_RECORDS, name) is not None

    annotate(world, "west", name, {"fleetdns.io/global": None})
    wait_for(lambda: world.get(SERVICE_DNS_RECORDS, name) is None, timeout=20, what="intent deleted")
    wait_for(lambda: world.get(DNS_ENDPOINTS, f"service-{name}") is None, timeout=20, what="its DNSEndpoint deleted")


def test_conflicting_annotations_the_oldest_object_wins_named_in_sources_agree_without_flapping(world: World) -> None:
    name = unique("conf")
    oldest = annotated_service(world, "west", name, GLOBAL | {
        "fleetdns.io/policy": "Failover", "fleetdns.io/failover-order": "west,east", "fleetdns.io/ttl": "60"})
    wait_past_second_of(oldest["metadata"]["creationTimestamp"])
    # east comes later and asks otherwise: it must not override west (neither now nor on any later re-sync)
    annotated_service(world, "east", name, GLOBAL | {"fleetdns.io/policy": "Weighted", "fleetdns.io/weight": "3",
                                                      "fleetdns.io/ttl": "60"})

    obj = generated(world, name, check=lambda o: "fleetdns.io/conflicts" in annotations_of(o))
    assert obj["spec"]["loadBalancing"] == {"policy": "Failover", "failoverOrder": ["west", "east"]}
    conflicts = annotations_of(obj)["fleetdns.io/conflicts"]
    assert "fleetdns.io/policy: west=Failover (oldest, used), east=Weighted" in conflicts, conflicts
    assert "fleetdns.io/ttl" not in conflicts  # values that agree are no conflict
    agree = wait_for(lambda: condition(generated(world, name), "SourcesAgree").get("status") == "False"
                     and condition(generated(world, name), "SourcesAgree"), what="SourcesAgree=False")
    assert agree["reason"] == "ConflictingAnnotations"
    assert "west=Failover" in agree["message"] and "east=Weighted" in agree["message"], agree
    warned = wait_for(lambda: [e for e in events_for(world.host, world.ns, name)
                               if e["reason"] == "ConflictingAnnotations"], what="ConflictingAnnotations event")
    assert warned[0]["type"] == "Warning" and "east=Weighted" in warned[0]["message"], warned

    # Re-syncs from both members (each a watch event the generator handles) change nothing on the host, once the
    # reconciler has written the status of both clusters.
    obj = generated(world, name, check=lambda o: (o.get("status") or {}).get("healthyClusters") == 2
                    and condition(o, "SourcesAgree").get("status") == "False")
    version = obj["metadata"]["resourceVersion"]
    for step in range(3):
        relabel(world, "east", name, str(step))
        relabel(world, "west", name, str(step))
        deadline = time.monotonic() + 1.0  # a bounded observation, polled throughout
        while time.monotonic() < deadline:
            now = generated(world, name)
            assert now["metadata"]["resourceVersion"] == version, (obj, now)
            time.sleep(0.05)

    # The winner changing its own value does change the intent: the generator was live all along.
    annotate(world, "west", name, {"fleetdns.io/ttl": "90"})
    obj = generated(world, name, check=lambda o: o["spec"].get("recordTTL") == 90)
    assert obj["spec"]["loadBalancing"]["policy"] == "Failover"
    assert "fleetdns.io/ttl: west=90 (oldest, used), east=60" in annotations_of(obj)["fleetdns.io/conflicts"]


def test_a_hand_written_intent_of_the_same_name_is_left_alone(world: World) -> None:
    name = unique("hand")
    written = create_service_intent(world.host, world.ns, name, recordTTL=60)
    annotated_service(world, "east", name, GLOBAL | {"fleetdns.io/ttl": "120"})

    skipped = wait_for(lambda: [e for e in events_for(world.host, world.ns, name)
                                if e["reason"] == "GenerationSkipped"], timeout=20, what="GenerationSkipped event")
    assert "east Service" in skipped[0]["message"] and "hand-written" in skipped[0]["message"], skipped
    obj = world.get(SERVICE_DNS_RECORDS, name)
    assert obj is not None
    assert obj["spec"]["recordTTL"] == 60
    assert "fleetdns.io/generated-by" not in (obj["metadata"].get("labels") or {})
    assert obj["metadata"]["generation"] == written["metadata"]["generation"]
    counted = {labels["reason"]: value for labels, value in
               samples(world.aggregator, "fleetdns_aggregator_generation_skips_total")}
    assert counted.get("hand_written", 0) >= 1, counted


def test_an_annotated_ingress_gets_a_generated_ingress_intent(world: World) -> None:
    name = unique("ing")
    host = f"{name}.example.com"
    for cluster in ("east", "west"):
        annotated_ingress(world, cluster, name, host, GLOBAL)

    obj = generated(world, name, INGRESS_DNS_RECORDS,
                    check=lambda o: annotations_of(o).get("fleetdns.io/source-clusters") == "east,west")
    assert obj["metadata"]["labels"]["fleetdns.io/source-kind"] == "Ingress"
    assert obj["spec"]["hosts"] == [host]
    wait_records(world.host, world.ns, f"ingress-{name}",
                 lambda r: r.get((host, "A")) == {VIPS["east"], VIPS["west"]}, timeout=20)


def test_a_bad_annotation_is_reported_on_the_host_and_generates_nothing(world: World) -> None:
    name = unique("bad")
    annotated_service(world, "east", name, GLOBAL | {"fleetdns.io/ttl": "soon"})

    refused = wait_for(lambda: [e for e in events_for(world.host, world.ns, name)
                                if e["reason"] == "InvalidSelfService"], timeout=20, what="InvalidSelfService event")
    assert refused[0]["type"] == "Warning"
    assert "east Service" in refused[0]["message"] and "fleetdns.io/ttl: 'soon'" in refused[0]["message"], refused
    assert world.get(SERVICE_DNS_RECORDS, name) is None

    annotate(world, "east", name, {"fleetdns.io/ttl": "45"})  # fixed: generated
    generated(world, name, check=lambda o: o["spec"]["recordTTL"] == 45)
