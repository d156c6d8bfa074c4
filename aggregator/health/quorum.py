"""The probers' quorum: which regions vote, what each reports, and the verdict on each cluster address.

Rule (docs/design/policies.md §3): a region votes while its prober Lease has a holder and the aggregator
saw its renewTime change within the grace period, on its own monotonic clock (no clock sync); a renewal
whose holder says its reports are not current yet does not count; every Lease counts as fresh for one
grace period after it is first seen, so a restart moves no answer. An
address is Down for an intent iff more than half of the fresh regions list it Down with the intent's
current check; a fresh region that does not list it votes Up. No fresh voter: the probe has no say.
While the aggregator cannot watch the Leases, their age stops counting (it saw nothing, which proves nothing).
A cluster stays healthy while readiness holds and one of its addresses is not Down; only addresses
not Down are published. Pure apart from the clock, which tests step.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from aggregator.model import ClusterHealth, ClusterStatus, RegionHealth, Verdict
from fleetdns.healthreport import DownEntry, HealthReport, ProberLease

HEALTH_CHECK_FAILED = "HealthCheckFailed"
Clock = Callable[[], float]
IntentRef = tuple[str, str]  # (namespace, "ServiceDNSRecord/web"), as reports name intents
ReportKey = tuple[str, str]  # (region, cluster)


class Freshness:
    """Which prober regions vote now: the Leases as the aggregator observed them (thread-safe)."""

    def __init__(self, grace_period: float, clock: Clock = time.monotonic) -> None:
        self.grace_period = grace_period
        self._clock = clock
        self._seen: dict[str, tuple[str, str, float]] = {}  # region -> (holder, renewTime, observed at)
        self._blind_since: float | None = None  # the Leases' watch is down: no renewal can be observed
        self._lock = threading.Lock()

    def watching(self, up: bool) -> None:
        """While the aggregator cannot watch the Leases (the host API is away) it sees no renewal, which says
        nothing about the probers: their age stops counting until the watch is back."""
        with self._lock:
            now = self._clock()
            if not up and self._blind_since is None:
                self._blind_since = now
            elif up and self._blind_since is not None:
                since, blind = self._blind_since, now - self._blind_since
                self._seen = {region: (holder, renew, seen + blind if seen <= since else seen)
                              for region, (holder, renew, seen) in self._seen.items()}
                self._blind_since = None

    def _now(self) -> float:
        return self._blind_since if self._blind_since is not None else self._clock()

    def observe(self, lease: ProberLease) -> None:
        """A Lease as listed or watched; a new holder or renewTime counts as a renewal seen now, unless its holder
        says its reports are not current (it took the Lease and has not rewritten them yet, or a write waits for a
        retry): a region back from a cut off the host would otherwise vote with what it saw before the cut. Such a
        Lease seen first is listed, not voting."""
        with self._lock:
            previous = self._seen.get(lease.region)
            if previous is not None and previous[:2] == (lease.holder, lease.renew_time):
                return
            if lease.holder and not lease.reports_current:
                if previous is None:
                    self._seen[lease.region] = (lease.holder, lease.renew_time, -math.inf)
                return
            self._seen[lease.region] = (lease.holder, lease.renew_time, self._clock())

    def forget(self, region: str) -> None:
        """The Lease was deleted: the region neither votes nor is listed."""
        with self._lock:
            self._seen.pop(region, None)

    def regions(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._seen))

    def fresh(self) -> frozenset[str]:
        with self._lock:
            now = self._now()
            return frozenset(region for region, (holder, _, seen) in self._seen.items()
                             if holder and now - seen < self.grace_period)

    def next_expiry(self) -> float | None:
        """Seconds until the next fresh region goes stale unless renewed (None: no fresh region, or blind)."""
        with self._lock:
            if self._blind_since is not None:
                return None
            now = self._clock()
            left = [seen + self.grace_period - now for holder, _, seen in self._seen.values()
                    if holder and now - seen < self.grace_period]
        return max(0.0, min(left)) if left else None


class ReportIndex:
    """Every HealthReport's Down entries, indexed by intent, so a reconcile reads only its own intent's
    entries and a report change names exactly the intents whose entries changed (thread-safe)."""

    def __init__(self) -> None:
        self._by_intent: dict[IntentRef, dict[ReportKey, tuple[DownEntry, ...]]] = {}
        self._lock = threading.Lock()

    def apply(self, old: HealthReport | None, new: HealthReport | None) -> set[IntentRef]:
        """Record one report change; returns the intents whose entries changed."""
        before = _group(old)
        after = _group(new)
        changed = set()
        with self._lock:
            for where in set(before) | set(after):
                if before.get(where) == after.get(where):
                    continue
                intent, report = where
                changed.add(intent)
                entries = self._by_intent.setdefault(intent, {})
                if where in after:
                    entries[report] = after[where]
                else:
                    entries.pop(report, None)
                    if not entries:
                        del self._by_intent[intent]
        return changed

    def down(self, intent: IntentRef) -> dict[ReportKey, tuple[DownEntry, ...]]:
        with self._lock:
            return dict(self._by_intent.get(intent, {}))


def _group(report: HealthReport | None) -> dict[tuple[IntentRef, ReportKey], tuple[DownEntry, ...]]:
    grouped: dict[tuple[IntentRef, ReportKey], list[DownEntry]] = {}
    if report is not None:
        for entry in report.down:
            grouped.setdefault(((report.namespace, entry.intent), (report.region, report.cluster)), []).append(entry)
    return {where: tuple(sorted(entries, key=lambda e: e.address)) for where, entries in grouped.items()}


@dataclass(frozen=True)
class Votes:
    """What one intent's verdicts are made of: the voters, every known region, and the intent's Down entries."""

    fresh: frozenset[str] = frozenset()
    regions: tuple[str, ...] = ()  # every region with a prober Lease
    down: Mapping[ReportKey, tuple[DownEntry, ...]] = field(default_factory=dict)


def checked_addresses(cluster: ClusterStatus) -> tuple[str, ...]:
    """The IPs a prober checks for a cluster: its load balancer's IPs and what its hostnames resolved to."""
    found = {ipaddress.ip_address(ip) for ip in (*(a.ip for a in cluster.addresses if a.ip), *cluster.resolved)}
    return tuple(str(ip) for ip in sorted(found, key=lambda ip: (ip.version, ip)))


def judge(clusters: tuple[ClusterStatus, ...], check_id: str, votes: Votes) -> tuple[ClusterStatus, ...]:
    """Each cluster with its health-check verdict: healthy = readiness AND not every address Down."""
    return tuple(judge_cluster(cluster, check_id, votes) for cluster in clusters)


def judge_cluster(cluster: ClusterStatus, check_id: str, votes: Votes) -> ClusterStatus:
    addresses = checked_addresses(cluster)
    # Per region: the addresses it lists Down with the current check (entries of an older check do not count).
    listed: dict[str, dict[str, DownEntry]] = {}
    for (region, name), entries in votes.down.items():
        if name == cluster.cluster:
            current = {e.address: e for e in entries if e.check == check_id and e.address in addresses}
            if current:
                listed[region] = current
    regions = tuple(_region_health(region, addresses, listed.get(region, {}), region in votes.fresh)
                    for region in sorted(set(votes.regions) | set(listed)))
    voters = len(votes.fresh)
    if not voters or not addresses:
        return replace(cluster, health_check=ClusterHealth(Verdict.UNKNOWN, (), regions))
    against = {address: sum(1 for region in votes.fresh if address in listed.get(region, {}))
               for address in addresses}
    down = tuple(address for address in addresses if 2 * against[address] > voters)
    if len(down) < len(addresses):
        return replace(cluster, health_check=ClusterHealth(Verdict.UP, down, regions))
    health = ClusterHealth(Verdict.DOWN, down, regions)
    if not cluster.healthy:  # readiness already keeps it out; its reason says why first
        return replace(cluster, health_check=health)
    weakest = min(against.values())
    return replace(cluster, healthy=False, health_check=health,
                   reason=f"{HEALTH_CHECK_FAILED}: Down from {weakest} of {voters} regions")


def _region_health(region: str, addresses: tuple[str, ...], listed: Mapping[str, DownEntry],
                   fresh: bool) -> RegionHealth:
    if not listed:
        return RegionHealth(region, "Up", fresh=fresh)
    since = min(entry.since for entry in listed.values())
    per_address = "; ".join(f"{address}: {entry.message}" for address, entry in sorted(listed.items()))
    if len(listed) < len(addresses):
        return RegionHealth(region, "PartlyDown", per_address, since, fresh)
    messages = {entry.message for entry in listed.values()}
    return RegionHealth(region, "Down", messages.pop() if len(messages) == 1 else per_address, since, fresh)
