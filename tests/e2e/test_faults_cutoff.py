"""Regions cut off from the VIPs and from the host, through the whole chain (issue 17, docs/design/faults.md §2).

One federation for the module: host and members east and west, a DNS stack in each of those two regions (etcd, the
webhook, ExternalDNS, the zone-file sidecar, CoreDNS), a real prober in east, west and north, each in its region's
network namespace, and the aggregator. Every region's path to the host goes through the data plane
(``Federation(host_cuts=True)``), so a cut is real for every process of the region: ``cut_from_vips`` drops every
answer from the member VIPs to the region's prober (its checks time out), ``cut_from_api`` refuses and resets the
connections of its prober (Lease, HealthReports) and of its DNS stack (the webhook's lag check and its relay of
ExternalDNS's watches) to the host API server.

A cycle cuts, in turn: one region off the VIPs, another off the host, the third off both (so that each cut hits a
region with a DNS stack and one without over the cycles), then two of three off the host. While a region is cut no
app's answer moves and every region's CoreDNS keeps answering (each asked for every app ten times a second: no
SERVFAIL, no empty answer, no other answer); after the restore a deliberate failover converges in every region.
With two of three cut off from the host the lone fresh region decides (policies.md §3, the quorum floor): its Down
moves the app in its own region's answers while the cut region's CoreDNS keeps its last records (fail static), its
all-Down fails open, and on return every region converges on its decision with no flap on the way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import pytest

from fleetdns.apipaths import HEALTH_REPORTS, SERVICE_DNS_RECORDS
from fleetdns.kubeapi import KubeClient
from rig.aggregator import client_for
from rig.dataplane import DataPlane
from rig.federation import Federation
from rig.scrape import scrape
from rig.waiting import holds_for, wait_for
from tests.support.aggregator import condition, intent, samples
from tests.support.answers import AnswerCount
from tests.support.canaries import plant_in_federation, unserved
from tests.support.federation import (
    PROBER_REGIONS,
    chain_processes,
    create_intent,
    federation_namespace,
    http_check,
    run_everywhere,
    running_federation,
    service_name,
)
from tests.support.soak import Tally, times

pytestmark = [pytest.mark.fault, pytest.mark.apiserver, pytest.mark.externaldns, pytest.mark.coredns,
              pytest.mark.etcd]

CYCLES = times(1, 20)  # each: a region off the VIPs, one off the host, one off both, two of three off the host
GRACE = 6  # --prober-grace-period, seconds: three of the probers' Lease renewals, so a loaded machine flaps no region
HOLD = 2.0  # seconds every answer is watched once a cut has taken effect (beyond the wait for that effect)
EFFECT = 30.0  # bound for a cut to take effect: the region's reports, its Lease gone stale
CONVERGE_SECONDS = 10.0  # from a restore to every region answering the change made then
SETTLE = 60.0  # first publication
RATE = 10.0  # queries a second to each region for each app

# (region, name) -> the exact answer that region's CoreDNS must give, or None: moving (any non-empty answer).
Expected = dict[tuple[str, str], set[str] | None]
Timings = dict[str, list[float]]  # what was timed -> seconds, one per cycle (noted in the tally as a range)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    yield from running_federation(tmp_path_factory, "cutoffs", host_cuts=True,
                                  aggregator_args=(f"--prober-grace-period={GRACE}s",))


@pytest.fixture(scope="module")
def host(fed: Federation) -> KubeClient:
    return client_for(fed.fleet.host)


def dataplane_of(fed: Federation) -> DataPlane:
    assert fed.dataplane is not None
    return fed.dataplane


@dataclass
class App:
    """One app in both members behind their VIPs; Failover in ``order`` (empty: RoundRobin over both). ``failed``:
    the members whose copy answers 500 (its endpoints stay ready: only the probers see it). ``answer``: what every
    region must serve, the first healthy copy's VIP (every healthy one's under RoundRobin) or, with every copy
    failed, the answer from before (fail open)."""

    service: str
    fqdn: str
    vips: dict[str, tuple[str, str]]
    order: tuple[str, ...]
    failed: set[str] = field(default_factory=set)
    answer: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._answer_now()

    def set_failed(self, fed: Federation, member: str, failed: bool) -> None:
        dataplane_of(fed).set_app_status(member, self.fqdn, 500 if failed else None)
        (self.failed.add if failed else self.failed.discard)(member)
        self._answer_now()

    def _answer_now(self) -> None:
        up = [member for member in (self.order or self.vips) if member not in self.failed]
        if up:
            self.answer = {self.vips[member][0] for member in (up[:1] if self.order else up)}


def start_apps(fed: Federation, host: KubeClient, ns: str) -> dict[str, App]:
    """``api`` and ``shop`` (Failover, each member first once) take the deliberate failovers; ``media``
    (RoundRobin) never changes; ``lone`` (Failover) is the app the lone region decides on. Each published and
    checked by every region."""
    plans = {"api": ("east", "west"), "shop": ("west", "east"), "media": (), "lone": ("east", "west")}
    apps = {}
    for service, order in plans.items():
        fqdn = service_name(fed, ns, service)
        apps[service] = App(service, fqdn, run_everywhere(fed, ns, service, fqdn), order)
        balancing = {"loadBalancing": {"policy": "Failover", "failoverOrder": list(order)}} if order else {}
        create_intent(host, ns, service, healthCheck=http_check(), **balancing)
    for app in apps.values():
        fed.wait_for_answers(app.fqdn, app.answer, SETTLE)
        dataplane_of(fed).wait_checked(app.fqdn, timeout=SETTLE)
    return apps


def everywhere(fed: Federation, apps: dict[str, App], moving: App | None = None) -> Expected:
    """Every region must answer every app as its ``answer`` says (``moving``: any non-empty answer)."""
    return {(region, app.fqdn): None if app is moving else set(app.answer) for region in fed.regions
            for app in apps.values()}


@contextmanager
def asked(fed: Federation, expected: Expected, record: Tally, phase: str) -> Iterator[None]:
    """Every region's CoreDNS asked for every app, RATE times a second each, while the block runs: a SERVFAIL,
    empty or missing answer is a failed answer; an answer other than an exact expectation is a spurious change,
    counted as lost (both noted with ``phase``)."""
    counts = {}
    for (region, name), want in expected.items():
        coredns = fed.regions[region].coredns
        assert coredns is not None
        counts[region, name] = AnswerCount([(coredns.host, coredns.port)], name, want or set(), rate=RATE)
    try:
        with ExitStack() as stack:
            for count in counts.values():
                stack.enter_context(count.running())
            yield
    finally:  # counted even when the phase failed: the report shows what was seen
        for (region, name), count in counts.items():
            record.queries += count.queries
            record.failed_answers += count.failed
            if count.failed:
                record.note(f"{phase}: {region} failed {count.failed} answers for {name} ({dict(count.counts)})")
            if expected[region, name] is not None and count.counts["other"]:
                record.lost += count.counts["other"]
                record.note(f"{phase}: {region} answered {name} otherwise {count.counts['other']}x, "
                            f"e.g. {count.wrong}")


def answering(fed: Federation, expected: dict[tuple[str, str], set[str]]) -> bool:
    """Whether every (region, name) is answered exactly as expected now."""
    return all(fed.answers(region, name) == want for (region, name), want in expected.items())


def converge(fed: Federation, apps: dict[str, App], since: float, what: str) -> float:
    """Seconds from ``since`` until every region answers every app as expected (AssertionError past
    CONVERGE_SECONDS, with what each region answers)."""
    want: dict[tuple[str, str], set[str]] = {key: answer for key, answer in everywhere(fed, apps).items()
                                             if answer is not None}
    try:
        wait_for(lambda: answering(fed, want), since + CONVERGE_SECONDS - time.monotonic(), what)
    except AssertionError as error:
        seen = {f"{region} {name.split('.')[0]}": sorted(fed.answers(region, name)) for region, name in want}
        raise AssertionError(f"{error}; expected {({k[1].split('.')[0]: sorted(v) for k, v in want.items()})}, "
                             f"answered {seen}") from error
    return time.monotonic() - since


# What each cut shows to look at -------------------------------------------------------------------------------------

def reported_down(host: KubeClient, ns: str, region: str) -> set[tuple[str, str]]:
    """(cluster, service) pairs ``region``'s HealthReports list Down."""
    reports = host.get(HEALTH_REPORTS.path(ns)).get("items") or []
    return {(r["spec"]["cluster"], e["intent"].split("/", 1)[1]) for r in reports if r["spec"]["region"] == region
            for e in (r.get("status") or {}).get("down") or []}


def sees_everything_down(fed: Federation, region: str) -> bool:
    """Whether ``region``'s prober sees every subject it checks Down (its own view, written or not)."""
    seen = scrape(f"{fed.probers[region].url}/metrics")
    return seen.get("fleetdns_prober_subjects", 0) > 0 and \
        seen.get("fleetdns_prober_subjects_down") == seen.get("fleetdns_prober_subjects")


def fresh(fed: Federation, region: str) -> bool:
    """Whether the aggregator counts ``region``'s prober as a voter (its Lease seen renewed within GRACE)."""
    assert fed.aggregator is not None
    votes = {labels["region"]: value for labels, value in
             samples(fed.aggregator, "fleetdns_aggregator_prober_region_fresh")}
    return votes.get(region) == 1.0


def reaches_host(fed: Federation, region: str) -> bool:
    """Whether ``region``'s webhook reached the host at its last try (it relays ExternalDNS's watches)."""
    webhook = fed.regions[region].webhook
    assert webhook is not None
    return webhook.client.metrics().get("fleetdns_webhook_host_reachable") == 1.0


def exited(fed: Federation) -> list[str]:
    """The processes of the chain that are no longer running (none may exit because of a cut)."""
    return [name for name, process, _ in chain_processes(fed) if process is None or not process.running]


# The cut-offs --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cut:
    """``region`` cut off from the VIPs, the host, or both."""

    region: str
    vips: bool
    host: bool

    @property
    def kind(self) -> str:
        return "off the " + " and ".join(p for p, cut in (("VIPs", self.vips), ("host", self.host)) if cut)

    @property
    def what(self) -> str:
        return f"{self.region} {self.kind}"

    def apply(self, dataplane: DataPlane) -> None:
        if self.vips:
            dataplane.cut_from_vips(self.region)
        if self.host:
            dataplane.cut_from_api(self.region)

    def in_effect(self, fed: Federation, host: KubeClient, ns: str, apps: dict[str, App]) -> bool:
        """The region sees every app Down (and, with the host reachable, says so in its reports); cut off from the
        host, its prober no longer votes and its webhook no longer reaches the host."""
        if self.vips:
            if not sees_everything_down(fed, self.region):
                return False
            everything = {(member, app.service) for app in apps.values() for member in app.vips}
            if not self.host and not everything <= reported_down(host, ns, self.region):
                return False
        if self.host:
            if fresh(fed, self.region):
                return False
            if self.region in fed.regions and reaches_host(fed, self.region):
                return False
        return True


def cut_off_one(fed: Federation, host: KubeClient, ns: str, apps: dict[str, App], cut: Cut, deliberate: App,
                record: Tally, timings: Timings) -> None:
    """Cut one region off; until its cut shows and HOLD seconds more, no answer moves; restore it and fail
    ``deliberate`` over (or back) at once: every region serves the change within CONVERGE_SECONDS."""
    dataplane = dataplane_of(fed)
    with asked(fed, everywhere(fed, apps), record, cut.what):
        cut.apply(dataplane)
        try:
            wait_for(lambda: cut.in_effect(fed, host, ns, apps), EFFECT, f"{cut.what} in effect")
            holds_for(lambda: not exited(fed) and cut.in_effect(fed, host, ns, apps), HOLD, f"{cut.what} holding")
        finally:
            dataplane.heal(cut.region)
    restored = time.monotonic()
    first = deliberate.order[0]
    with asked(fed, everywhere(fed, apps, moving=deliberate), record, f"after {cut.what}"):
        deliberate.set_failed(fed, first, first not in deliberate.failed)
        seconds = converge(fed, apps, restored, f"{deliberate.service} moved everywhere after {cut.what}")
    record.injection(seconds)
    timings.setdefault(f"a failover converged after a region {cut.kind}", []).append(seconds)
    assert not exited(fed), f"exited during {cut.what}: {exited(fed)}"


def two_of_three_off_the_host(fed: Federation, host: KubeClient, ns: str, apps: dict[str, App], lone: str,
                              record: Tally, timings: Timings) -> None:
    """Every region but ``lone`` (a region with a DNS stack) cut off from the host; the lone fresh region decides.
    The app ``lone`` failing in its first member moves in ``lone``'s answers while the cut DNS region keeps its last
    records (fail static); failing in both fails open; its second member healing ends that. On return, with the
    first member still failed, every region converges on the lone region's answer with no flap while the returning
    regions vote again; healing the first member converges too."""
    dataplane = dataplane_of(fed)
    app = apps["lone"]
    first, second = app.order
    cut = [region for region in PROBER_REGIONS if region != lone]
    dark = next(region for region in cut if region in fed.regions)  # cut off, with a DNS stack
    what = f"{' and '.join(cut)} off the host"
    before = set(app.answer)

    def fail_open(state: str) -> bool:
        return condition(intent(host, ns, SERVICE_DNS_RECORDS.plural, app.service), "FailOpen").get("status") == state

    try:
        with asked(fed, everywhere(fed, apps), record, what):
            for region in cut:
                dataplane.cut_from_api(region)
            wait_for(lambda: not any(fresh(fed, r) for r in cut) and not reaches_host(fed, dark), EFFECT,
                     f"{what} in effect")
            assert fresh(fed, lone), f"{lone} no longer votes: nothing would decide"
            holds_for(lambda: not exited(fed), HOLD, f"{what} holding")

        # The lone region's Down moves the app in its answers; the cut region's CoreDNS keeps its last records.
        stale = {(dark, app.fqdn): before}
        with asked(fed, {**everywhere(fed, apps, moving=app), **stale}, record, f"{what}: {app.service} fails"):
            failed = time.monotonic()
            app.set_failed(fed, first, True)
            wait_for(lambda: answering(fed, {(lone, app.fqdn): app.answer}), CONVERGE_SECONDS,
                     f"{lone} alone moving {app.service} off {first}")
            timings.setdefault("the lone region moved a failed app in its answers", []).append(
                time.monotonic() - failed)

        # Its all-Down fails open (the last answer stays), and its Up alone ends that.
        with asked(fed, {**everywhere(fed, apps), **stale}, record, f"{what}: {app.service} fails everywhere"):
            app.set_failed(fed, second, True)
            wait_for(lambda: fail_open("True"), CONVERGE_SECONDS, f"{app.service} failing open on {lone}'s word")
            holds_for(lambda: not exited(fed), HOLD, f"{what}: failing open")
            app.set_failed(fed, second, False)
            wait_for(lambda: fail_open("False"), CONVERGE_SECONDS, f"{app.service} healthy again on {lone}'s word")
    finally:
        for region in cut:
            dataplane.heal(region)

    # On return every region converges on the lone region's answer, and it stays while the returning regions vote
    # again: fresh, with their own reports of the first member Down.
    restored = time.monotonic()
    with asked(fed, {**everywhere(fed, apps), (dark, app.fqdn): None}, record, f"after {what}"):
        seconds = converge(fed, apps, restored, f"every region on {lone}'s answer after {what}")
        wait_for(lambda: all(fresh(fed, r) and (first, app.service) in reported_down(host, ns, r) for r in cut),
                 EFFECT, f"{', '.join(cut)} voting again")
    with asked(fed, everywhere(fed, apps), record, f"after {what}, all voting"):
        holds_for(lambda: not exited(fed), HOLD, f"after {what}, all voting")
    record.injection(seconds)
    timings.setdefault("every region on the lone region's answer after two of three returned", []).append(seconds)

    healed = time.monotonic()
    with asked(fed, everywhere(fed, apps, moving=app), record, f"after {what}: {app.service} healed"):
        app.set_failed(fed, first, False)
        timings.setdefault("the app healed after that, every region", []).append(
            converge(fed, apps, healed, f"{app.service} healed"))
    assert not exited(fed), f"exited during {what}: {exited(fed)}"


@pytest.mark.timeout(300 + 120 * CYCLES)
def test_regions_cut_off_move_no_answer_and_a_lone_fresh_region_decides_and_fails_open(
        fed: Federation, host: KubeClient, tally: Callable[..., Tally]) -> None:
    record = tally("regions cut off from the VIPs, the host, both; two of three off the host (lone region decides)")
    ns = federation_namespace(fed, host, "cut")
    apps = start_apps(fed, host, ns)
    canaries = plant_in_federation(fed, host, ns, apps["media"].fqdn, SETTLE)
    deliberate = [apps["api"], apps["shop"]]
    dns_regions = sorted(fed.regions)
    timings: Timings = {}
    for cycle in range(CYCLES):
        # north (no DNS stack) first off the VIPs, then a DNS region off the host, the other off both; rotating
        first, second, third = (PROBER_REGIONS[(cycle + offset) % 3] for offset in (2, 0, 1))
        for index, cut in enumerate((Cut(first, vips=True, host=False), Cut(second, vips=False, host=True),
                                     Cut(third, vips=True, host=True))):
            cut_off_one(fed, host, ns, apps, cut, deliberate[(cycle * 3 + index) % 2], record, timings)
        two_of_three_off_the_host(fed, host, ns, apps, dns_regions[cycle % 2], record, timings)
    for what, seconds in timings.items():
        record.note(f"{what}: {min(seconds):.1f}–{max(seconds):.1f} s ({len(seconds)}x)")

    changed = [key for canary in canaries for key in canary.changed()]
    gone = unserved(fed, canaries)
    record.lost += len(changed) + len(gone)
    assert not changed, f"canaries changed: {changed}"
    assert not gone, f"canaries no longer answered: {gone}"
    assert record.injected == 4 * CYCLES
    assert record.queries >= 1000, record
    assert record.failed_answers == 0, record.notes
    assert record.lost == 0, record.notes
    assert record.worst_seconds is not None and record.worst_seconds <= CONVERGE_SECONDS, record.notes
