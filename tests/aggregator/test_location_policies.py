"""Client views and the location policies in the aggregator as a real process against real host, east and west
API servers: the DNSEndpoint a user's ExternalDNS reads gets one endpoint per view, answers move when a cluster
goes down or a path gets slower (HealthReports written by the test as the regions' probers would), and DNSViews
get their Accepted condition. The MemberClusters are placed in New York (east) and San Francisco (west)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fleetdns.apipaths import DNS_VIEWS, MEMBER_CLUSTERS, NAMESPACES
from fleetdns.dnsview import VIEW_PROPERTY
from fleetdns.healthreport import LatencyEntry
from fleetdns.kubeapi import KubeError
from rig import Fleet, KubeAPIServer
from rig.aggregator import AggregatorProcess, client_for
from rig.workloads import CRD_DIR, apply_crds, ensure_namespace, register_member
from tests.support.aggregator import REGIONS as MEMBER_PLACES
from tests.support.aggregator import (
    VIPS,
    condition,
    create_domain,
    create_service_intent,
    deploy_service,
    dns_endpoint,
    events_for,
    intent,
    new_namespace,
    unique,
    wait_for,
)
from tests.support.probers import CHECK, Probers
from tests.support.world import FleetWorld, module_namespace, running_aggregator

pytestmark = pytest.mark.apiserver
GRACE = 2.0  # --prober-grace-period
PLACES = {"east": {"latitude": 40.7128, "longitude": -74.006}, "west": {"latitude": 37.7749, "longitude": -122.4194}}
LONDON, TOKYO = {"latitude": 51.5072, "longitude": -0.1276}, {"latitude": 35.6762, "longitude": 139.6503}
REGIONS = ("east", "west", "eu")  # the probers' regions: east and west are the MemberClusters' regions


@dataclass
class World(FleetWorld):
    probers: Probers
    views: list[str] = field(default_factory=list)  # the DNSViews a test created

    def service(self, policy: str, **spec: Any) -> str:
        name = unique("web")
        deploy_service(self.fleet, self.ns, name, {c: {"ip": VIPS[c], "ready": True} for c in ("east", "west")})
        create_service_intent(self.host, self.ns, name, loadBalancing={"policy": policy}, **spec)
        return name

    def view(self, name: str, **spec: Any) -> str:
        self.host.create(DNS_VIEWS.path(), DNS_VIEWS.manifest(name, spec=spec))
        self.views.append(name)
        return name

    def endpoints(self, service: str) -> list[dict[str, Any]]:
        obj = dns_endpoint(self.host, self.ns, f"service-{service}")
        return [] if obj is None else obj["spec"].get("endpoints") or []

    def by_view(self, service: str) -> dict[str, set[str]]:
        """The global name's A targets per view ("" = the default answer)."""
        return {e.get("setIdentifier", ""): set(e["targets"]) for e in self.endpoints(service)
                if e["dnsName"] == self.global_name(service) and e["recordType"] == "A"}

    def wait_views(self, service: str, expected: dict[str, set[str]], timeout: float = 30.0) -> None:
        wait_for(lambda: self.by_view(service) == expected, timeout, what=f"views of {service}: {expected}")

    def answer(self, service: str, view: str) -> dict[str, Any]:
        return next((a for a in self.status(service).get("answers") or [] if a["view"] == view), {})

    def rtt(self, region: str, cluster: str, millis: float) -> None:
        """What region's prober reports as its median connect time to the cluster's VIP."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.probers.report(region, cluster, latency=(LatencyEntry(VIPS[cluster], int(millis * 1000), stamp),))

    def accepted(self, view: str) -> dict[str, Any]:
        obj = self.host.get(DNS_VIEWS.path(name=view))
        return condition(obj, "Accepted")


@pytest.fixture(scope="module")
def world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    host, namespace = module_namespace(fleet, "agg-views")
    lease_namespace = unique("agg-view-probers")
    host.create(NAMESPACES.path(), NAMESPACES.manifest(lease_namespace))
    for member, place in PLACES.items():
        host.merge_patch(MEMBER_CLUSTERS.path(name=member), {"spec": {"location": place}})
    probers = Probers(host, lease_namespace, namespace, REGIONS).start()
    flags = (f"--prober-grace-period={GRACE}s", f"--prober-lease-namespace={lease_namespace}")
    try:
        with running_aggregator(fleet.host.kubeconfig, namespace, tmp_path_factory.mktemp("aggregator"),
                                *flags) as aggregator:
            yield World(fleet, host, namespace, aggregator, probers)
    finally:
        probers.close()
        for member in PLACES:  # the session's MemberClusters go back to having no location
            host.merge_patch(MEMBER_CLUSTERS.path(name=member), {"spec": {"location": None}})


@pytest.fixture
def views(world: World) -> Iterator[World]:
    """DNSViews are cluster-scoped: every one a test creates is deleted after it."""
    yield world
    for name in world.views:
        try:
            world.host.delete(DNS_VIEWS.path(name=name))
        except KubeError as error:
            if error.status != 404:
                raise
    world.views.clear()


def test_without_any_dns_view_each_region_answers_with_its_nearest_cluster(views: World) -> None:
    name = views.service("GeoProximity")
    both = {VIPS["east"], VIPS["west"]}
    views.wait_views(name, {"": both, "region-east": {VIPS["east"]}, "region-west": {VIPS["west"]}})
    glob = views.global_name(name)
    shape = sorted((e["recordType"], e.get("setIdentifier", ""), e.get("providerSpecific", []))
                   for e in views.endpoints(name) if e["dnsName"] == glob)
    assert shape == [("A", "", []),
                     ("A", "region-east", [{"name": VIEW_PROPERTY, "value": "region-east"}]),
                     ("A", "region-west", [{"name": VIEW_PROPERTY, "value": "region-west"}])]
    # Region and zone names keep their own clusters and have no views.
    assert all("setIdentifier" not in e for e in views.endpoints(name) if e["dnsName"] != glob)
    expected = [("", ["east", "west"], "the default answer (clients of no view): every healthy cluster"),
                ("region-east", ["east"], "nearest: east 0 km"), ("region-west", ["west"], "nearest: west 0 km")]
    # The status is written just after the DNSEndpoint (and a first reconcile may have seen one member only).
    wait_for(lambda: [(a["view"], [c["cluster"] for c in a["clusters"]], a["reason"])
                      for a in views.status(name).get("answers") or []] == expected, what="the answers in the status")
    assert condition(intent(views.host, views.ns, "servicednsrecords", name), "LoadBalancing")["reason"] == "Applied"


def test_two_populations_get_their_nearest_cluster_and_the_other_one_when_it_goes_down(views: World) -> None:
    views.view(unique("europe"), clientCIDRs=["203.0.113.0/25"], location=LONDON)
    asia = views.view(unique("asia"), clientCIDRs=["203.0.113.128/25"], location=TOKYO)
    europe = views.views[0]
    name = views.service("GeoProximity", healthCheck=CHECK)
    east, west, both = {VIPS["east"]}, {VIPS["west"]}, {VIPS["east"], VIPS["west"]}
    views.wait_views(name, {"": both, europe: east, asia: west, "region-east": east, "region-west": west})
    wait_for(lambda: views.accepted(europe).get("status") == "True", what="europe Accepted")

    for region in ("east", "eu"):  # a majority of the probers sees east's app fail
        views.probers.report(region, "east", views.down(name, "east"))
    views.wait_views(name, {"": west, europe: west, asia: west, "region-east": west, "region-west": west})
    # (A first reconcile may have seen one member's Service before the other's: that join moved answers too.)
    moved = wait_for(lambda: [e for e in events_for(views.host, views.ns, name) if e["reason"] == "AnswerMoved"
                              and e["type"] == "Warning"], what="an AnswerMoved Warning")
    assert f"view {europe}: answer moved from east to west: failed over from east (HealthCheckFailed" \
        in moved[0]["message"]
    assert f"view {asia}:" not in moved[0]["message"]  # its answer did not move

    for region in ("east", "eu"):
        views.probers.report(region, "east")
    views.wait_views(name, {"": both, europe: east, asia: west, "region-east": east, "region-west": west})


def test_lowest_latency_follows_the_measured_rtt_without_flapping_between_near_equal_paths(views: World) -> None:
    name = views.service("LowestLatency")
    east, west = {VIPS["east"]}, {VIPS["west"]}
    views.rtt("east", "east", 10)
    views.rtt("east", "west", 30)
    views.wait_views(name, {"": east | west, "region-east": east, "region-west": west})
    wait_for(lambda: views.answer(name, "region-east").get("reason") == "fastest from east: east 10.0 ms",
             what="region-east answered by RTT")  # the status is written just after the DNSEndpoint
    # No RTT from the west region: its view goes by distance and says so.
    # Waited for, not read once: a status written while a member's Service was still syncing may come first.
    expected = "no fresh RTT from region west to any healthy cluster; by distance instead: nearest: west 0 km"
    region_west = wait_for(lambda: views.answer(name, "region-west").get("reason") == expected
                           and views.answer(name, "region-west"), what="region-west's fallback")
    assert region_west["fallback"] == "NoLatencyData"

    # The paths swap places, but east stays within 50 % + 5 ms of the fastest: the answer is kept.
    views.rtt("east", "west", 10)
    views.rtt("east", "east", 14.5)
    # The two reports land one after the other; the status in between may already say "kept" with other figures.
    kept_reason = "kept from east: east 14.5 ms (within 50 % + 5 ms of the fastest, west 10.0 ms)"
    wait_for(lambda: views.answer(name, "region-east").get("reason") == kept_reason,
             what="the kept answer in the status")
    assert views.by_view(name)["region-east"] == east

    # East's path becomes clearly slower: the view moves to west, announced as a Normal event.
    views.rtt("east", "east", 40)
    views.wait_views(name, {"": east | west, "region-east": west, "region-west": west})
    wait_for(lambda: [e for e in events_for(views.host, views.ns, name) if e["reason"] == "AnswerMoved"
                      and e["type"] == "Normal" and e["message"] == "view region-east: answer moved from east to "
                      "west: fastest from east: west 10.0 ms"], what="an AnswerMoved event")

    # The east region's prober stops renewing its Lease: its RTTs no longer count, the view goes by distance.
    views.probers.silence("east")
    try:
        views.wait_views(name, {"": east | west, "region-east": east, "region-west": west}, timeout=GRACE + 30)
        wait_for(lambda: views.answer(name, "region-east").get("fallback") == "NoLatencyData",
                 what="region-east's fallback in the status")
    finally:
        views.probers.alive.add("east")
        for cluster in ("east", "west"):  # later tests measure nothing
            views.probers.report("east", cluster)


def test_a_view_without_latency_data_falls_back_to_distance_and_the_intent_says_which(views: World) -> None:
    far = views.view(unique("far"), countries=["GB"], location=LONDON, latencyFrom="nowhere")
    name = views.service("LowestLatency")
    views.wait_views(name, {"": {VIPS["east"], VIPS["west"]}, far: {VIPS["east"]}, "region-east": {VIPS["east"]},
                            "region-west": {VIPS["west"]}})
    answer = wait_for(lambda: views.answer(name, far), what=f"{far}'s answer")
    assert answer["fallback"] == "NoLatencyData"
    assert answer["reason"] == ("no fresh RTT from region nowhere to any healthy cluster; by distance instead: "
                                "nearest: east 5,570 km")
    lb = condition(intent(views.host, views.ns, "servicednsrecords", name), "LoadBalancing")
    assert (lb["status"], lb["reason"]) == ("False", "NoLatencyData")
    assert f"views without a fresh RTT from their region to any healthy cluster: {far}" in lb["message"]
    accepted = wait_for(lambda: views.accepted(far).get("message"), what=f"{far} Accepted")
    assert "spec.latencyFrom 'nowhere' is not the region of any MemberCluster (east, west)" in accepted


def test_overlapping_views_the_later_one_is_not_served_and_says_which_view_it_overlaps(views: World) -> None:
    first = views.view(unique("ov-a"), clientCIDRs=["10.20.0.0/16"], location=LONDON)
    second = views.view(first.replace("ov-a", "ov-b"), clientCIDRs=["10.20.5.0/24", "10.99.0.0/16"], location=TOKYO)
    name = views.service("GeoProximity")
    both = {VIPS["east"], VIPS["west"]}
    views.wait_views(name, {"": both, first: {VIPS["east"]}, "region-east": {VIPS["east"]},
                            "region-west": {VIPS["west"]}})
    refused = wait_for(lambda: views.accepted(second).get("status") == "False" and views.accepted(second),
                       what=f"{second} not accepted")
    assert refused["reason"] == "OverlappingCIDRs"
    assert refused["message"].startswith(f"clientCIDRs 10.20.5.0/24 overlaps 10.20.0.0/16 of DNSView {first}")
    wait_for(lambda: views.accepted(first).get("status") == "True", what=f"{first} accepted")

    views.host.delete(DNS_VIEWS.path(name=first))
    views.wait_views(name, {"": both, second: {VIPS["west"]}, "region-east": {VIPS["east"]},
                            "region-west": {VIPS["west"]}})
    wait_for(lambda: views.accepted(second).get("status") == "True", what=f"{second} accepted once alone")


def test_a_host_without_the_dns_view_crd_serves_the_region_views(fleet: Fleet, tmp_path: Path) -> None:
    """An install that lacks the DNSView CRD (404 on every list) must not hold up every reconcile: the location
    policies answer with the regions' own views."""
    crds = tmp_path / "crds"
    crds.mkdir()
    for path in CRD_DIR.glob("*.yaml"):
        if "dnsviews" not in path.name:
            shutil.copy(path, crds / path.name)
    with KubeAPIServer("bare-host", tmp_path / "bare-host") as bare:
        api = bare.api_client()
        apply_crds(api, crds)
        for member in ("east", "west"):
            register_member(api, member, *MEMBER_PLACES[member], fleet.members[member].embedded_kubeconfig(),
                            location=(PLACES[member]["latitude"], PLACES[member]["longitude"]))
        host = client_for(bare)
        namespace = new_namespace(fleet, "agg-no-views")
        ensure_namespace(api, namespace)
        create_domain(host, namespace)
        name = unique("web")
        deploy_service(fleet, namespace, name, {c: {"ip": VIPS[c], "ready": True} for c in ("east", "west")})
        create_service_intent(host, namespace, name, loadBalancing={"policy": "GeoProximity"})
        with AggregatorProcess(bare.kubeconfig, [f"--namespace={namespace}", "--leader-election=false",
                                                 "--log-format=text"], tmp_path / "aggregator") as aggregator:
            glob = f"{name}.{namespace}.fleet.svc.example.com"
            expected = {"": {VIPS["east"], VIPS["west"]}, "region-east": {VIPS["east"]},
                        "region-west": {VIPS["west"]}}

            def by_view() -> dict[str, set[str]]:
                obj = dns_endpoint(host, namespace, f"service-{name}")
                return {e.get("setIdentifier", ""): set(e["targets"]) for e in (obj or {}).get("spec", {})
                        .get("endpoints") or [] if e["dnsName"] == glob and e["recordType"] == "A"}
            wait_for(lambda: by_view() == expected, 30, what="the region views")
            assert "cannot read DNSViews; only the regions' own views are served" in aggregator.log()
