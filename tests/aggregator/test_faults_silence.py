"""Silence, and what the probers' quorum still decides through it: the two decisions of docs/design/faults.md §2
(a member's API server silent; two of three prober regions silent), against real host, east and west API servers
and the aggregator as a process. The tests play the regions' probers (Leases renewed, HealthReports written as a
prober writes them).

Member silence: a member's API server stopped while the probers see its app Up keeps its targets well past the grace
period; a Down quorum takes them out; a member stopped with its app Down stays out; an intent without a health
check loses the stopped member after the grace period, as before. Quorum floor: with two of three regions stale,
the lone fresh region decides (one cluster out, then fail open), and the returning regions' Up brings it back.

Every answer is sampled while it must not move: a change there is a flap, counted as lost in the test's tally.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from rig import Fleet, KubeAPIServer
from rig.apiserver import wait_all_ready
from rig.waiting import holds_for
from tests.support.aggregator import (
    VIPS,
    both,
    condition,
    create_service_intent,
    deploy_service,
    dns_endpoint,
    records,
    samples,
    unique,
    wait_for,
)
from tests.support.probers import CHECK, Probers
from tests.support.soak import Tally, times
from tests.support.world import ProberWorld, prober_world, three_regions

pytestmark = [pytest.mark.apiserver, pytest.mark.fault]
GRACE = 2.0  # --member-grace-period
PROBER_GRACE = 2.0  # --prober-grace-period
BOTH, EAST, WEST = frozenset(VIPS.values()), frozenset({VIPS["east"]}), frozenset({VIPS["west"]})
STOPS = times(1, 5)  # stop/return cycles of the member API servers: up to a minute each on the shared machine


@dataclass
class World(ProberWorld):

    def answer(self, service: str) -> frozenset[str]:
        """The A targets of the service's global name in its DNSEndpoint (empty: no answer)."""
        found = records(dns_endpoint(self.host, self.ns, f"service-{service}"))
        return frozenset(found.get((self.global_name(service), "A"), set()))

    def wait_answer(self, service: str, expected: frozenset[str], timeout: float = 15.0) -> float:
        """Seconds until the service answers ``expected``."""
        started = time.monotonic()
        wait_for(lambda: self.answer(service) == expected, timeout, what=f"{service} answering {sorted(expected)}")
        return time.monotonic() - started

    def all_connected(self) -> bool:
        connected = {labels["cluster"]: value for labels, value in
                     samples(self.aggregator, "fleetdns_aggregator_member_connected")}
        return all(connected.get(name) == 1.0 for name in self.fleet.members)


@dataclass
class Flaps:
    """Answers sampled while they must stay as they are: each change away from the expected answer is one flap,
    counted as lost in ``tally`` (with a note of what was seen)."""

    world: World
    tally: Tally
    wrong: set[str] = field(default_factory=set)  # services answering wrongly at the last sample

    def steady(self, expected: dict[str, frozenset[str]]) -> bool:
        """One sample of every service in ``expected``; always True, so holds_for samples the whole window."""
        for service, answer in expected.items():
            seen = self.world.answer(service)
            if seen != answer and service not in self.wrong:
                self.wrong.add(service)
                self.tally.lost += 1
                self.tally.note(f"{service} answered {sorted(seen)} where {sorted(answer)} must stay")
            elif seen == answer:
                self.wrong.discard(service)
        return True

    def hold(self, expected: dict[str, frozenset[str]], seconds: float) -> None:
        holds_for(lambda: self.steady(expected), seconds, what="the answers")

    def until(self, done: Callable[[], bool], expected: dict[str, frozenset[str]], timeout: float,
              what: str) -> None:
        """Wait for ``done`` while ``expected`` is sampled."""
        wait_for(lambda: self.steady(expected) and done(), timeout, what=what)


@pytest.fixture(scope="module")
def world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    flags = (f"--member-grace-period={GRACE}s", f"--prober-grace-period={PROBER_GRACE}s")
    with prober_world(fleet, tmp_path_factory.mktemp("aggregator"), "agg-silence", *flags, world=World) as started:
        yield started


@pytest.fixture
def probers(world: World) -> Iterator[Probers]:
    with three_regions(world) as started:
        yield started


def service(world: World, checked: bool = True) -> str:
    """A Service at both VIPs with ready endpoints, and its intent (with CHECK unless ``checked`` is False)."""
    name = unique("web")
    deploy_service(world.fleet, world.ns, name, both())
    create_service_intent(world.host, world.ns, name, **({"healthCheck": CHECK} if checked else {}))
    return name


def entry(world: World, name: str, cluster: str) -> dict[str, Any]:
    return world.entry(name, cluster) or {}


def start_together(servers: list[KubeAPIServer]) -> float:
    """Restart stopped API servers at once; seconds until all of them answer."""
    started = time.monotonic()
    for server in servers:
        server.start(wait=False)
    wait_all_ready(servers)
    return time.monotonic() - started


@pytest.mark.timeout(120 + 90 * STOPS)
def test_a_silent_member_keeps_its_targets_while_a_quorum_proves_its_app_up_and_leaves_on_a_down_quorum(
        world: World, probers: Probers, tally: Callable[..., Tally]) -> None:
    counted = tally("member API servers stopped while the probers see their apps (member silence)")
    flaps = Flaps(world, counted)
    proven, down_in_west, unchecked = service(world), service(world), service(world, checked=False)
    a, b, _ = probers.regions
    east, west = world.fleet.members["east"], world.fleet.members["west"]
    for cycle in range(STOPS):
        # The stand-in probers: a and b see down_in_west's app Down in west, everything else Up.
        for region in (a, b):
            probers.report(region, "east")
            probers.report(region, "west", world.down(down_in_west, "west"))
        wait_for(world.all_connected, timeout=45, what="every member connected")
        expected = {proven: BOTH, down_in_west: EAST, unchecked: BOTH}
        for name, answer in expected.items():
            world.wait_answer(name, answer)

        stopped: list[KubeAPIServer] = []
        try:
            silenced = time.monotonic()
            east.stop_apiserver()
            stopped.append(east)
            # Without a health check nothing proves east's app alive: it leaves when the grace period ends.
            flaps.until(lambda: world.answer(unchecked) == WEST, {proven: BOTH, down_in_west: EAST},
                        GRACE + 15, "east out of the unchecked intent's answer")
            assert time.monotonic() - silenced >= GRACE
            # With one, the probers' Up keeps east, well past the grace period, without a flap.
            flaps.hold({proven: BOTH, down_in_west: EAST, unchecked: WEST}, max(0.0, silenced + 3 * GRACE
                                                                                  - time.monotonic()))
            kept = entry(world, proven, "east")
            assert kept["healthy"] and str(kept["reason"]).startswith("MemberUnreachableServing: "), kept

            # A second member stopped while its app is Down for the quorum: out, and it stays out.
            west.stop_apiserver()
            stopped.append(west)
            flaps.hold({proven: BOTH, down_in_west: EAST}, 2 * GRACE + 1)
            out = entry(world, down_in_west, "west")
            assert not out["healthy"] and str(out["reason"]).startswith("MemberUnreachable: "), out
            assert entry(world, proven, "west")["healthy"]

            # The quorum sees east's app Down now: east leaves, though its member cannot say anything.
            for region in (a, b):
                probers.report(region, "east", world.down(proven, "east"))
            world.wait_answer(proven, WEST)
            wait_for(lambda: entry(world, proven, "east")["reason"] == (
                "MemberUnreachable: API server not answering past the grace period; "
                f"{VIPS['east']} Down for a majority of 3 fresh regions: out of the answer"),
                what="east's reason in the status")  # written just after the DNSEndpoint
        finally:
            back = start_together(stopped)
        # Back: each member's own objects decide again; the unchecked intent has both clusters again. A member that
        # hung while shutting down and starting is retried with a delay growing to 30 s (±20 %): the bound.
        converged = back + world.wait_answer(unchecked, BOTH, timeout=45)
        counted.injection(converged_after=converged)  # one stop/return cycle of both members
        world.wait_answer(proven, WEST)  # its quorum still sees east Down
        counted.note(f"cycle {cycle + 1}: API servers answering {back:.1f} s after the restart, answers back "
                     f"{converged:.1f} s after it")
    assert counted.lost == 0, counted.notes


def test_a_lone_fresh_region_decides_fails_open_and_the_returning_regions_bring_the_cluster_back(
        world: World, probers: Probers, tally: Callable[..., Tally]) -> None:
    counted = tally("two of three prober regions stale (quorum floor: the lone region decides)")
    flaps = Flaps(world, counted)
    wait_for(world.all_connected, timeout=45, what="every member connected")  # a test before may have stopped them
    name = service(world)
    a, b, c = probers.regions
    world.wait_answer(name, BOTH)
    for _ in range(times(1, 20)):
        probers.silence(a)
        probers.silence(b)
        # Until their grace period ends a and b (Up) still vote; the answer must not move meanwhile.
        flaps.until(lambda: {r["region"]: r["fresh"] for r in (entry(world, name, "east").get("healthCheck") or {})
                             .get("regions", [])} == {a: False, b: False, c: True},
                    {name: BOTH}, PROBER_GRACE + 10, "a and b stale in the status")

        probers.report(c, "east", world.down(name, "east"))  # the lone region's Down moves east out
        world.wait_answer(name, WEST)
        wait_for(lambda: entry(world, name, "east")["reason"] == "HealthCheckFailed: Down from 1 of 1 regions",
                 what="the lone region's verdict in the status")  # written just after the DNSEndpoint

        probers.report(c, "west", world.down(name, "west"))  # everything Down: fail open, never an empty answer
        flaps.until(lambda: condition(world.host.get(world.intents.path(world.ns, name)), "FailOpen")
                    .get("status") == "True", {name: WEST}, 15, "FailOpen=True")
        flaps.hold({name: WEST}, 1.0)

        returned = time.monotonic()
        probers.resume(a)
        probers.resume(b)  # their reports list nothing: they vote Up, and c alone is 1 of 3
        world.wait_answer(name, BOTH)
        counted.injection(converged_after=time.monotonic() - returned)  # one stop/return cycle
        probers.report(c, "east")
        probers.report(c, "west")
        flaps.hold({name: BOTH}, 0.5)
    assert counted.lost == 0, counted.notes
