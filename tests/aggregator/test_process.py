"""The aggregator as a real process against real host, east and west kube-apiservers.

The tests play the member clusters' controllers (load-balancer status, EndpointSlices) and read
the DNSEndpoints, statuses and events the aggregator writes on the host; a rollout's terminating endpoints are the
real EndpointSlice controller's (``controlled_fleet``: east runs its real controllers).
"""

from __future__ import annotations

import base64
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rig import Fleet
from rig.controllers import POD_DELETE_DELAY
from rig.workloads import endpoints, kubectl, ready_addresses, set_endpoints, set_load_balancer_status
from tests.support.aggregator import (
    VIPS,
    both,
    condition,
    create_domain,
    create_ingress_intent,
    create_service_intent,
    deploy_controlled_app,
    deploy_service,
    dns_endpoint,
    events_for,
    intent,
    records,
    samples,
    unique,
    wait_for,
    wait_records,
)
from tests.support.world import FleetWorld as World
from tests.support.world import fleet_world

pytestmark = pytest.mark.apiserver
GRACE = 3.0


@pytest.fixture(scope="module")
def shared_world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One aggregator for the module (its start costs seconds); each test uses its own intents and names."""
    with fleet_world(fleet, tmp_path_factory.mktemp("aggregator"), "agg-e2e",
                     f"--member-grace-period={GRACE}s") as world:
        yield world


@pytest.fixture(scope="module")
def controlled_world(controlled_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """An aggregator on the controlled fleet, where east's EndpointSlices are its EndpointSlice controller's."""
    with fleet_world(controlled_fleet, tmp_path_factory.mktemp("controlled"), "agg-ctl") as world:
        yield world


@pytest.fixture
def world(shared_world: World) -> World:
    """The shared aggregator with every member connected, whatever ran before (tests stop and freeze east):
    the tests are independent of their order."""
    def all_connected() -> bool:
        connected = {labels["cluster"]: value for labels, value in
                     samples(shared_world.aggregator, "fleetdns_aggregator_member_connected")}
        return all(connected.get(name) == 1.0 for name in shared_world.fleet.members)

    wait_for(all_connected, timeout=30, what="every member connected")
    return shared_world


def test_service_in_both_members_gets_an_a_record_with_both_addresses(world: World) -> None:
    name = unique("web")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name, dnsPrefix=name, recordTTL=60)
    n = world.names(name)

    # each member's Service reaches the aggregator on its own watch: a first reconcile may see one of them
    found = wait_records(world.host, world.ns, f"service-{name}",
                         lambda r: r.get((n["global"], "A")) == {VIPS["east"], VIPS["west"]})
    assert found == {
        (n["global"], "A"): {VIPS["east"], VIPS["west"]},
        (n["east"], "A"): {VIPS["east"]}, (n["east-1a"], "A"): {VIPS["east"]},
        (n["west"], "A"): {VIPS["west"]}, (n["west-1a"], "A"): {VIPS["west"]},
        (f"{name}.example.com", "CNAME"): {n["global"]},
    }
    obj = dns_endpoint(world.host, world.ns, f"service-{name}")
    assert obj["metadata"]["labels"] == {"fleetdns.io/intent-kind": "ServiceDNSRecord",
                                         "fleetdns.io/intent-name": name}
    assert all(e["recordTTL"] == 60 for e in obj["spec"]["endpoints"])

    status = wait_for(lambda: (s := intent(world.host, world.ns, "servicednsrecords", name)).get("status", {})
                      .get("healthyClusters") == 2 and s, what="status")["status"]
    assert status["domain"] == "example.com" and status["fqdn"] == n["global"]
    assert [(d["cluster"], d["region"], d["zone"], d["healthy"]) for d in status["dns"]] == [
        ("east", "east", "east-1a", True), ("west", "west", "west-1a", True)]
    assert status["dns"][0]["loadBalancer"] == {"ingress": [{"ip": VIPS["east"]}]}
    assert condition({"status": status}, "Ready")["status"] == "True"
    assert condition({"status": status}, "Degraded")["status"] == "False"
    assert status["observedGeneration"] == 1
    # one join per cluster (in one Event, or two when the first reconcile saw one member's Service before the other's)
    def joins() -> list[dict]:
        return [e for e in events_for(world.host, world.ns, name) if e["reason"] == "ClusterJoined"]
    joined = wait_for(lambda: (j := joins()) and all(any(c in e["message"] for e in j) for c in ("east", "west")) and j)
    for cluster in ("east", "west"):
        assert sum(e["message"].count(f"{cluster} (") for e in joined) == 1, joined
    # A bounded observation, polled throughout: the status's own watch event must not announce the join again.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        again = [e for e in events_for(world.host, world.ns, name) if e["reason"] == "ClusterJoined"]
        assert len(again) == len(joined) and all(e.get("count", 1) == 1 for e in again), again
        time.sleep(0.05)


def test_east_endpoints_not_ready_remove_its_address_and_fall_back_to_kubefed_cnames(world: World) -> None:
    name = unique("fail")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name)
    n = world.names(name)
    wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((n["global"], "A")) == set(VIPS.values()))

    set_endpoints(world.fleet.members["east"].api_client(), world.ns, name, ["10.1.0.1", "10.1.0.2"], ready=False)
    # Watch-driven, so well within this sanity bound; the latency itself is bench/'s (make bench-aggregator).
    found = wait_records(world.host, world.ns, f"service-{name}",
                         lambda r: r.get((n["global"], "A")) == {VIPS["west"]}, timeout=10)
    # KubeFed's fallbacks: east's zone → its region name, east's region → the global name
    assert found[(n["east"], "CNAME")] == {n["global"]}
    assert found[(n["east-1a"], "CNAME")] == {n["east"]}
    assert found[(n["west-1a"], "A")] == {VIPS["west"]}

    obj = wait_for(lambda: condition(s := intent(world.host, world.ns, "servicednsrecords", name), "Degraded")
                   .get("status") == "True" and s)
    east = next(d for d in obj["status"]["dns"] if d["cluster"] == "east")
    assert not east["healthy"] and east["reason"].startswith("NoReadyEndpoints")
    left = wait_for(lambda: [e for e in events_for(world.host, world.ns, name) if e["reason"] == "ClusterLeft"])
    assert "east (NoReadyEndpoints" in left[0]["message"] and left[0]["type"] == "Warning"

    set_endpoints(world.fleet.members["east"].api_client(), world.ns, name, ["10.1.0.1"], ready=True)
    wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((n["global"], "A")) == set(VIPS.values()),
                 timeout=5)


def test_a_flapping_cluster_is_counted_on_one_event_instead_of_many(world: World) -> None:
    name = unique("flap")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name)
    n = world.names(name)
    east = world.fleet.members["east"].api_client()
    wait_records(world.host, world.ns, f"service-{name}",  # both in the answer first, so each flip is a departure
                 lambda r: r.get((n["global"], "A")) == set(VIPS.values()))
    for _ in range(3):
        set_endpoints(east, world.ns, name, ["10.1.0.1"], ready=False)
        wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((n["global"], "A")) == {VIPS["west"]},
                     timeout=5)
        set_endpoints(east, world.ns, name, ["10.1.0.1"], ready=True)
        wait_records(world.host, world.ns, f"service-{name}",
                     lambda r: r.get((n["global"], "A")) == set(VIPS.values()), timeout=5)

    def left() -> list[dict]:
        return [e for e in events_for(world.host, world.ns, name) if e["reason"] == "ClusterLeft"]

    wait_for(lambda: left() and left()[0]["count"] == 3, what="three departures counted")
    assert len(left()) == 1
    assert "east (NoReadyEndpoints" in left()[0]["message"]


# --- terminating endpoints, as the real EndpointSlice controller writes them ----------------------------------------

SLOW_TO_STOP = {POD_DELETE_DELAY: "1h"}  # kwok keeps a deleted pod terminating for its whole grace period (30 s)


def slow_app_in_east_and_west(world: World, name: str) -> str:
    """East: a Deployment of 2 slow-to-stop pods (its slices the controller's); west: a hand-written slice.
    Returns the global name once it answers both."""
    deploy_controlled_app(world.fleet, world.ns, name, replicas=2, pod_annotations=SLOW_TO_STOP)
    deploy_service(world.fleet, world.ns, name, {"west": {"ip": VIPS["west"], "ready": True}})
    create_service_intent(world.host, world.ns, name)
    fqdn = world.global_name(name)
    wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((fqdn, "A")) == set(VIPS.values()),
                 timeout=30)
    return fqdn


def terminating(world: World, name: str) -> list[Any]:
    """East's terminating endpoints of the Service, as its EndpointSlice controller lists them."""
    return [e for e in endpoints(world.fleet.members["east"], world.ns, name) if e.conditions.terminating]


def test_a_rolling_update_keeps_a_member_whose_new_pods_are_ready_while_the_old_ones_terminate(
        controlled_world: World) -> None:
    world, name = controlled_world, unique("roll")
    fqdn = slow_app_in_east_and_west(world, name)
    east = world.fleet.members["east"]
    old = ready_addresses(east, world.ns, name)

    kubectl(east, "rollout", "restart", f"deployment/{name}", "-n", world.ns)

    # A bounded observation, polled throughout the rollout: east never leaves the name, while its slices move from
    # the old pods to the new ones through old pods that are terminating (ready false, still serving).
    seen_terminating: set[str] = set()
    deadline = time.monotonic() + 60
    while (ready := ready_addresses(east, world.ns, name)) & old or len(ready) < 2:
        seen_terminating |= {a for e in terminating(world, name) if not e.conditions.ready for a in e.addresses}
        found = records(dns_endpoint(world.host, world.ns, f"service-{name}"))
        assert found.get((fqdn, "A")) == set(VIPS.values()), found
        assert time.monotonic() < deadline, f"rollout not done after 60 s: ready {ready}, old {old}"
        time.sleep(0.05)
    seen_terminating |= {a for e in terminating(world, name) for a in e.addresses}
    assert seen_terminating & old, "no old pod was seen terminating in east's slices"
    assert records(dns_endpoint(world.host, world.ns, f"service-{name}")).get((fqdn, "A")) == set(VIPS.values())


def test_an_app_whose_pods_all_terminate_leaves_at_once_though_its_slices_still_list_them(
        controlled_world: World) -> None:
    world, name = controlled_world, unique("stop")
    fqdn = slow_app_in_east_and_west(world, name)
    east = world.fleet.members["east"]
    pods = ready_addresses(east, world.ns, name)

    kubectl(east, "scale", f"deployment/{name}", "--replicas=0", "-n", world.ns)

    # Well inside the pods' 30 s grace period, during which the slices keep listing them as terminating.
    wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((fqdn, "A")) == {VIPS["west"]}, timeout=10)
    still = terminating(world, name)
    assert {a for e in still for a in e.addresses} == pods, still
    assert all(e.conditions.serving and not e.conditions.ready for e in still), still
    entry = wait_for(lambda: (e := world.entry(name, "east")) and not e["healthy"] and e, what="east unhealthy")
    assert entry["reason"].startswith("NoReadyEndpoints"), entry


def test_cluster_without_load_balancer_address_is_not_listed(world: World) -> None:
    name = unique("nolb")
    deploy_service(world.fleet, world.ns, name, both(west={"ready": True}))
    create_service_intent(world.host, world.ns, name)
    n = world.names(name)
    # The aggregator may publish east before its west cache holds the Service: wait for both members.
    found = wait_records(world.host, world.ns, f"service-{name}",
                         lambda r: (n["global"], "A") in r and (n["west"], "CNAME") in r)
    assert found[(n["global"], "A")] == {VIPS["east"]}
    assert found[(n["west"], "CNAME")] == {n["global"]}
    status = wait_for(lambda: (s := intent(world.host, world.ns, "servicednsrecords", name).get("status")) and
                      len(s.get("dns", [])) == 2 and s, what="east and west listed")
    west = next(d for d in status["dns"] if d["cluster"] == "west")
    assert not west["healthy"] and west["reason"].startswith("NoLoadBalancerAddress")
    assert west["loadBalancer"] == {"ingress": []}

    set_load_balancer_status(world.fleet.members["west"].api_client(), world.ns, name, ips=[VIPS["west"]])
    wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((n["global"], "A")) == set(VIPS.values()))


def test_allow_service_without_endpoints_counts_clusters_with_no_endpoint_slices(world: World) -> None:
    name = unique("noeps")
    deploy_service(world.fleet, world.ns, name, both(east={"ip": VIPS["east"], "ready": None},
                                                     west={"ip": VIPS["west"], "ready": None}))
    create_service_intent(world.host, world.ns, name, allowServiceWithoutEndpoints=True)
    n = world.names(name)
    wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((n["global"], "A")) == set(VIPS.values()))


def test_no_healthy_cluster_publishes_nothing_and_reports_not_ready(world: World) -> None:
    name = unique("down")
    deploy_service(world.fleet, world.ns, name, both(east={"ip": VIPS["east"], "ready": False},
                                                     west={"ip": VIPS["west"], "ready": False}))
    create_service_intent(world.host, world.ns, name)
    obj = wait_for(lambda: condition(s := intent(world.host, world.ns, "servicednsrecords", name), "Ready")
                   .get("reason") == "NoHealthyClusters" and s)
    assert obj["status"]["healthyClusters"] == 0
    assert records(dns_endpoint(world.host, world.ns, f"service-{name}")) == {}


def test_hostname_only_load_balancer_becomes_a_cname_only_when_no_cluster_has_an_ip(world: World) -> None:
    """The CNAME form (``loadBalancerHostnames: CNAME``); the default resolves: test_aggregator_lb_hostnames.py."""
    name = unique("hn")
    deploy_service(world.fleet, world.ns, name, both(west={"hostname": "lb-west.cloud.example.net", "ready": True}))
    create_service_intent(world.host, world.ns, name, loadBalancerHostnames="CNAME")
    n = world.names(name)
    # each member's Service reaches the aggregator on its own watch: wait until west's has too (before, west's
    # region name falls back to a CNAME to the global name, as for a region without a healthy cluster)
    found = wait_records(world.host, world.ns, f"service-{name}",
                         lambda r: r.get((n["west"], "CNAME")) == {"lb-west.cloud.example.net"})
    assert found[(n["global"], "A")] == {VIPS["east"]}

    set_endpoints(world.fleet.members["east"].api_client(), world.ns, name, ["10.1.0.1"], ready=False)
    found = wait_records(world.host, world.ns, f"service-{name}", lambda r: (n["global"], "CNAME") in r)
    assert found[(n["global"], "CNAME")] == {"lb-west.cloud.example.net"}
    assert (n["global"], "A") not in found


def test_missing_domain_reports_domain_not_found(world: World) -> None:
    name = unique("nodom")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name, domainRef="nowhere")
    obj = wait_for(lambda: condition(s := intent(world.host, world.ns, "servicednsrecords", name), "Ready")
                   .get("reason") == "DomainNotFound" and s)
    assert "nowhere" in condition(obj, "Ready")["message"]
    assert records(dns_endpoint(world.host, world.ns, f"service-{name}")) == {}


def test_domain_created_later_in_the_domain_namespace_publishes_the_intent(world: World) -> None:
    name, ref = unique("late"), unique("zone")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name, domainRef=ref)
    wait_for(lambda: condition(intent(world.host, world.ns, "servicednsrecords", name), "Ready")
             .get("reason") == "DomainNotFound")
    create_domain(world.host, "fleetdns-system", name=ref, domain="late.example.net")
    glob = f"{name}.{world.ns}.{ref}.svc.late.example.net"
    wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((glob, "A")) == set(VIPS.values()))


def test_member_cluster_without_its_secret_is_listed_unavailable_and_left_out(world: World) -> None:
    name = unique("ghost")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name)
    n = world.names(name)
    wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((n["global"], "A")) == set(VIPS.values()))
    member = f"/apis/fleetdns.io/v1alpha1/memberclusters/{name}"
    world.host.create("/apis/fleetdns.io/v1alpha1/memberclusters", {
        "apiVersion": "fleetdns.io/v1alpha1", "kind": "MemberCluster", "metadata": {"name": name},
        "spec": {"region": "ghost", "zone": "ghost-a",
                 "kubeconfigSecretRef": {"namespace": "fleetdns-system", "name": f"missing-{name}"}}})
    try:
        status = wait_for(lambda: (s := intent(world.host, world.ns, "servicednsrecords", name).get("status") or {})
                          and any(d["cluster"] == name for d in s.get("dns", [])) and s)
        ghost = next(d for d in status["dns"] if d["cluster"] == name)
        assert not ghost["healthy"] and ghost["reason"].startswith("MemberUnavailable")
        assert f"missing-{name}" in ghost["reason"] and "404" in ghost["reason"]
        assert records(dns_endpoint(world.host, world.ns, f"service-{name}"))[(n["global"], "A")] == \
            set(VIPS.values())
    finally:
        world.host.delete(member)
    wait_for(lambda: all(d["cluster"] != name for d in
                         (intent(world.host, world.ns, "servicednsrecords", name).get("status") or {}).get("dns", [])))


def test_refused_member_credentials_are_reread_from_the_secret(world: World) -> None:
    """A rotated Secret is picked up once the member refuses the old credentials (re-read every 10 s)."""
    name = unique("rot")
    deploy_service(world.fleet, world.ns, name, {"east": {"ip": VIPS["east"], "ready": True}})
    create_service_intent(world.host, world.ns, name)
    east = world.fleet.members["east"]
    good = east.embedded_kubeconfig()
    bad = good.replace(east._token, "0" * len(east._token))
    secrets = "/api/v1/namespaces/fleetdns-system/secrets"
    world.host.create(secrets, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                                "data": {"kubeconfig": base64.b64encode(bad.encode()).decode()}})
    world.host.create("/apis/fleetdns.io/v1alpha1/memberclusters", {
        "apiVersion": "fleetdns.io/v1alpha1", "kind": "MemberCluster", "metadata": {"name": name},
        "spec": {"region": "rotated", "zone": "rotated-a",
                 "kubeconfigSecretRef": {"namespace": "fleetdns-system", "name": name}}})
    try:
        entry = wait_for(lambda: next((d for d in intent(world.host, world.ns, "servicednsrecords", name)
                                       .get("status", {}).get("dns", []) if d["cluster"] == name), None)
                         , timeout=10 + GRACE)
        assert not entry["healthy"]
        world.host.merge_patch(f"{secrets}/{name}",
                               {"data": {"kubeconfig": base64.b64encode(good.encode()).decode()}})
        glob = f"{name}.{world.ns}.fleet.svc.rotated.example.com"
        wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((glob, "A")) == {VIPS["east"]},
                     timeout=25)
    finally:
        world.host.delete(f"/apis/fleetdns.io/v1alpha1/memberclusters/{name}")


def test_ingress_record_follows_backend_service_health(world: World) -> None:
    name, backend = unique("ing"), unique("backend")
    for cluster in ("east", "west"):
        api = world.fleet.members[cluster].api_client()
        deploy_service(world.fleet, world.ns, backend, {cluster: {"ready": True}})
        from kubernetes import client

        client.NetworkingV1Api(api).create_namespaced_ingress(world.ns, {
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
            "spec": {"rules": [{"host": "shop.example.org", "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": backend, "port": {"number": 80}}}}]}}]}})
        set_load_balancer_status(api, world.ns, name, ips=[VIPS[cluster]], kind="ingress")
    create_ingress_intent(world.host, world.ns, name, ["shop.example.org", "www.shop.example.org"])
    found = wait_records(world.host, world.ns, f"ingress-{name}",
                         lambda r: r.get(("shop.example.org", "A")) == set(VIPS.values()))
    assert found[("www.shop.example.org", "A")] == set(VIPS.values())

    set_endpoints(world.fleet.members["west"].api_client(), world.ns, backend, ["10.1.0.1"], ready=False)
    wait_records(world.host, world.ns, f"ingress-{name}", lambda r: r.get(("shop.example.org", "A")) == {VIPS["east"]},
                 timeout=10)
    status = wait_for(lambda: (s := intent(world.host, world.ns, "ingressdnsrecords", name).get("status") or {})
                      .get("healthyClusters") == 1 and s)
    west = next(d for d in status["dns"] if d["cluster"] == "west")
    assert west["reason"].startswith("NoReadyBackends") and backend in west["reason"]


def test_deleting_the_intent_deletes_its_dns_endpoint(world: World) -> None:
    name = unique("gone")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name)
    wait_for(lambda: dns_endpoint(world.host, world.ns, f"service-{name}"))
    world.host.delete(f"/apis/fleetdns.io/v1alpha1/namespaces/{world.ns}/servicednsrecords/{name}")
    wait_for(lambda: dns_endpoint(world.host, world.ns, f"service-{name}") is None, timeout=5)


def test_a_dns_endpoint_changed_by_hand_is_restored(world: World) -> None:
    name = unique("drift")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name)
    n = world.names(name)
    wait_records(world.host, world.ns, f"service-{name}", lambda r: (n["global"], "A") in r)
    world.host.merge_patch(f"/apis/externaldns.k8s.io/v1alpha1/namespaces/{world.ns}/dnsendpoints/service-{name}",
                           {"spec": {"endpoints": []}})
    wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((n["global"], "A")) == set(VIPS.values()),
                 timeout=5)


def test_changing_the_spec_rewrites_the_records_and_observed_generation(world: World) -> None:
    name = unique("ttl")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name)
    wait_for(lambda: intent(world.host, world.ns, "servicednsrecords", name).get("status", {})
             .get("observedGeneration") == 1)
    world.host.merge_patch(f"/apis/fleetdns.io/v1alpha1/namespaces/{world.ns}/servicednsrecords/{name}",
                           {"spec": {"recordTTL": 30, "externalName": "shop"}})
    expected = f"shop.{world.ns}.fleet.svc.example.com"
    wait_records(world.host, world.ns, f"service-{name}", lambda r: (expected, "A") in r)
    obj = dns_endpoint(world.host, world.ns, f"service-{name}")
    assert {e["recordTTL"] for e in obj["spec"]["endpoints"]} == {30}
    status = wait_for(lambda: (s := intent(world.host, world.ns, "servicednsrecords", name).get("status") or {})
                      .get("observedGeneration") == 2 and s)
    assert status["fqdn"] == expected
    assert all(c["observedGeneration"] == 2 for c in status["conditions"])


def test_member_credentials_never_reach_the_log(world: World) -> None:
    log = world.aggregator.log()
    assert "member cluster state" in log or "connection up" in log
    for member in world.fleet.members.values():
        kubeconfig = member.embedded_kubeconfig()
        secrets = [member._token] + [line.split(":", 1)[1].strip() for line in kubeconfig.splitlines()
                                     if "-data:" in line]
        for secret in secrets:
            assert secret[:40] not in log


def test_metrics_and_readiness_are_served(world: World) -> None:
    name = unique("metrics")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name)
    wait_for(lambda: dns_endpoint(world.host, world.ns, f"service-{name}"))
    # Counted just after the write returns: wait for the sample rather than read it once.
    wait_for(lambda: any(labels == {"operation": "create"} and value >= 1 for labels, value in
                         samples(world.aggregator, "fleetdns_aggregator_dnsendpoint_writes_total")),
             what="the create counted")
    code, text = world.aggregator.readyz()
    assert code == 200 and "leader" in text
    metrics = world.aggregator.metrics()
    for sample in ('fleetdns_aggregator_member_connected{cluster="east"} 1.0',
                   "fleetdns_aggregator_reconcile_duration_seconds_bucket",
                   "fleetdns_aggregator_queue_depth",
                   'fleetdns_aggregator_dnsendpoint_writes_total{operation="create"}',
                   "fleetdns_aggregator_leader 1.0"):
        assert sample in metrics, sample
    wait_for(lambda: any(labels == {"kind": "ServiceDNSRecord", "condition": "Ready", "status": "True"} and value >= 1
                         for labels, value in samples(world.aggregator, "fleetdns_aggregator_intents")),
             what="the intent counted Ready")
    assert any(labels == {"kind": "ServiceDNSRecord", "condition": "FailOpen", "status": "False"} and value >= 1
               for labels, value in samples(world.aggregator, "fleetdns_aggregator_intents")), \
        "an intent with a healthy cluster is counted as not failing open"


def test_silent_member_api_server_is_noticed_and_removed_after_the_grace_period(world: World) -> None:
    """SIGSTOP: the server keeps its connections open but answers nothing, as behind a cut network."""
    name = unique("silent")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name)
    n = world.names(name)
    wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((n["global"], "A")) == set(VIPS.values()))

    process = world.fleet.members["east"].process
    assert process is not None and process.proc is not None
    os.kill(process.proc.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        # The timeout is the sanity bound: far below the 70 s after which a quiet watch is re-opened, so
        # only the reachability probe can have noticed the silence in time.
        wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((n["global"], "A")) == {VIPS["west"]},
                     timeout=GRACE + 10)
        assert time.monotonic() - stopped >= GRACE
    finally:
        os.kill(process.proc.pid, signal.SIGCONT)
    wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((n["global"], "A")) == set(VIPS.values()),
                 timeout=15)


def test_member_api_server_outage_removes_its_targets_after_the_grace_period_and_restores_them(
        world: World) -> None:
    """East's API server is stopped and restarted (the ``world`` fixture waits for it before the next test)."""
    name = unique("outage")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name)
    n = world.names(name)
    wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((n["global"], "A")) == set(VIPS.values()))

    east = world.fleet.members["east"]
    stopped = time.monotonic()
    east.stop_apiserver()
    try:
        # Polled throughout until east leaves: within the grace period the last known answer stays.
        seen: list[set[str] | None] = []

        def east_left() -> bool:
            seen.append(records(dns_endpoint(world.host, world.ns, f"service-{name}")).get((n["global"], "A")))
            return seen[-1] == {VIPS["west"]}

        wait_for(east_left, timeout=GRACE + 10, what="east leaves after the grace period")
        assert time.monotonic() - stopped >= GRACE
        assert all(answer == set(VIPS.values()) for answer in seen[:-1]), seen
        left = wait_for(lambda: [e for e in events_for(world.host, world.ns, name) if e["reason"] == "ClusterLeft"])
        assert "MemberUnreachable" in left[0]["message"]
    finally:
        east.restart()
    wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((n["global"], "A")) == set(VIPS.values()),
                 timeout=20)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_aggregator_does_not_burn_a_core(world: World) -> None:
    """No prober runs here: nothing wakes the aggregator, so it must sleep. (A watcher of the probers' Lease
    expiries once woke itself in a loop: a core spent by every aggregator, whatever its load.)"""
    pid = world.aggregator.pid
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(3)  # the measurement window itself: CPU used over wall time
    used = (cpu_seconds(pid) - before) / (time.monotonic() - started)
    assert used < 0.25, f"the idle aggregator used {used:.0%} of a core"
