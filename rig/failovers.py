"""Many apps failing over and back at once, through the whole chain, while one regional CoreDNS is under load.

Each app runs in two members behind their VIPs; its ServiceDNSRecord is Failover between them (half the apps east
first, half west first) with an HTTP check (``health_check``). Its first member's app answering 500 (its endpoints stay
ready: only the probers see it) moves its answer to the second member; answering 200 again moves it back, each
time through probers, aggregator, DNSEndpoint, ExternalDNS, webhook, etcd, the zone-file sidecar and CoreDNS.
``AnswerWatch`` asks one CoreDNS for every app, A and AAAA, and counts what came back (dnsperf counts response
codes, not empty answers); ``FailoverChurn`` fails every app over and back in waves, each wave done when the watch
has seen every app's new answer. The load fault test (tests/e2e/test_faults_load.py) and ``bench/load_failover.py``
run them beside dnsperf (rig/dnsperf.py).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from fleetdns.apipaths import HEALTH_REPORTS
from fleetdns.healthreport import parse_health_report
from rig.aggregator import client_for
from rig.dnsperf import Dnsperf, Load, Report, query_lines, udp_drops
from rig.federation import Federation
from rig.waiting import in_background, wait_for
from rig.workloads import ensure_namespace

FAMILIES = {"A": 0, "AAAA": 1}  # record type -> index of its VIP in (IPv4, IPv6)
ENDPOINTS = ["10.1.0.1"]  # every app's one ready endpoint (the stand-in ingress answers for it)
HTTP_GET = {"port": 80, "path": "/healthz"}
# Every check crosses the rig's data plane (a region's network namespace, its delaying forwarder, the member's
# stand-in ingress: Python processes on the same two cores), once per app, member, address family and prober region
# each period: 2 x 2 x 3 = 12 checks per app. At most this many a second keeps the data plane's own work small beside
# the chain and the CoreDNS it exercises (10 apps: every second; 100 apps: every 10 s). At 240 a second (100 apps every
# 5 s) with other work on the machine, healthy apps' checks timed out by the hundreds and both members flapped Down.
CHECKS_PER_SECOND = 120

# dnsperf's offered rate, queries a second. One CoreDNS serves ~47,000 a second from its zone file on this 2-core
# machine when it is quiet (docs/benchmarks-serving.md), but here the whole chain shares the cores with it (three API
# servers, five etcds, the probers, the aggregator, ExternalDNS, the webhooks, the sidecars) and is busy failing apps
# over. At 2,000 a second CoreDNS's kernel receive buffer (~200 queries) overflowed while it waited for a core with
# the machine's load average at ~12; at 500 it held in every run up to ~20, and overflowed above ~25
# (docs/design/faults.md §2, docs/benchmarks-load-failover.md).
RATE = 500
OUTSTANDING = 1_000  # dnsperf's queries in flight: a slow reply never lowers the rate offered
BUFFER_KB = 4_096  # dnsperf's socket buffers: a stall of dnsperf itself loses no reply


def wave_timeout(apps: int) -> float:
    """Seconds one wave (every app failed over, or every app back) has to reach the watched CoreDNS: the
    aggregator writes each app's DNSEndpoint and status in turn, and on this busy machine a wave of 100 apps took
    42-108 s, once more than 130 s (10 apps: 3-9 s); docs/design/faults.md §4."""
    return 60.0 + 2 * apps


def health_check(apps: int) -> dict[str, Any]:
    """Every app's ``spec.healthCheck``: an HTTP GET through its VIPs, every second, or as often as
    CHECKS_PER_SECOND allows for this many apps (the waves then take longer). A failed app answers 500 at once, so
    the timeout (up to 3 s, within the period) only keeps a slow stand-in from failing a healthy app."""
    period = max(1, -(-12 * apps // CHECKS_PER_SECOND))
    return {"httpGet": HTTP_GET, "periodSeconds": period, "timeoutSeconds": min(period, 3), "failureThreshold": 1,
            "successThreshold": 1}


@dataclass(frozen=True)
class FailoverApp:
    """One app: ``order`` is its failoverOrder (first member, then second), ``vips`` each member's (IPv4, IPv6)."""

    name: str
    namespace: str
    service: str
    order: tuple[str, str]
    vips: dict[str, tuple[str, str]]

    def answer(self, failed: bool, rdtype: str = "A") -> str:
        """The one address it answers while its first member's app is ``failed`` or not."""
        return self.vips[self.order[1] if failed else self.order[0]][FAMILIES[rdtype]]

    def answers(self, rdtype: str) -> frozenset[str]:
        """Every answer that is right at some moment of a failover: the first member's or the second's."""
        return frozenset(self.answer(failed, rdtype) for failed in (False, True))


def start_apps(fed: Federation, namespace: str, count: int, domain_ref: str = "fleet",
               timeout: float = 120.0) -> list[FailoverApp]:
    """``count`` Failover apps in every member (``health_check(count)``), published, answered with their first member
    by ``fed``'s every region and checked by every prober region (so a failure is a change, not a first result)."""
    members = tuple(fed.fleet.members)
    if len(members) != 2:
        raise ValueError(f"a failover app needs exactly two members, the federation has {members}")
    for server in fed.fleet.servers:
        ensure_namespace(server.api_client(), namespace)
    apps, check = [], health_check(count)
    for index in range(count):
        service = f"app{index}"
        name = fed.service_name(namespace, service, domain_ref)
        order = members if index % 2 == 0 else members[::-1]
        vips = {member: fed.run_app(member, namespace, service, name, ENDPOINTS) for member in members}
        fed.create_service_intent(namespace, service, domain_ref, create_domain=index == 0, spec={
            "loadBalancing": {"policy": "Failover", "failoverOrder": list(order)}, "healthCheck": check})
        apps.append(FailoverApp(name, namespace, service, order, vips))
    deadline = time.monotonic() + timeout
    assert fed.dataplane is not None
    for app in apps:
        fed.wait_for_answers(app.name, {app.answer(False)}, deadline - time.monotonic())
        fed.dataplane.wait_checked(app.name, timeout=deadline - time.monotonic())
    return apps


def reported_down(fed: Federation, namespaces: set[str]) -> int:
    """Down entries in the probers' HealthReports of ``namespaces``: none once no failover is on its way."""
    host = client_for(fed.fleet.host)
    return sum(len(parse_health_report(item).down) for namespace in namespaces
               for item in host.get(HEALTH_REPORTS.path(namespace)).get("items") or [])


class AnswerWatch:
    """Asks one CoreDNS for every app's A and AAAA in turn, ``rate`` queries a second, on a thread of its own, and
    counts each reply by what it was: ``ok`` (one of the app's two answers), ``empty`` (NOERROR without a record of
    the type: dnsperf counts it NOERROR), ``other`` (another answer), ``no reply`` (none within a second), or its
    response code. ``moves`` counts the answers seen changing; ``current`` holds the last answer per (name, type)."""

    def __init__(self, host: str, port: int, apps: list[FailoverApp], rate: float = 100.0) -> None:
        self.host, self.port, self.apps = host, port, apps
        self.interval = 1.0 / rate
        self.counts: Counter[str] = Counter()
        self.moves = 0
        self.current: dict[tuple[str, str], str] = {}
        self.failures: list[str] = []  # the first few replies that were not ok, for a failure message
        self._stop = threading.Event()

    @property
    def queries(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        """Replies that were not one of the app's answers: what a client of this CoreDNS would notice."""
        return self.queries - self.counts["ok"]

    def _ask(self, app: FailoverApp, rdtype: str) -> str:
        """What the reply was (a key of ``counts``); remembers an answer and whether it moved."""
        try:
            reply = dns.query.udp(dns.message.make_query(app.name, rdtype), self.host, port=self.port, timeout=1.0)
        except dns.exception.Timeout:
            return "no reply"
        if reply.rcode() != dns.rcode.NOERROR:
            return dns.rcode.to_text(reply.rcode())
        wanted = dns.rdatatype.from_text(rdtype)
        got = sorted(rr.to_text() for rrset in reply.answer if rrset.rdtype == wanted for rr in rrset)
        if not got:
            return "empty"
        if len(got) != 1 or got[0] not in app.answers(rdtype):
            return "other"
        before = self.current.get((app.name, rdtype))
        self.current[app.name, rdtype] = got[0]
        self.moves += before is not None and before != got[0]
        return "ok"

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            for app in self.apps:
                for rdtype in FAMILIES:
                    outcome = self._ask(app, rdtype)
                    self.counts[outcome] += 1
                    if outcome != "ok" and len(self.failures) < 10:
                        self.failures.append(f"{time.strftime('%H:%M:%S')} {app.name} {rdtype}: {outcome}")
                    next_at += self.interval
                    if self._stop.wait(max(0.0, next_at - time.monotonic())):
                        return

    def answering(self, apps: list[FailoverApp], failed: bool) -> bool:
        """Whether the last answers seen for ``apps`` are all the ones they give while ``failed`` (or not)."""
        return all(self.current.get((app.name, rdtype)) == app.answer(failed, rdtype)
                   for app in apps for rdtype in FAMILIES)

    @contextmanager
    def running(self) -> Iterator[AnswerWatch]:
        with in_background(self._run, self._stop, "answer-watch"):
            yield self


class FailoverChurn:
    """Every app failed over and back, wave after wave, on a thread of its own: all first members' apps answer 500,
    then, once ``watch`` has seen every app answered by its second member (A and AAAA), 200 again, until it has seen
    every app back. ``waves`` holds the seconds each wave took; ``cycles`` the complete over-and-back cycles;
    ``stalled`` says which wave did not reach the watched CoreDNS within ``wave_timeout`` (the churn stops there)."""

    def __init__(self, fed: Federation, apps: list[FailoverApp], watch: AnswerWatch) -> None:
        assert fed.dataplane is not None, "failover apps need the federation's data plane"
        self.dataplane, self.apps, self.watch = fed.dataplane, apps, watch
        self.timeout = wave_timeout(len(apps))
        self.waves: list[float] = []
        self.stalled = ""
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="failover-churn", daemon=True)

    @property
    def cycles(self) -> int:
        return len(self.waves) // 2

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> FailoverChurn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._set_failed(False)  # every app healthy again, whichever wave the stop cut short
        if self.error is not None:
            raise AssertionError(f"the failover churn stopped: {self.error}") from self.error

    def _set_failed(self, failed: bool) -> None:
        for app in self.apps:
            self.dataplane.set_app_status(app.order[0], app.name, 500 if failed else None)

    def _wave(self, failed: bool) -> bool:
        """One wave; False if stopped or stalled before the watch saw it through (or stopped before it began)."""
        if self._stop.is_set():
            return False
        started = time.monotonic()
        self._set_failed(failed)
        while not self.watch.answering(self.apps, failed):
            if self._stop.wait(0.02):
                return False
            if time.monotonic() - started > self.timeout:
                missing = [app.name for app in self.apps if not self.watch.answering([app], failed)]
                self.stalled = (f"{len(missing)} of {len(self.apps)} apps not {'failed over' if failed else 'back'} "
                                f"within {self.timeout:g} s, e.g. {missing[:3]}")
                return False
        self.waves.append(time.monotonic() - started)
        return True

    def _run(self) -> None:
        try:
            while self._wave(True) and self._wave(False):
                pass
        except BaseException as error:  # noqa: BLE001 - raised in the caller's thread by __exit__
            self.error = error


@dataclass(frozen=True)
class LoadRun:
    """One dnsperf run against a regional CoreDNS, its apps steady or failing over (``churned``) all along:
    dnsperf's report (``-v``: per-query latencies), the watch's replies by kind and the answer moves it saw, the
    seconds each wave of the churn took, and the queries the kernel dropped at the CoreDNS socket."""

    churned: bool
    report: Report
    answers: Counter[str]
    moves: int
    waves: tuple[float, ...]
    socket_drops: int
    failures: tuple[str, ...]  # the watch's first few failed replies, with the time
    stalled: str = ""  # the wave that did not reach the CoreDNS in time (FailoverChurn.stalled), if one did not

    @property
    def cycles(self) -> int:
        """Complete over-and-back cycles of every app while dnsperf ran."""
        return len(self.waves) // 2

    @property
    def failed_answers(self) -> int:
        """The watch's replies that were not one of the app's two answers."""
        return sum(count for kind, count in self.answers.items() if kind != "ok")


def run_load(fed: Federation, apps: list[FailoverApp], region: str, seconds: int, workdir: Path, *,
             churn: bool, rate: int = RATE, until_cycles: int = 0) -> LoadRun:
    """dnsperf at ``rate`` for ``seconds`` on ``region``'s CoreDNS, asking every app's A and AAAA, with an
    AnswerWatch beside it; with ``churn`` every app fails over and back meanwhile, and with ``until_cycles`` the
    load goes on past ``seconds`` until every app has done so that often (at most two wave timeouts a cycle more).
    Starts once no prober reports an app Down and the watch sees every app answered by its first member (so a
    steady run after a churned one never sees the end of its last wave)."""
    coredns = fed.regions[region].coredns
    assert coredns is not None
    queries = workdir / "queries"
    queries.write_text(query_lines([app.name for app in apps], tuple(FAMILIES)))
    longest = seconds + int(2 * wave_timeout(len(apps)) * until_cycles)
    load = Dnsperf(Load(coredns.host, coredns.port, queries, longest, rate=rate, outstanding=OUTSTANDING,
                        buffer_kb=BUFFER_KB), verbose=True, output=workdir / "dnsperf.out")
    watch = AnswerWatch(coredns.host, coredns.port, apps)
    with watch.running():
        namespaces = {app.namespace for app in apps}
        wait_for(lambda: reported_down(fed, namespaces) == 0 and watch.answering(apps, failed=False),
                 wave_timeout(len(apps)), f"no app reported Down and {region}'s CoreDNS answering every app by its "
                 "first member", interval=0.2)
        answers, moves, drops = Counter(watch.counts), watch.moves, udp_drops(coredns.port)
        started = time.monotonic()
        load.start()
        try:
            with FailoverChurn(fed, apps, watch) if churn else nullcontext() as churning:
                if until_cycles:
                    def enough() -> bool:
                        if churning is not None and not churning.running:  # stalled: no more cycles to wait for
                            return True
                        cycles = churning.cycles if churning else 0
                        return not load.running or (time.monotonic() - started >= seconds and cycles >= until_cycles)

                    wait_for(enough, longest + 60, f"{until_cycles} cycles of every app over and back", interval=0.05)
                    load.interrupt()
                report = load.wait()
                waves = tuple(churning.waves) if churning else ()  # what happened while dnsperf ran
                stalled = churning.stalled if churning else ""
                answers, moves = watch.counts - answers, watch.moves - moves
        finally:
            load.stop()
    return LoadRun(churn, report, answers, moves, waves, udp_drops(coredns.port) - drops, tuple(watch.failures),
                   stalled)
