"""The quorum and the policies in the aggregator as a real process against real host, east and west API
servers. The tests play the regions' probers: they renew a Lease per region and write HealthReports as a
prober would (fleetdns/healthreport.py), and read the DNSEndpoint, the status and the Events."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetdns.weights import WEIGHTS_PROPERTY
from rig import Fleet, KubeAPIServer
from rig.aggregator import AggregatorProcess, client_for
from rig.workloads import CRD_DIR, apply_crds, ensure_namespace, register_member
from tests.support.aggregator import (
    REGIONS,
    VIPS,
    both,
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
    wait_records,
)
from tests.support.probers import CHECK, RENEW, Probers
from tests.support.world import ProberWorld, prober_world, three_regions

pytestmark = pytest.mark.apiserver
GRACE = 2.0  # --prober-grace-period


@dataclass
class World(ProberWorld):

    def answer(self, service: str) -> set[str]:
        found = wait_records(self.host, self.ns, f"service-{service}", lambda r: True)
        return found.get((self.global_name(service), "A"), set())

    def wait_answer(self, service: str, expected: set[str], timeout: float = 15.0) -> None:
        wait_records(self.host, self.ns, f"service-{service}",
                     lambda r: r.get((self.global_name(service), "A")) == expected, timeout=timeout)


@pytest.fixture(scope="module")
def world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with prober_world(fleet, tmp_path_factory.mktemp("aggregator"), "agg-quorum", f"--prober-grace-period={GRACE}s",
                      world=World) as started:
        yield started


@pytest.fixture
def probers(world: World) -> Iterator[Probers]:
    with three_regions(world) as started:
        yield started


def checked_service(world: World, **spec: object) -> str:
    name = unique("web")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name, healthCheck=CHECK, **spec)
    return name


def regions_seen(world: World, service: str, cluster: str) -> dict[str, tuple[str, bool]]:
    entry = next((d for d in world.status(service).get("dns", []) if d["cluster"] == cluster), {})
    return {r["region"]: (r["state"], r["fresh"]) for r in (entry.get("healthCheck") or {}).get("regions", [])}


def test_a_majority_of_regions_withdraws_an_address_and_one_region_alone_does_not(world: World,
                                                                                     probers: Probers) -> None:
    name = checked_service(world)
    world.wait_answer(name, set(VIPS.values()))
    a, b, c = probers.regions

    probers.report(a, "east", world.down(name, "east", "connect timeout after 1s"))
    # The status shows a's view (so the report has been counted) while the answer stays.
    wait_for(lambda: regions_seen(world, name, "east").get(a) == ("Down", True), what="a's report counted")
    assert world.answer(name) == set(VIPS.values())

    probers.report(b, "east", world.down(name, "east"))
    world.wait_answer(name, {VIPS["west"]})
    east = wait_for(lambda: next((d for d in world.status(name)["dns"] if d["cluster"] == "east"
                                  and not d["healthy"]), None), what="east unhealthy in the status")
    assert east["reason"] == "HealthCheckFailed: Down from 2 of 3 regions"

    probers.report(a, "east")
    world.wait_answer(name, set(VIPS.values()))
    wait_for(lambda: regions_seen(world, name, "east") == {a: ("Up", True), b: ("Down", True), c: ("Up", True)},
             what="each region's view in the status")  # written just after the DNSEndpoint


def test_a_region_whose_lease_stops_renewing_leaves_the_vote_after_the_grace_period(world: World,
                                                                                    probers: Probers) -> None:
    name = checked_service(world)
    a, b, c = probers.regions
    for region in (a, b):
        probers.report(region, "east", world.down(name, "east"))
    world.wait_answer(name, {VIPS["west"]})

    silenced = time.monotonic()
    probers.silence(a)
    probers.silence(b)
    # Until the grace period has passed their last word counts; then c alone votes, and it sees east Up.
    world.wait_answer(name, set(VIPS.values()), timeout=GRACE + 15)
    # Their last renewal was seen at most one renewal interval (and one request) before they fell silent.
    assert time.monotonic() - silenced >= GRACE - 2 * RENEW
    wait_for(lambda: regions_seen(world, name, "east") == {a: ("Down", False), b: ("Down", False), c: ("Up", True)},
             what="a and b shown stale")


def test_failover_order_moves_the_answer_and_back(world: World, probers: Probers) -> None:
    name = checked_service(world, loadBalancing={"policy": "Failover", "failoverOrder": ["east", "west"]})
    world.wait_answer(name, {VIPS["east"]})
    a, b, _ = probers.regions
    for region in (a, b):
        probers.report(region, "east", world.down(name, "east"))
    world.wait_answer(name, {VIPS["west"]})
    wait_for(lambda: [(x["policy"], [c["cluster"] for c in x["clusters"]]) for x in world.status(name)["answers"]]
             == [("Failover", ["west"])], what="the answer in the status")
    moved = wait_for(lambda: [e for e in events_for(world.host, world.ns, name) if e["reason"] == "AnswerMoved"])
    assert moved[0]["type"] == "Warning" and "from east to west" in moved[0]["message"]

    for region in (a, b):
        probers.report(region, "east")
    world.wait_answer(name, {VIPS["east"]})


def test_weighted_sets_webhook_weights_on_the_records(world: World) -> None:
    name = unique("web")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name, loadBalancing={"policy": "Weighted", "weights": [
        {"target": "east", "weight": 80}, {"target": "west", "weight": 20}]})
    world.wait_answer(name, set(VIPS.values()))
    endpoint = next(e for e in dns_endpoint(world.host, world.ns, f"service-{name}")["spec"]["endpoints"]
                    if e["dnsName"] == world.global_name(name))
    assert endpoint["providerSpecific"] == [
        {"name": WEIGHTS_PROPERTY, "value": f"{VIPS['east']}=255,{VIPS['west']}=64"}]


def test_all_down_keeps_the_last_healthy_set_says_so_and_recovers(world: World, probers: Probers) -> None:
    name = checked_service(world)
    world.wait_answer(name, set(VIPS.values()))
    a, b, _ = probers.regions
    for region in (a, b):
        probers.report(region, "east", world.down(name, "east"))
    world.wait_answer(name, {VIPS["west"]})
    for region in (a, b):
        probers.report(region, "west", world.down(name, "west"))
    obj = wait_for(lambda: condition(s := intent(world.host, world.ns, "servicednsrecords", name), "FailOpen")
                   .get("status") == "True" and s, what="FailOpen=True")
    assert world.answer(name) == {VIPS["west"]}  # the last healthy set, not an empty answer
    assert obj["status"]["healthyClusters"] == 0 and condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "FailOpen")["message"].endswith("still answers: west")
    event = wait_for(lambda: [e for e in events_for(world.host, world.ns, name) if e["reason"] == "FailOpen"])
    assert event[0]["type"] == "Warning" and "west" in event[0]["message"]

    for region in (a, b):
        probers.report(region, "east")
    world.wait_answer(name, {VIPS["east"]})
    wait_for(lambda: condition(intent(world.host, world.ns, "servicednsrecords", name), "FailOpen")
             .get("status") == "False", what="FailOpen=False")


def test_reports_for_an_intent_without_a_health_check_change_nothing(world: World, probers: Probers) -> None:
    name = unique("web")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name)
    world.wait_answer(name, set(VIPS.values()))
    for region in probers.regions:
        probers.report(region, "east", world.down(name, "east"))
    # A checked intent reported in the same reports is reconciled after them: once it moved, so would this one.
    checked = checked_service(world)
    for region in probers.regions:
        probers.report(region, "east", world.down(name, "east"), world.down(checked, "east"))
    world.wait_answer(checked, {VIPS["west"]})
    assert world.answer(name) == set(VIPS.values())
    assert all("healthCheck" not in d for d in world.status(name)["dns"])


def test_a_host_without_the_health_report_crd_still_publishes_by_readiness(fleet: Fleet, tmp_path: Path) -> None:
    """An install that lacks the HealthReport CRD (404 on every list) must not hold up every reconcile: the
    probe has no say, readiness decides, and the status says Unknown."""
    crds = tmp_path / "crds"
    crds.mkdir()
    for path in CRD_DIR.glob("*.yaml"):
        if "healthreports" not in path.name:
            shutil.copy(path, crds / path.name)
    with KubeAPIServer("bare-host", tmp_path / "bare-host") as bare:
        api = bare.api_client()
        apply_crds(api, crds)
        for member in ("east", "west"):
            register_member(api, member, *REGIONS[member], fleet.members[member].embedded_kubeconfig())
        host = client_for(bare)
        namespace = new_namespace(fleet, "agg-no-reports")
        ensure_namespace(api, namespace)
        create_domain(host, namespace)
        name = unique("web")
        deploy_service(fleet, namespace, name, both())
        create_service_intent(host, namespace, name, healthCheck=CHECK)
        with AggregatorProcess(bare.kubeconfig, [f"--namespace={namespace}", "--leader-election=false",
                                                 "--log-format=text"], tmp_path / "aggregator") as aggregator:
            glob = f"{name}.{namespace}.fleet.svc.example.com"
            wait_records(host, namespace, f"service-{name}", lambda r: r.get((glob, "A")) == set(VIPS.values()))
            status = wait_for(lambda: (s := intent(host, namespace, "servicednsrecords", name).get("status"))
                              and s.get("dns") and s, what="status")
            assert {d["healthCheck"]["verdict"] for d in status["dns"]} == {"Unknown"}
            assert "cannot read the probers' reports or Leases" in aggregator.log()
