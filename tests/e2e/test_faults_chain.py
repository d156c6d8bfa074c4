"""Every process of the chain SIGKILLed at random while apps fail over and back (issue 17, docs/design/faults.md §3).

One federation for the module: host and members east and west, a DNS stack in each region (etcd, the webhook,
ExternalDNS, the zone-file sidecar, CoreDNS), probers in east, west and north, and two aggregator replicas on a short
Lease. Four apps with HTTP health checks (two Failover, two Weighted) fail over and back in the background while one
process at a time is SIGKILLed and started again in place, as the kubelet restarts a crashed container: the webhook,
ExternalDNS, the zone-file sidecar or CoreDNS of a random region, both aggregator replicas or the leader alone, or a
random region's prober. The process misses at least one change while it is down and sees one after it is back; then
the churn holds still, so the expected answers are known exactly, and every region's CoreDNS must serve them within
CONVERGE_SECONDS of the restart. All along, every region whose CoreDNS runs is asked for every app and must never
answer empty or fail; the canaries (tests/support/canaries.py) are checked byte for byte at the end.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from fleetdns.apipaths import HEALTH_REPORTS, SERVICE_DNS_RECORDS
from fleetdns.kubeapi import KubeClient
from rig.aggregator import client_for
from rig.coredns import RegionalCoreDNS
from rig.externaldns import ExternalDNS
from rig.federation import Federation
from rig.region import WebhookProvider
from rig.waiting import wait_for
from tests.support.canaries import plant_in_federation, unserved
from tests.support.federation import (
    chain_processes,
    create_intent,
    federation_namespace,
    http_check,
    run_everywhere,
    running_federation,
    service_name,
    start_ready,
)
from tests.support.soak import Tally, times

pytestmark = [pytest.mark.fault, pytest.mark.apiserver, pytest.mark.externaldns, pytest.mark.coredns,
              pytest.mark.etcd]

CONVERGE_SECONDS = 10.0  # from a restart to every region answering as expected
LATE = 60.0  # how much longer a convergence past its bound is awaited, to tell late from never
SETTLE = 60.0  # first publication
CHURN_EVERY = 0.7  # seconds between two flips of the churn
QUERY_EVERY = 0.1  # seconds between two rounds of the querier (every region, every app)
# Short enough that a standby takes over while a killed leader restarts, now and then.
LEASE = ("--lease-duration=3s", "--renew-deadline=2s", "--retry-period=0.5s")
VICTIMS = ("webhook", "externaldns", "zonefiles", "coredns", "aggregators", "aggregator leader", "prober")
KILLS = times(1, 20)  # per victim


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    yield from running_federation(tmp_path_factory, "chain-faults", aggregator_replicas=2, aggregator_args=LEASE)


@pytest.fixture(scope="module")
def host(fed: Federation) -> KubeClient:
    return client_for(fed.fleet.host)


@dataclass
class App:
    """One app in both members; churn fails and heals its copy in ``churned``."""

    fqdn: str
    vips: dict[str, tuple[str, str]]  # member -> (IPv4, IPv6) VIP
    order: tuple[str, ...]  # Failover's order; empty: Weighted (east 80, west 20)
    churned: str
    healthy: bool = True

    def load_balancing(self) -> dict[str, Any]:
        if self.order:
            return {"policy": "Failover", "failoverOrder": list(self.order)}
        return {"policy": "Weighted", "weights": [{"target": "east", "weight": 80}, {"target": "west", "weight": 20}]}

    def expected(self, family: int = 0) -> set[str]:
        """The answer while the churned copy is as it is now (``family`` 0: A, 1: AAAA)."""
        up = [member for member in self.vips if member != self.churned or self.healthy]
        if self.order:
            up = [next(member for member in self.order if member in up)]
        return {self.vips[member][family] for member in up}


def start_apps(fed: Federation, host: KubeClient, ns: str) -> list[App]:
    """Two Failover apps (each member first once) and two Weighted ones, each churned in one member; published and
    checked by every region."""
    plans = [(("east", "west"), "east"), (("west", "east"), "west"), ((), "east"), ((), "west")]
    apps = []
    for index, (order, churned) in enumerate(plans):
        service = f"app{index}"
        fqdn = service_name(fed, ns, service)
        app = App(fqdn, run_everywhere(fed, ns, service, fqdn), order, churned)
        create_intent(host, ns, service, loadBalancing=app.load_balancing(), healthCheck=http_check())
        apps.append(app)
    for app in apps:
        fed.wait_for_answers(app.fqdn, app.expected(), SETTLE)
        assert fed.dataplane is not None
        fed.dataplane.wait_checked(app.fqdn, timeout=SETTLE)
    return apps


class Churn:
    """Apps failing over and back: every CHURN_EVERY s one app's churned copy flips between answering 500 and
    healthy (its endpoints stay ready: only the probers see it). ``still()`` holds it, so the expected answers are
    known exactly while it is held."""

    def __init__(self, fed: Federation, apps: list[App], rng: random.Random) -> None:
        self.fed, self.apps, self.rng = fed, apps, rng
        self.flips = 0
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="churn", daemon=True)

    def __enter__(self) -> Churn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._raise()

    def _run(self) -> None:
        assert self.fed.dataplane is not None
        try:
            while not self._stop.wait(CHURN_EVERY):
                with self._lock:
                    app = self.rng.choice(self.apps)
                    self.fed.dataplane.set_app_status(app.churned, app.fqdn, 500 if app.healthy else None)
                    app.healthy = not app.healthy
                    self.flips += 1
        except BaseException as error:  # noqa: BLE001 - raised in the test's thread
            self.error = error

    def _raise(self) -> None:
        if self.error is not None:
            raise AssertionError(f"the churn stopped: {self.error!r}") from self.error

    def next_flip(self) -> None:
        """Wait until the churn has flipped one more app."""
        before = self.flips
        def flipped() -> bool:
            self._raise()
            return self.flips > before

        wait_for(flipped, CHURN_EVERY * 10, "the churn's next flip")

    @contextmanager
    def still(self) -> Iterator[dict[str, set[str]]]:
        """Hold the churn; yields every app's expected A answer while it is held."""
        with self._lock:
            self._raise()
            yield {app.fqdn: app.expected() for app in self.apps}


class Querier:
    """Every region's CoreDNS asked for every app, all along: an answer that is empty, not NOERROR or missing (after
    a retry) while the region's CoreDNS runs is a failed answer. A region is ``down`` while its CoreDNS is killed."""

    def __init__(self, fed: Federation, names: list[str]) -> None:
        self.fed, self.names = fed, names
        self.queries = 0
        self.failed: list[str] = []
        self._outages = dict.fromkeys(fed.regions, 0)  # odd while the region's CoreDNS is down
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="querier", daemon=True)

    def __enter__(self) -> Querier:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def down(self, region: str) -> None:
        self._outages[region] += 1

    def up(self, region: str) -> None:
        self._outages[region] += 1

    def _run(self) -> None:
        while not self._stop.wait(QUERY_EVERY):
            for region in self.fed.regions:
                for name in self.names:
                    outage = self._outages[region]
                    if outage % 2:
                        continue
                    failure = self._ask(region, name)
                    self.queries += 1
                    if failure and self._outages[region] == outage:  # not killed meanwhile
                        self.failed.append(f"{clock()} {region} {name}: {failure}")

    def _ask(self, region: str, name: str) -> str:
        """Why the answer failed ("" if it did not)."""
        coredns = self.fed.regions[region].coredns
        assert coredns is not None
        for _ in range(2):
            try:
                reply = dns.query.udp(dns.message.make_query(name, "A"), coredns.host, port=coredns.port, timeout=1)
            except dns.exception.Timeout:
                continue
            if reply.rcode() != dns.rcode.NOERROR:
                return dns.rcode.to_text(reply.rcode())
            if not any(rrset.rdtype == dns.rdatatype.A for rrset in reply.answer):
                return f"empty answer ({'; '.join(rrset.to_text() for rrset in reply.answer + reply.authority)})"
            return ""
        return "no reply"


def clock() -> str:
    """Wall-clock time as the components' logs write it, to read a failure beside them."""
    return time.strftime("%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}"


@dataclass
class Injection:
    """What was killed, and how it runs again in place."""

    what: str
    restart: Callable[[], object]
    dns_region: str = ""  # the region whose CoreDNS is down until the restart


def kill(fed: Federation, victim: str, rng: random.Random) -> Injection:
    """SIGKILL ``victim`` (one of VICTIMS; in a region chosen by ``rng``)."""
    if victim == "prober":
        prober = fed.probers[rng.choice(sorted(fed.probers))]
        prober.kill()
        return Injection(prober.name, prober.start)
    if victim.startswith("aggregator"):
        replicas = list(fed.aggregators) if victim == "aggregators" else [fed.leading_aggregator()]
        for replica in replicas:
            replica.kill()
        return Injection(f"{victim} ({', '.join(r.name for r in replicas)})",
                         lambda: [replica.start() for replica in replicas])
    name = rng.choice(sorted(fed.regions))
    region = fed.regions[name]
    assert region.coredns is not None and region.webhook is not None and region.externaldns is not None
    if victim == "zonefiles":
        sidecar = region.coredns.sidecar
        sidecar.kill()
        return Injection(f"zonefiles {name}", partial(start_ready, sidecar))
    components: dict[str, WebhookProvider | ExternalDNS | RegionalCoreDNS] = {
        "webhook": region.webhook, "externaldns": region.externaldns, "coredns": region.coredns}
    component = components[victim]
    component.kill()
    return Injection(f"{victim} {name}", component.start, dns_region=name if victim == "coredns" else "")


class Kubelet:
    """What the kubelet does for the chart's pods: a container that exited on its own is started again (at once, as
    its first restart is). Not a fault injected here: each such exit is counted in ``exits`` (by process name)."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.exits: Counter[str] = Counter()

    def tend(self) -> bool:
        """Start every process that exited; True if none had."""
        exited = [(what, start) for what, process, start in chain_processes(self.fed)
                  if process is not None and process.proc is not None and not process.running]
        for what, start in exited:
            self.exits[what.split()[0]] += 1
            start()
        return not exited


def every_region_answers(fed: Federation, expected: dict[str, set[str]], rdtype: str = "A") -> bool:
    return all(fed.answers(region, name, rdtype) == want for region in fed.regions for name, want in expected.items())


def diagnosis(fed: Federation, host: KubeClient, ns: str, expected: dict[str, set[str]]) -> str:
    """For each app answered otherwise than expected: what each region answers, what the intent's status says (the
    answer, each cluster's verdict by region) and what each region's HealthReports list Down for it."""
    reports = host.get(HEALTH_REPORTS.path(ns)).get("items") or []
    lines = []
    for name, want in expected.items():
        seen = {region: sorted(fed.answers(region, name)) for region in fed.regions}
        if all(set(answer) == want for answer in seen.values()):
            continue
        service = name.split(".")[0]
        status = host.get(SERVICE_DNS_RECORDS.path(ns, service)).get("status") or {}
        verdicts = {d["cluster"]: (d.get("healthy"), (d.get("healthCheck") or {}).get("verdict"),
                                   {r["region"]: (r["state"], r.get("fresh")) for r in
                                    (d.get("healthCheck") or {}).get("regions") or []})
                    for d in status.get("dns") or []}
        down = sorted((r["spec"]["region"], r["spec"]["cluster"], e["address"]) for r in reports
                      for e in (r.get("status") or {}).get("down") or [] if e["intent"].endswith(f"/{service}"))
        lines.append(f"{service}: expected {sorted(want)}, answered {seen}; status answers "
                     f"{[[c['cluster'] for c in a.get('clusters') or []] for a in status.get('answers') or []]}, "
                     f"verdicts {verdicts}; reported Down {down}")
    return "; ".join(lines)


def converged_after(fed: Federation, kubelet: Kubelet, expected: dict[str, set[str]], since: float, record: Tally,
                    what: str, diagnose: Callable[[], str]) -> float | None:
    """Seconds from ``since`` until every region answers ``expected`` (the kubelet tending the pods meanwhile); past
    CONVERGE_SECONDS a note, past LATE more None (the answers never came)."""
    def converged() -> bool:
        return kubelet.tend() and every_region_answers(fed, expected)

    try:
        wait_for(converged, since + CONVERGE_SECONDS - time.monotonic(), what)
        return time.monotonic() - since
    except AssertionError:
        pass
    try:
        wait_for(converged, LATE, what)
    except AssertionError as error:
        record.note(f"after killing {what}: never converged ({error}): {diagnose()}")
        return None
    seconds = time.monotonic() - since
    record.note(f"after killing {what}: converged late, after {seconds:.1f} s")
    return seconds


# A safety net only (pytest-timeout counts the federation's start too, minutes on a loaded machine); the test's own
# bounds are CONVERGE_SECONDS and LATE.
@pytest.mark.timeout(600 + 60 * KILLS * len(VICTIMS))
def test_every_process_of_the_chain_killed_during_churn_converges_within_seconds_and_touches_nothing_unowned(
        fed: Federation, host: KubeClient, tally: Callable[..., Tally]) -> None:
    record = tally("every process of the chain SIGKILLed during failover churn")
    ns = federation_namespace(fed, host, "chain")
    apps = start_apps(fed, host, ns)
    canaries = plant_in_federation(fed, host, ns, apps[0].fqdn, SETTLE)
    seed = random.randrange(2**32)
    record.note(f"seed {seed}")
    rng = random.Random(seed)
    plan = [victim for victim in VICTIMS for _ in range(KILLS)]
    rng.shuffle(plan)

    kubelet = Kubelet(fed)
    timeline: list[str] = []  # what was killed when, to read failed answers beside
    with Churn(fed, apps, random.Random(rng.random())) as churn, Querier(fed, [a.fqdn for a in apps]) as querier:
        for victim in plan:
            injection = kill(fed, victim, rng)
            timeline.append(f"{clock()} killed {injection.what}")
            if injection.dns_region:
                querier.down(injection.dns_region)
            churn.next_flip()  # a change it misses while down
            injection.restart()
            kubelet.tend()
            back = time.monotonic()
            timeline.append(f"{clock()} back")
            if injection.dns_region:
                querier.up(injection.dns_region)
            churn.next_flip()  # and one it sees after
            with churn.still() as expected:
                seconds = converged_after(fed, kubelet, expected, back, record, injection.what,
                                          partial(diagnosis, fed, host, ns, expected))
            if seconds is None:
                record.lost += 1
                break
            record.injection(seconds)
    record.queries, record.failed_answers = querier.queries, len(querier.failed)
    if kubelet.exits:
        record.note("exited on their own and restarted, as the kubelet does: " + ", ".join(
            f"{what} {count}x" for what, count in sorted(kubelet.exits.items())))

    # The canaries untouched and still served; after the last fault, every app in both families.
    changed = [key for canary in canaries for key in canary.changed()]
    gone = unserved(fed, canaries)
    record.lost += len(changed) + len(gone)
    assert not changed, f"canaries changed: {changed}"
    assert not gone, f"canaries no longer answered: {gone}"
    assert record.lost == 0, record.notes
    for app in apps:
        fed.wait_for_answers(app.fqdn, app.expected(), CONVERGE_SECONDS)
        fed.wait_for_answers(app.fqdn, app.expected(1), CONVERGE_SECONDS, rdtype="AAAA")
    assert not querier.failed, (f"{len(querier.failed)} of {querier.queries} answers failed: {querier.failed[:5]} ... "
                                f"{querier.failed[-5:]}; faults: {timeline}")
    assert record.injected == len(plan)
    assert record.worst_seconds is not None and record.worst_seconds <= CONVERGE_SECONDS, record.notes
