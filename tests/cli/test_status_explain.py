"""`fleetdns status` and `fleetdns explain` against the live federation (real API servers, probers in three regions,
ExternalDNS, webhook, etcd and CoreDNS per region), run as an operator runs them: what they say is compared with
what the system wrote (intent status, DNSEndpoints) and with what each regional CoreDNS answers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetdns.kubeapi import KubeClient
from rig.aggregator import client_for
from rig.dnsclient import DNSClient
from rig.federation import Federation
from rig.waiting import wait_for
from tests.support.aggregator import samples
from tests.support.federation import (
    checked_app,
    federation_namespace,
    running_federation,
)

pytestmark = [pytest.mark.apiserver, pytest.mark.externaldns, pytest.mark.coredns, pytest.mark.etcd]
FLEETDNS = Path(sys.executable).with_name("fleetdns")
SETTLE = 60.0
PARIS = {"latitude": 48.8566, "longitude": 2.3522}  # nearer east (Frankfurt) than west (New York)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    yield from running_federation(tmp_path_factory, "cli-live")


@pytest.fixture(scope="module")
def host(fed: Federation) -> KubeClient:
    return client_for(fed.fleet.host)


@pytest.fixture(scope="module")
def kubeconfig(fed: Federation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fed.fleet.operator_kubeconfig(tmp_path_factory.mktemp("operator") / "kubeconfig")


def dns_flags(fed: Federation) -> list[str]:
    flags = []
    for name, region in fed.regions.items():
        assert region.coredns is not None
        flags.append(f"--dns={name}={region.coredns.host}:{region.coredns.port}")
    return flags


def fleetdns(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FLEETDNS), "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=60)


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.stderr == "", done.stderr
    return json.loads(done.stdout)


def test_status_shows_a_healthy_fleet_then_an_app_failing_open_and_a_silent_prober_and_exits_4(
        fed: Federation, host: KubeClient, kubeconfig: Path) -> None:
    ns = federation_namespace(fed, host, "status")
    name, vips = checked_app(fed, host, ns, "web")
    fed.wait_for_answers(name, {vips["east"][0], vips["west"][0]}, SETTLE)
    ours = lambda found: [a for a in found["apps"]["needingAttention"] if a["namespace"] == ns]  # noqa: E731

    def healthy() -> dict[str, Any] | None:
        """Healthy with every prober's Lease seen: each prober takes its Lease a retry period after it starts, and
        north (a region without a member) is known to status by its Lease alone."""
        done = fleetdns(kubeconfig, "status", "--host-context", "host", *dns_flags(fed), "-o", "json")
        found = as_json(done)
        return found if done.returncode == 0 and len(found["regions"]) == len(fed.probers) else None

    found = wait_for(healthy, 30, "status reporting the fleet healthy with every prober (exit code 0)", interval=0.5)
    assert found["healthy"]
    assert {(m["name"], m["state"]) for m in found["members"]} == {("east", "Connected"), ("west", "Connected")}
    regions = {r["region"]: r for r in found["regions"]}
    assert set(regions) == {"east", "west", "north"}
    assert all(r["voting"] for r in regions.values()), regions
    assert regions["east"]["dns"].endswith("ms)") and regions["west"]["dns"].endswith("ms)"), regions
    assert regions["north"]["dns"] == "not checked"  # a prober region without a DNS stack

    for member in ("east", "west"):
        fed.dataplane.set_app_status(member, name, 500)
    try:
        def failing_open() -> dict[str, Any] | None:
            done = fleetdns(kubeconfig, "status", "--host-context", "host", "-o", "json")
            return as_json(done) if done.returncode == 4 and ours(as_json(done)) else None

        found = wait_for(failing_open, SETTLE, "status listing the app failing open", interval=0.5)
        assert [(a["name"], a["state"]) for a in ours(found)] == [("web", "FailOpen")]
        assert not found["healthy"]
        assert fed.aggregator is not None  # the alert on fail-open in force reads the same fact from the metrics
        assert any(labels["condition"] == "FailOpen" and labels["status"] == "True" and value >= 1
                   for labels, value in samples(fed.aggregator, "fleetdns_aggregator_intents"))
    finally:
        for member in ("east", "west"):
            fed.dataplane.set_app_status(member, name, None)

    north = fed.probers["north"]
    north.stop()
    try:
        def north_silent() -> str | None:
            done = fleetdns(kubeconfig, "status", "--host-context", "host")  # the table, as a person reads it
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith("north ")), "")
            return done.stdout if done.returncode == 4 and "no:" in line else None

        table = wait_for(north_silent, 30, "status showing north out of the vote", interval=0.5)
        assert "released the Lease" in table or "not renewed" in table, table
        assert "\033[" not in table, "no colour when the output is not a terminal"
        assert table.splitlines()[0] == "MEMBERS" and "fleet needs attention" in table
    finally:
        north.start()
    wait_for(lambda: fleetdns(kubeconfig, "status", "--host-context", "host").returncode == 0, 30,
             "north voting again", interval=0.5)


def test_explain_follows_the_chain_from_the_intent_to_each_regions_live_answer_and_flags_a_region_behind(
        fed: Federation, host: KubeClient, kubeconfig: Path) -> None:
    ns = federation_namespace(fed, host, "explain")
    name, vips = checked_app(fed, host, ns, "shop",
                             loadBalancing={"policy": "Failover", "failoverOrder": ["east", "west"]})
    fed.wait_for_answers(name, {vips["east"][0]}, SETTLE)

    def explained(*extra: str) -> tuple[int, dict[str, Any]]:
        done = fleetdns(kubeconfig, "explain", name, "--host-context", "host", *dns_flags(fed), "-o", "json", *extra)
        return done.returncode, as_json(done)

    code, found = explained()
    assert code == 0 and found["consistent"], found
    assert found["intent"] == {"kind": "ServiceDNSRecord", "namespace": ns, "name": "shop", "origin": "hand-written"}
    assert found["policy"] == "Failover"
    assert {c["cluster"]: c["healthy"] for c in found["clusters"]} == {"east": True, "west": True}
    east_only = {"A": [vips["east"][0]], "AAAA": [vips["east"][1]]}
    assert {r["region"]: (r["view"], r["should"], r["serves"]) for r in found["regions"]} == {
        region: (f"region-{region}", east_only, east_only) for region in ("east", "west")}

    fed.dataplane.set_app_status("east", name, 500)
    fed.wait_for_answers(name, {vips["west"][0]}, SETTLE)
    def east_out() -> tuple[int, dict[str, Any], dict[str, Any]] | None:
        code, found = explained()
        east = next(c for c in found["clusters"] if c["cluster"] == "east")
        return None if east["healthy"] else (code, found, east)

    code, found, east = wait_for(east_out, SETTLE, "explain showing east out of the answer", interval=0.5)
    assert east["healthCheck"]["verdict"] == "Down" and "HealthCheckFailed" in east["reason"], east
    assert code == 0 and all(r["serves"] == {"A": [vips["west"][0]], "AAAA": [vips["west"][1]]}
                             for r in found["regions"]), found

    west_region = fed.regions["west"]
    assert west_region.externaldns is not None
    west_region.externaldns.stop()  # west's DNS stack stops following the host: it keeps serving the failed-over answer
    try:
        fed.dataplane.set_app_status("east", name, None)
        fed.wait_for_answers(name, {"east": {vips["east"][0]}}, SETTLE)
        code, found = wait_for(lambda: r if (r := explained())[0] == 4 else None, SETTLE,
                               "explain flagging west serving the old answer", interval=0.5)
        regions = {r["region"]: r for r in found["regions"]}
        assert regions["east"]["matches"] and not regions["west"]["matches"]
        assert regions["west"]["serves"]["A"] == [vips["west"][0]] and regions["west"]["should"] == east_only
        assert "should serve" in regions["west"]["problem"]
    finally:
        west_region.externaldns.start()
    fed.wait_for_answers(name, {vips["east"][0]}, SETTLE)
    assert explained()[0] == 0


def test_explain_puts_a_client_in_its_views_network_and_checks_what_that_view_serves(
        fed: Federation, host: KubeClient, kubeconfig: Path) -> None:
    ns = federation_namespace(fed, host, "views")
    name, vips = checked_app(fed, host, ns, "maps", loadBalancing={"policy": "GeoProximity"})
    fed.create_dns_view("cli-office", {"clientCIDRs": ["127.0.9.0/24"], "location": PARIS})
    try:
        office = DNSClient("127.0.9.7")
        fed.wait_for_answers(name, {vips["east"][0]}, SETTLE, asker=office)  # Paris: east is nearest
        fed.wait_for_answers(name, {"east": {vips["east"][0]}, "west": {vips["west"][0]}}, SETTLE)  # region views

        done = fleetdns(kubeconfig, "explain", name, "--host-context", "host", "--client", "127.0.9.7",
                        *dns_flags(fed), "-o", "json")
        found = as_json(done)
        assert done.returncode == 0, found
        assert "127.0.9.0/24, a clientCIDR of DNSView cli-office" in found["view_reason"]
        assert {r["region"]: (r["view"], r["serves"]["A"]) for r in found["regions"]} == {
            "east": ("cli-office", [vips["east"][0]]), "west": ("cli-office", [vips["east"][0]])}
        office_answer = next(a for a in found["answers"] if a["view"] == "cli-office")
        assert [c["cluster"] for c in office_answer["clusters"]] == ["east"], office_answer

        elsewhere = as_json(fleetdns(kubeconfig, "explain", name, "--host-context", "host", "--client", "127.0.3.3",
                                     *dns_flags(fed), "-o", "json"))
        assert {r["region"]: (r["view"], r["serves"]["A"]) for r in elsewhere["regions"]} == {
            "east": ("region-east", [vips["east"][0]]), "west": ("region-west", [vips["west"][0]])}
    finally:
        fed.delete_dns_view("cli-office")


@pytest.mark.parametrize(("args", "code", "message"), [
    (["explain", "nothing.gslb.example.com"], 3, "no intent publishes nothing.gslb.example.com"),
    (["explain", "x.gslb.example.com", "--client", "not-an-ip"], 2, "--client 'not-an-ip': not an IP address"),
    (["status", "--dns", "east"], 2, "give REGION=ADDRESS[:PORT]"),
    (["status", "--dns", "east=dns.example:53"], 2, "is not an IP address"),
])
def test_a_name_no_intent_publishes_or_a_bad_flag_gets_its_own_exit_code_and_message(
        kubeconfig: Path, args: list[str], code: int, message: str) -> None:
    done = fleetdns(kubeconfig, *args, "--host-context", "host")
    assert (done.returncode, done.stdout) == (code, "")
    assert message in done.stderr
