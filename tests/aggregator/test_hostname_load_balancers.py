"""Hostname load balancers (EKS-style) end to end: a real CoreDNS serves the load-balancer hostnames from a zone
the tests edit, real host/east/west API servers, the aggregator as a real process pointed at that CoreDNS
(``--dns-resolver``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from rig import Fleet
from rig.coredns import EditableZone
from tests.support.aggregator import (
    condition,
    create_service_intent,
    deploy_service,
    intent,
    samples,
    unique,
    wait_for,
    wait_records,
)
from tests.support.world import FleetWorld, module_namespace, running_aggregator

LB_ZONE = "elb.test"
SETTLE = 30.0  # generous sanity bound for the aggregator to follow a change (it takes about a second)


@dataclass
class World(FleetWorld):
    zone: EditableZone  # the zone the load balancers' hostnames are served from

    def lookups(self) -> dict[str, float]:
        """The aggregator's hostname lookups by result, from its /metrics."""
        return {labels["result"]: value
                for labels, value in samples(self.aggregator, "fleetdns_aggregator_lb_hostname_lookups_total")}

    def load_balancers(self, name: str) -> tuple[str, str]:
        """Hostnames of this test's load balancers in east and west (as a cloud provider names them)."""
        return f"{name}-east.{LB_ZONE}", f"{name}-west.{LB_ZONE}"

    def deploy(self, name: str, east: dict[str, object], west: dict[str, object]) -> None:
        deploy_service(self.fleet, self.ns, name, {"east": {"ready": True, **east}, "west": {"ready": True, **west}})

    def entries(self, name: str) -> dict[str, dict[str, Any]]:
        return {entry["cluster"]: entry for entry in self.status(name).get("dns") or []}

    def wait_entries(self, name: str, ready: Callable[[dict[str, dict[str, Any]]], bool]) -> dict[str, dict[str, Any]]:
        """The intent's status entries once ``ready`` holds (the status is written after the DNSEndpoint)."""
        def check() -> dict[str, dict[str, Any]] | None:
            entries = self.entries(name)
            return entries if ready(entries) else None
        return wait_for(check, timeout=SETTLE, what=f"status of {name}")


@pytest.fixture(scope="module")
def world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One zone and one aggregator for the module; every test uses its own intents and hostnames."""
    host, namespace = module_namespace(fleet, "agg-lbhn")
    with EditableZone(LB_ZONE, ttl=300, workdir=tmp_path_factory.mktemp("lb-zone")) as zone, running_aggregator(
            fleet.host.kubeconfig, namespace, tmp_path_factory.mktemp("aggregator"),
            f"--dns-resolver={zone.address}") as aggregator:
        yield World(fleet, host, namespace, aggregator, zone)


# --- against the real components ---------------------------------------------------------------

@pytest.mark.apiserver
@pytest.mark.coredns
def test_hostname_load_balancers_of_several_clusters_publish_every_clusters_addresses(world: World) -> None:
    name = unique("multi")
    east_lb, west_lb = world.load_balancers(name)
    world.zone.set(east_lb, "192.0.2.31")
    world.zone.set(west_lb, "198.51.100.41", "2001:db8::41")
    world.deploy(name, east={"hostname": east_lb}, west={"hostname": west_lb})
    create_service_intent(world.host, world.ns, name)
    n = world.names(name)

    found = wait_records(world.host, world.ns, f"service-{name}",
                         lambda r: r.get((n["global"], "A")) == {"192.0.2.31", "198.51.100.41"}, timeout=SETTLE)
    assert found[(n["global"], "AAAA")] == {"2001:db8::41"}
    assert found[(n["east"], "A")] == {"192.0.2.31"}
    assert found[(n["west"], "A")] == {"198.51.100.41"} and found[(n["west"], "AAAA")] == {"2001:db8::41"}
    assert not [key for key in found if key[1] == "CNAME" and key[0] in (n["global"], n["east"], n["west"])]
    entries = world.wait_entries(name, lambda e: len(e) == 2 and all(c["healthy"] for c in e.values()))
    assert entries["east"]["resolvedAddresses"] == ["192.0.2.31"]
    assert entries["west"]["resolvedAddresses"] == ["198.51.100.41", "2001:db8::41"]
    assert entries["west"]["loadBalancer"]["ingress"] == [{"hostname": west_lb}]


@pytest.mark.apiserver
@pytest.mark.coredns
def test_ips_and_resolved_hostnames_of_different_clusters_share_the_answer(world: World) -> None:
    name = unique("mixed")
    _, west_lb = world.load_balancers(name)
    world.zone.set(west_lb, "198.51.100.42")
    world.deploy(name, east={"ip": "192.0.2.32"}, west={"hostname": west_lb})
    create_service_intent(world.host, world.ns, name)
    n = world.names(name)
    wait_records(world.host, world.ns, f"service-{name}",
                 lambda r: r.get((n["global"], "A")) == {"192.0.2.32", "198.51.100.42"}, timeout=SETTLE)


@pytest.mark.apiserver
@pytest.mark.coredns
def test_a_new_address_behind_a_hostname_is_published_within_the_record_ttl(world: World) -> None:
    """The zone's TTL is 300 s; the intent's recordTTL (3 s) bounds how long the published answer lags."""
    name = unique("moves")
    east_lb, west_lb = world.load_balancers(name)
    world.zone.set(east_lb, "192.0.2.33")
    world.zone.set(west_lb, "198.51.100.43")
    world.deploy(name, east={"hostname": east_lb}, west={"hostname": west_lb})
    create_service_intent(world.host, world.ns, name, recordTTL=3)
    n = world.names(name)
    wait_records(world.host, world.ns, f"service-{name}",
                 lambda r: r.get((n["global"], "A")) == {"192.0.2.33", "198.51.100.43"}, timeout=SETTLE)

    world.zone.set(east_lb, "192.0.2.133")
    wait_records(world.host, world.ns, f"service-{name}",
                 lambda r: r.get((n["global"], "A")) == {"192.0.2.133", "198.51.100.43"}, timeout=SETTLE)
    world.wait_entries(name, lambda e: e.get("east", {}).get("resolvedAddresses") == ["192.0.2.133"])

    world.zone.set(west_lb)  # the load balancer's name is gone (NXDOMAIN): west leaves once its addresses expire
    found = wait_records(world.host, world.ns, f"service-{name}",
                         lambda r: r.get((n["global"], "A")) == {"192.0.2.133"}, timeout=SETTLE)
    assert (n["west"], "CNAME") in found  # KubeFed's fallback of an empty region, not the load balancer's name
    west = world.wait_entries(name, lambda e: e.get("west", {}).get("healthy") is False)["west"]
    assert west["reason"].startswith(f"HostnameNotResolved: {west_lb}: NXDOMAIN"), west
    assert "last addresses expired" in west["reason"], west


@pytest.mark.apiserver
@pytest.mark.coredns
def test_cname_form_keeps_one_cname_to_a_hostname(world: World) -> None:
    name = unique("cname")
    east_lb, west_lb = world.load_balancers(name)
    world.zone.set(east_lb, "192.0.2.34")
    world.zone.set(west_lb, "198.51.100.44")
    world.deploy(name, east={"hostname": east_lb}, west={"hostname": west_lb})
    create_service_intent(world.host, world.ns, name, loadBalancerHostnames="CNAME")
    n = world.names(name)
    # each member's Service reaches the aggregator on its own watch: wait until both have (the global CNAME goes
    # to the first cluster in name order, east, once east is known)
    found = wait_records(world.host, world.ns, f"service-{name}",
                         lambda r: r.get((n["global"], "CNAME")) == {east_lb}
                         and r.get((n["west"], "CNAME")) == {west_lb}, timeout=SETTLE)
    assert (n["global"], "A") not in found
    entries = world.wait_entries(name, lambda e: len(e) == 2 and all(c["healthy"] for c in e.values()))
    assert "resolvedAddresses" not in entries["east"]


@pytest.mark.apiserver
@pytest.mark.coredns
def test_an_unresolvable_hostname_keeps_its_cluster_out_with_a_reason_and_the_other_published(world: World) -> None:
    name = unique("nxlb")
    east_lb, west_lb = world.load_balancers(name)
    world.zone.set(east_lb, "192.0.2.35")  # west's name was never in the zone
    before = world.lookups()
    world.deploy(name, east={"hostname": east_lb}, west={"hostname": west_lb})
    create_service_intent(world.host, world.ns, name)
    n = world.names(name)

    west = world.wait_entries(name, lambda e: "NXDOMAIN" in e.get("west", {}).get("reason", ""))["west"]
    assert west["healthy"] is False and str(west["reason"]).startswith(f"HostnameNotResolved: {west_lb}: NXDOMAIN")
    found = wait_records(world.host, world.ns, f"service-{name}",
                         lambda r: r.get((n["global"], "A")) == {"192.0.2.35"}, timeout=SETTLE)
    assert found[(n["west"], "CNAME")] == {n["global"]}
    obj = intent(world.host, world.ns, "servicednsrecords", name)
    assert condition(obj, "Ready")["status"] == "True"
    assert condition(obj, "Degraded")["reason"] == "ClustersUnhealthy"
    # An operator sees the failing lookups next to the good ones on /metrics.
    after = world.lookups()
    assert after.get("failed", 0) > before.get("failed", 0) and after.get("resolved", 0) > before.get("resolved", 0)


# --- the entry rule (what each cluster contributes) ----------------------------------------------
