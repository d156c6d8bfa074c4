"""Auto-discovery end to end (docs/design/sources.md §3): the aggregator as a real process against real host, east
and west kube-apiservers. A platform team writes DiscoveryRules on the host; app teams only label their Services
(and run pods with readiness probes) in the members. No intent is written by hand: the tests read the generated
intents, DNSEndpoints and the rules' status on the host. Most tests create the pods and EndpointSlices by hand; one
runs a Deployment on a member with its real controllers (``controlled_fleet``), whose pods come after its Service.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from fleetdns.apipaths import (
    DISCOVERY_RULES,
    INGRESS_DNS_RECORDS,
    INGRESSES,
    MEMBER_CLUSTERS,
    NAMESPACES,
    PODS,
    SERVICE_DNS_RECORDS,
    SERVICES,
)
from rig import Fleet
from rig.workloads import kubectl, set_endpoints, set_load_balancer_status
from tests.support.aggregator import (
    VIPS,
    condition,
    deploy_controlled_app,
    dns_endpoint,
    unique,
    wait_for,
    wait_records,
)
from tests.support.world import FleetWorld as World
from tests.support.world import fleet_world

pytestmark = pytest.mark.apiserver
RULE_PREFIX = "disc-"


@pytest.fixture(scope="module")
def world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One aggregator for the module. DiscoveryRules and MemberCluster labels are cluster-wide: the rules this module
    writes are deleted afterwards, and each test selects by its own label."""
    with fleet_world(fleet, tmp_path_factory.mktemp("aggregator"), "disc") as world:
        yield world
    delete_rules(world)


@pytest.fixture(scope="module")
def controlled_world(controlled_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The same on the controlled fleet: east runs its real controllers."""
    with fleet_world(controlled_fleet, tmp_path_factory.mktemp("controlled"), "disc-ctl") as world:
        yield world
    delete_rules(world)


def delete_rules(world: World) -> None:
    for item in world.host.get(DISCOVERY_RULES.path()).get("items") or []:
        if item["metadata"]["name"].startswith(RULE_PREFIX):
            world.host.delete(DISCOVERY_RULES.path(name=item["metadata"]["name"]))


# --- what the platform team, the app teams and the members' controllers do ----------------------------------------


def create_rule(world: World, name: str, **spec: Any) -> None:
    world.host.create(DISCOVERY_RULES.path(), DISCOVERY_RULES.manifest(name, spec={"domainRef": "fleet", **spec}))


def labelled_service(world: World, cluster: str, name: str, labels: dict[str, str],
                     probe: dict[str, Any] | None = None, annotations: dict[str, str] | None = None) -> None:
    """The app in one member: two pods (container port ``http`` = 8080, with ``probe`` as their readiness probe), and
    a LoadBalancer Service carrying ``labels`` whose port 80 targets ``http``, with its VIP and ready endpoints."""
    member = world.member(cluster)
    for index in range(2):
        container: dict[str, Any] = {"name": "app", "image": "registry.example/app:1",
                                     "ports": [{"name": "http", "containerPort": 8080}]}
        if probe is not None:
            container["readinessProbe"] = probe
        body = PODS.manifest(f"{name}-{index}", world.ns, spec={"containers": [container]})
        body["metadata"]["labels"] = {"app": name}
        member.create(PODS.path(world.ns), body)
    body = SERVICES.manifest(name, world.ns, spec={"type": "LoadBalancer", "selector": {"app": name}, "ports": [
        {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"},
        {"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]})
    body["metadata"].update(labels=labels, annotations=annotations or {})
    member.create(SERVICES.path(world.ns), body)
    api = world.fleet.members[cluster].api_client()
    set_load_balancer_status(api, world.ns, name, ips=[VIPS[cluster]])
    set_endpoints(api, world.ns, name, ["10.1.0.1", "10.1.0.2"], ready=True)


def unlabel(world: World, cluster: str, name: str) -> None:
    patch = {"metadata": {"labels": {"fleetdns.io/test": None}}}
    world.member(cluster).merge_patch(SERVICES.path(world.ns, name), patch)



def generated(world: World, name: str, check: Any = lambda obj: True, timeout: float = 20.0) -> dict[str, Any]:
    """The generated ServiceDNSRecord once ``check`` holds for it."""
    return world.wait_object(SERVICE_DNS_RECORDS, name, check, timeout,
                             what=f"generated ServiceDNSRecord {world.ns}/{name}")


def rule_status(world: World, name: str, check: Any, timeout: float = 20.0) -> dict[str, Any]:
    """The rule's status once ``check`` holds for it."""
    def found() -> dict[str, Any] | None:
        status = (world.host.get_if_exists(DISCOVERY_RULES.path(name=name)) or {}).get("status") or {}
        return status if status and check(status) else None
    return wait_for(found, timeout, what=f"status of DiscoveryRule {name}")


def ready_with(discovered: int) -> Any:
    return lambda status: status.get("discovered") == discovered and condition(
        {"status": status}, "Ready").get("status") == "True"


HTTP_PROBE = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5}


# --- the tests -----------------------------------------------------------------------------------------------------


def test_the_same_service_found_in_two_members_gets_one_intent_checked_like_its_pods_readiness_probe(
        world: World) -> None:
    tier, name, rule = unique("tier"), unique("web"), unique(RULE_PREFIX + "web")
    create_rule(world, rule, kinds=["Service"], selector={"matchLabels": {"fleetdns.io/test": tier}})
    for cluster in ("east", "west"):
        labelled_service(world, cluster, name, {"fleetdns.io/test": tier}, HTTP_PROBE)

    intent = generated(world, name, lambda obj: obj["metadata"].get("annotations", {}).get(
        "fleetdns.io/source-clusters") == "east,west")
    labels = intent["metadata"]["labels"]
    assert labels["fleetdns.io/generated-by"] == "discovery" and labels["fleetdns.io/discovery-rule"] == rule
    assert intent["spec"]["domainRef"] == "fleet" and intent["spec"]["recordTTL"] == 30
    # the pods' probe: path and scheme as they are, container port "http" (8080) reached on Service port 80
    check = intent["spec"]["healthCheck"]
    assert check["httpGet"] == {"path": "/ready", "port": 80, "scheme": "HTTP"}
    assert check["periodSeconds"] == 5

    records = wait_records(world.host, world.ns, f"service-{name}",
                           lambda r: r.get((world.global_name(name), "A")) == {VIPS["east"], VIPS["west"]})
    assert records[(world.global_name(name), "A")] == {VIPS["east"], VIPS["west"]}
    status = rule_status(world, rule, ready_with(1))
    assert status["problemCount"] == 0 and status["clusters"] == 2


def test_a_deployment_applied_with_its_service_is_checked_like_its_pods_probe_and_follows_its_rollouts(
        controlled_world: World) -> None:
    world, tier, name, rule = controlled_world, unique("tier"), unique("web"), unique(RULE_PREFIX + "deploy")
    east = world.fleet.members["east"]
    create_rule(world, rule, selector={"matchLabels": {"fleetdns.io/test": tier}})

    # One manifest, as a user applies it: the Service is there before the ReplicaSet has made any pod.
    deploy_controlled_app(world.fleet, world.ns, name, replicas=2, readiness_probe=HTTP_PROBE,
                          service_labels={"fleetdns.io/test": tier})

    intent = generated(world, name, lambda obj: "healthCheck" in obj["spec"], timeout=30)
    assert intent["spec"]["healthCheck"]["httpGet"] == {"path": "/ready", "port": 80, "scheme": "HTTP"}
    wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((world.global_name(name), "A")) == {
        VIPS["east"]})

    # A rollout to pods with another probe: once only new pods run, the check is theirs.
    kubectl(east, "patch", f"deployment/{name}", "-n", world.ns, "--type=json", "-p", json.dumps([{
        "op": "replace", "path": "/spec/template/spec/containers/0/readinessProbe/httpGet/path", "value": "/livez"}]))
    kubectl(east, "rollout", "status", f"deployment/{name}", "-n", world.ns, "--timeout=60s", timeout=70)
    generated(world, name, lambda obj: (obj["spec"].get("healthCheck") or {}).get("httpGet") == {
        "path": "/livez", "port": 80, "scheme": "HTTP"}, timeout=30)


def test_pods_without_an_http_readiness_probe_give_an_intent_without_a_health_check(world: World) -> None:
    tier, name, rule = unique("tier"), unique("tcp"), unique(RULE_PREFIX + "noprobe")
    create_rule(world, rule, selector={"matchLabels": {"fleetdns.io/test": tier}})
    for cluster in ("east", "west"):
        labelled_service(world, cluster, name, {"fleetdns.io/test": tier}, {"tcpSocket": {"port": "http"}})

    intent = generated(world, name, lambda obj: obj["metadata"].get("annotations", {}).get(
        "fleetdns.io/source-clusters") == "east,west")
    assert "healthCheck" not in intent["spec"]
    wait_records(world.host, world.ns, f"service-{name}",
                 lambda r: r.get((world.global_name(name), "A")) == {VIPS["east"], VIPS["west"]})


def test_namespace_and_cluster_selectors_leave_apps_out_until_the_labels_match(world: World) -> None:
    key = unique("fleetdns.io/discovery")
    by_namespace, by_cluster = unique("nsapp"), unique("mcapp")
    ns_rule, mc_rule = unique(RULE_PREFIX + "ns"), unique(RULE_PREFIX + "mc")
    create_rule(world, ns_rule, selector={"matchLabels": {"fleetdns.io/test": by_namespace}},
                namespaceSelector={"matchLabels": {key: "on"}})
    create_rule(world, mc_rule, selector={"matchLabels": {"fleetdns.io/test": by_cluster}},
                clusterSelector={"matchLabels": {key: "gold"}})
    for cluster in ("east", "west"):
        labelled_service(world, cluster, by_namespace, {"fleetdns.io/test": by_namespace})
    labelled_service(world, "west", by_cluster, {"fleetdns.io/test": by_cluster})

    # Both rules are in force and publish nothing: the host namespace and the MemberCluster lack the labels.
    rule_status(world, ns_rule, ready_with(0))
    assert rule_status(world, mc_rule, ready_with(0))["clusters"] == 0
    assert world.get(SERVICE_DNS_RECORDS, by_namespace) is None
    assert world.get(SERVICE_DNS_RECORDS, by_cluster) is None

    world.host.merge_patch(NAMESPACES.path(name=world.ns), {"metadata": {"labels": {key: "on"}}})
    generated(world, by_namespace)
    rule_status(world, ns_rule, ready_with(1))
    world.host.merge_patch(MEMBER_CLUSTERS.path(name="west"), {"metadata": {"labels": {key: "gold"}}})
    try:
        intent = generated(world, by_cluster)
        assert intent["metadata"]["annotations"]["fleetdns.io/source-clusters"] == "west"
        assert rule_status(world, mc_rule, ready_with(1))["clusters"] == 1
    finally:
        world.host.merge_patch(MEMBER_CLUSTERS.path(name="west"), {"metadata": {"labels": {key: None}}})


def test_when_the_label_goes_from_every_member_the_intent_and_its_records_go(world: World) -> None:
    tier, name, rule = unique("tier"), unique("gone"), unique(RULE_PREFIX + "gone")
    create_rule(world, rule, selector={"matchLabels": {"fleetdns.io/test": tier}})
    for cluster in ("east", "west"):
        labelled_service(world, cluster, name, {"fleetdns.io/test": tier})
    wait_records(world.host, world.ns, f"service-{name}",
                 lambda r: r.get((world.global_name(name), "A")) == {VIPS["east"], VIPS["west"]})

    unlabel(world, "east", name)
    generated(world, name, lambda obj: obj["metadata"]["annotations"]["fleetdns.io/source-clusters"] == "west")
    unlabel(world, "west", name)
    wait_for(lambda: world.get(SERVICE_DNS_RECORDS, name) is None, 20, what="intent deleted")
    wait_for(lambda: dns_endpoint(world.host, world.ns, f"service-{name}") is None, 20, what="DNSEndpoint deleted")
    rule_status(world, rule, ready_with(0))


def test_annotations_beat_rules_and_the_first_rule_by_name_wins_the_others_report_why(world: World) -> None:
    tier = unique("tier")
    shared, annotated = unique("both"), unique("anno")
    first = unique(RULE_PREFIX + "a")
    second = first.replace(RULE_PREFIX + "a", RULE_PREFIX + "b")  # same suffix: "…a-xyz" sorts before "…b-xyz"
    for rule in (first, second):
        create_rule(world, rule, selector={"matchLabels": {"fleetdns.io/test": tier}})
    labelled_service(world, "east", shared, {"fleetdns.io/test": tier})
    labelled_service(world, "east", annotated, {"fleetdns.io/test": tier},
                     annotations={"fleetdns.io/global": "true", "fleetdns.io/domain": "fleet"})

    assert generated(world, shared)["metadata"]["labels"]["fleetdns.io/discovery-rule"] == first
    assert generated(world, annotated)["metadata"]["labels"]["fleetdns.io/generated-by"] == "annotations"
    lost = rule_status(world, second, lambda s: s.get("problemCount") == 2 and condition(
        {"status": s}, "Ready").get("status") == "True")
    assert lost["discovered"] == 0
    problems = {p["name"]: p for p in lost["problems"]}
    assert problems[shared]["reason"] == "ClaimedByRule" and first in problems[shared]["message"]
    assert problems[annotated]["reason"] == "ClaimedByAnnotation" and problems[annotated]["clusters"] == ["east"]
    won = rule_status(world, first, lambda s: s.get("discovered") == 1 and s.get("problemCount") == 1)
    assert won["problems"][0]["name"] == annotated and won["problems"][0]["reason"] == "ClaimedByAnnotation"


def test_an_ingress_found_by_a_rule_is_checked_through_port_443_of_its_ingress_like_its_backends_probe(
        world: World) -> None:
    tier, name, rule = unique("tier"), unique("shop"), unique(RULE_PREFIX + "ing")
    host = f"{name}.example.com"
    create_rule(world, rule, kinds=["Ingress"], selector={"matchLabels": {"fleetdns.io/test": tier}})
    for cluster in ("east", "west"):
        member, api = world.member(cluster), world.fleet.members[cluster].api_client()
        for index in range(2):
            pod = PODS.manifest(f"{name}-{index}", world.ns, spec={"containers": [{
                "name": "app", "image": "registry.example/shop:1", "ports": [{"name": "https", "containerPort": 8443}],
                "readinessProbe": {"httpGet": {"path": "/health", "port": 8443, "scheme": "HTTPS"}}}]})
            pod["metadata"]["labels"] = {"app": name}
            member.create(PODS.path(world.ns), pod)
        member.create(SERVICES.path(world.ns), SERVICES.manifest(f"{name}-backend", world.ns, spec={
            "selector": {"app": name}, "ports": [{"port": 443, "targetPort": "https", "protocol": "TCP"}]}))
        set_endpoints(api, world.ns, f"{name}-backend", ["10.1.0.1"], ready=True)
        ingress = INGRESSES.manifest(name, world.ns, spec={"rules": [{"host": host, "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": f"{name}-backend", "port": {"number": 443}}}}]}}]})
        ingress["metadata"]["labels"] = {"fleetdns.io/test": tier}
        member.create(INGRESSES.path(world.ns), ingress)
        set_load_balancer_status(api, world.ns, name, ips=[VIPS[cluster]], kind="ingress")

    def found() -> dict[str, Any] | None:
        obj = world.get(INGRESS_DNS_RECORDS, name)
        return obj if obj is not None and obj["metadata"].get("annotations", {}).get(
            "fleetdns.io/source-clusters") == "east,west" else None
    intent = wait_for(found, 20, what=f"generated IngressDNSRecord {world.ns}/{name}")
    assert intent["metadata"]["labels"]["fleetdns.io/discovery-rule"] == rule
    assert intent["spec"]["hosts"] == [host]
    # the backends' HTTPS probe, sent to port 443 of each cluster's ingress (Host: the published name)
    assert intent["spec"]["healthCheck"]["httpGet"] == {"path": "/health", "port": 443, "scheme": "HTTPS"}
    wait_records(world.host, world.ns, f"ingress-{name}", lambda r: r.get((host, "A")) == {VIPS["east"], VIPS["west"]})
