"""This region's HealthReports: what it sees Down, and its RTT to each address, one object per (namespace, cluster).

Writes follow changes, never periods: a key (namespace, cluster) is marked when one of its checks flips
(or its subjects change); it is written on the leading edge of a change, then at most every 100 ms, so
2,000 apps failing behind one dead VIP cost a handful of writes. Each write is a whole-object replace
with the resourceVersion last seen (no status subresource), re-read on conflict. What is written is
``desired_down``: the thresholded verdicts of the subjects that exist now, keeping an existing entry as
it is while its verdict still holds (so a restarted prober writes only what differs), and dropping
entries of intents and addresses that are gone. ``desired_latency`` does the same for the RTT figures
(latency.py): an entry is kept while the published median stays within the move threshold of it. A report
exists while this namespace has checks on the cluster and it lists something (Down entries or RTT figures).
Only this region's reports are ever written, and only while this replica holds the region's Lease (the
client is fenced by it).

This region's own reports are not watched: their one writer is the Lease holder, which lists them when it
takes the Lease and then knows each one from its own writes (a conflict or a missing object re-reads it).
Decoding a 2,000-entry report on every own write would cost the check loop its CPU exactly when many
checks flip.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleetdns.apipaths import HEALTH_REPORTS
from fleetdns.healthreport import (
    REGION_LABEL,
    DownEntry,
    HealthReport,
    LatencyEntry,
    parse_health_report,
    report_name,
)
from fleetdns.informer import compare_resource_versions
from fleetdns.kubeapi import KubeClient, KubeError, NotLeaderError
from prober.latency import moved
from prober.metrics import ProberMetrics
from prober.thresholds import State

logger = logging.getLogger("prober.reports")
ReportKey = tuple[str, str]  # (namespace, cluster)
EntryKey = tuple[str, str]  # (intent_ref, address)
MIN_INTERVAL = 0.1  # seconds between two writes of one report
RETRY_START, RETRY_MAX = 0.5, 2.0  # a region back on the host API catches up within a Lease renewal
CONFLICT_RETRIES = 5
_LOAD: ReportKey = ("", "")  # not a report: a worker's turn to list this region's reports


def rfc3339(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Verdict:
    """The thresholded state of one subject, as the report needs it."""

    state: State
    check: str  # HealthCheck.check_id
    since: str = ""  # RFC 3339 of the flip
    message: str = ""


def desired_down(current: Iterable[DownEntry], verdicts: Mapping[EntryKey, Verdict]) -> tuple[DownEntry, ...]:
    """The Down entries a report should hold: one per subject whose verdict is Down (an existing entry for
    the same check kept as it is), an existing entry kept while its subject is still Unknown (not checked
    since a restart), nothing for subjects that are Up or no longer exist."""
    existing = {(entry.intent, entry.address): entry for entry in current}
    down = []
    for (intent, address), verdict in verdicts.items():
        old = existing.get((intent, address))
        same = old is not None and old.check == verdict.check
        if verdict.state is State.DOWN:
            down.append(old if same and old is not None else
                        DownEntry(intent, address, verdict.check, verdict.since, verdict.message))
        elif verdict.state is State.UNKNOWN and same and old is not None:
            down.append(old)
    return tuple(sorted(down, key=lambda e: (e.intent, e.address)))


def desired_latency(current: Iterable[LatencyEntry],
                    figures: Mapping[str, LatencyEntry | None]) -> tuple[LatencyEntry, ...]:
    """The RTT entries a report should hold: one per address of its subjects with a figure (None: the first is
    being measured, an existing entry is kept), the existing entry kept as it is while the figure has not moved
    from it (latency.moved), so a restarted prober or a replica taking over rewrites nothing for a path that
    did not change; stale and gone addresses leave."""
    existing = {entry.address: entry for entry in current}
    latency = []
    for address, figure in figures.items():
        old = existing.get(address)
        if old is not None and (figure is None or not moved(old.rtt_micros, figure.rtt_micros)):
            latency.append(old)
        elif figure is not None:
            latency.append(figure)
    return tuple(sorted(latency, key=lambda e: e.address))


def same_entries(a: Iterable[DownEntry | LatencyEntry], b: Iterable[DownEntry | LatencyEntry]) -> bool:
    a, b = list(a), list(b)
    return len(a) == len(b) and set(a) == set(b)


def no_latency(key: ReportKey) -> dict[str, LatencyEntry | None]:
    return {}


class ReportWriter:
    """Writes this region's reports from ``snapshot`` (the verdicts of a key's live subjects; empty: none) and
    ``latency`` (the RTT figure of each address of those subjects, ``LatencyTable.figures``).

    ``mark``, ``mark_all`` and ``leadership`` are called from other threads; a few worker threads write
    different keys in parallel, one key never by two at once."""

    def __init__(self, client: KubeClient, region: str, snapshot: Callable[[ReportKey], dict[EntryKey, Verdict]],
                 leading: Callable[[], bool], metrics: ProberMetrics, workers: int = 4,
                 clock: Callable[[], float] = time.monotonic, namespace: str = "",
                 latency: Callable[[ReportKey], dict[str, LatencyEntry | None]] = no_latency) -> None:
        self.client = client
        self.region = region
        self.namespace = namespace  # "" : every namespace
        self.snapshot = snapshot
        self.latency = latency
        self.leading = leading
        self.metrics = metrics
        self.clock = clock
        self.known: dict[ReportKey, HealthReport] = {}  # this region's reports, valid while ``loaded``
        self.loaded = False  # listed since this replica took the Lease
        self._loading = False
        self._load_backoff = RETRY_START
        self._due: dict[ReportKey, float] = {}  # marked keys → when they may be written
        self._last_write: dict[ReportKey, float] = {}
        self._retry: dict[ReportKey, float] = {}
        # Reports to bring up to date since this replica took the Lease (told to, or found when listing): until each
        # is written the host may hold an older view, which the Lease must not vouch for.
        self._catching_up: set[ReportKey] = set()
        self._current = False  # what behind() said last time on_current was considered
        self.on_current: Callable[[], None] = lambda: None  # the reports just caught up (called off the lock)
        self._busy: set[ReportKey] = set()
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [threading.Thread(target=self._work, name=f"reports-{i}", daemon=True)
                         for i in range(workers)]

    def start(self) -> ReportWriter:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)

    def mark(self, key: ReportKey) -> None:
        with self._cond:
            if key not in self._due:
                self._due[key] = self._last_write.get(key, -MIN_INTERVAL) + MIN_INTERVAL
                self._cond.notify()

    def mark_all(self, keys: Iterable[ReportKey]) -> None:
        """Bring every report of these keys (and every one known) up to date; ``behind`` until each is written."""
        with self._cond:
            for key in list(keys) + list(self.known):
                self._due.setdefault(key, self._last_write.get(key, -MIN_INTERVAL) + MIN_INTERVAL)
                self._catching_up.add(key)
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        return len(self._due)

    def behind(self) -> str:
        """Why this region's reports on the host may lag its verdicts ("": they do not). They do until this replica
        has listed them and written every one it had to bring up to date since it took the Lease, and while a write
        that failed waits for its retry; a flip's own write (within MIN_INTERVAL) is not a lag."""
        with self._cond:
            return self._behind()

    def _behind(self) -> str:
        if not self.loaded:
            return "this region's reports not listed since this replica took the Lease"
        if self._catching_up:
            return f"{len(self._catching_up)} reports not yet brought up to date since this replica took the Lease"
        if self._retry:
            return f"{len(self._retry)} report writes failed and wait for a retry"
        return ""

    def _consider_current(self) -> None:
        """Call ``on_current`` once when the reports catch up (the Lease then says so at once)."""
        with self._cond:
            current = not self._behind()
            caught_up, self._current = current and not self._current, current
        if caught_up:
            self.on_current()

    def leadership(self, leading: bool) -> None:
        """The Lease was taken or lost: what is known of this region's reports must be listed again."""
        with self._cond:
            self.loaded = False
            self._current = False
            self._cond.notify_all()

    def _remember(self, key: ReportKey, report: HealthReport) -> None:
        known = self.known.get(key)
        if known is None or compare_resource_versions(report.resource_version, known.resource_version) != -1:
            self.known[key] = report

    def _next(self) -> ReportKey | None:
        """Wait for a marked key that may be written now (None: stopping); ``_LOAD``: list first."""
        with self._cond:
            while not self._stopping:
                if not self.loaded:
                    if self.leading() and not self._loading:
                        self._loading = True
                        return _LOAD
                    self._cond.wait(0.5)
                    continue
                now = self.clock()
                ready = [(due, key) for key, due in self._due.items() if key not in self._busy]
                if ready and self.leading():
                    due, key = min(ready)
                    if due <= now:
                        del self._due[key]
                        self._busy.add(key)
                        return key
                    self._cond.wait(due - now)
                else:
                    self._cond.wait(0.5 if ready else None)  # not leading: look again soon
            return None

    def _work(self) -> None:
        while (key := self._next()) is not None:
            if key == _LOAD:
                self._load_reports()
                continue
            try:
                self._write(key)
                with self._cond:
                    self._retry.pop(key, None)
                    self._catching_up.discard(key)
                self._consider_current()
            except NotLeaderError:
                self._again(key, RETRY_START)
            except KubeError as error:
                delay = min(self._retry.get(key, RETRY_START / 2) * 2, RETRY_MAX)
                with self._cond:
                    self._retry[key] = delay
                    self._current = False  # behind until the retry succeeds
                self.metrics.report_write_errors.labels(str(error.status or error.reason)).inc()
                logger.warning("report write failed; retrying",
                               extra={"report": f"{key[0]}/{report_name(self.region, key[1])}", "error": str(error),
                                      "retry_in": delay})
                self._again(key, delay)
            except Exception:  # noqa: BLE001 - a bug in one write must not end the writer
                logger.exception("report write failed", extra={"report": f"{key[0]}/{key[1]}"})
                self._again(key, RETRY_MAX)
            finally:
                with self._cond:
                    self._busy.discard(key)
                    self._cond.notify_all()

    def _load_reports(self) -> None:
        """List this region's reports (every watched namespace) into ``known``; then every one is checked."""
        try:
            found: dict[ReportKey, HealthReport] = {}
            query: dict[str, Any] = {"labelSelector": f"{REGION_LABEL}={self.region}", "limit": 500}
            while True:
                page = self.client.get(HEALTH_REPORTS.path(self.namespace), query, timeout=30)
                for raw in page.get("items") or []:
                    report = parse_health_report(raw)
                    if report.region == self.region:
                        found[(report.namespace, report.cluster)] = report
                if not (page.get("metadata") or {}).get("continue"):
                    break
                query["continue"] = page["metadata"]["continue"]
        except (KubeError, ValueError) as error:
            logger.warning("cannot list this region's reports; retrying",
                           extra={"error": str(error), "retry_in": self._load_backoff})
            with self._cond:
                self._loading = False
                self._cond.wait(self._load_backoff)
            self._load_backoff = min(self._load_backoff * 2, RETRY_MAX)
            return
        with self._cond:
            self.known = found
            self.loaded, self._loading = True, False
            self._load_backoff = RETRY_START
            for key in found:  # stale entries in reports nothing checks any more are removed too
                self._due.setdefault(key, self.clock())
                self._catching_up.add(key)
            self._cond.notify_all()
        logger.info("this region's reports listed", extra={"reports": len(found)})
        self._consider_current()

    def _again(self, key: ReportKey, delay: float) -> None:
        with self._cond:
            self._due[key] = min(self._due.get(key, float("inf")), self.clock() + delay)

    def _write(self, key: ReportKey) -> None:
        namespace, cluster = key
        for _ in range(CONFLICT_RETRIES):
            with self._cond:
                current = self.known.get(key)
            verdicts = self.snapshot(key)
            desired = desired_down(current.down if current else (), verdicts)
            latency = desired_latency(current.latency if current else (), self.latency(key)) if verdicts else ()
            try:
                if current is None:
                    if not desired and not latency:
                        return
                    written = self.client.create(
                        HEALTH_REPORTS.path(namespace),
                        HealthReport(namespace, self.region, cluster, desired, latency=latency).manifest())
                    operation = "create"
                elif not verdicts:  # nothing of this namespace is checked on this cluster any more
                    self.client.delete(HEALTH_REPORTS.path(namespace, current.name))
                    with self._cond:
                        self.known.pop(key, None)
                    self._wrote(key, "delete")
                    return
                elif same_entries(current.down, desired) and same_entries(current.latency, latency):
                    return
                else:
                    report = HealthReport(namespace, self.region, cluster, desired, current.resource_version, latency)
                    written = self.client.replace(HEALTH_REPORTS.path(namespace, current.name), report.manifest())
                    operation = "replace"
            except KubeError as error:
                if error.status not in (404, 409):
                    raise
                self.metrics.report_conflicts.inc()
                self._reread(key)
                continue
            version = str((written.get("metadata") or {}).get("resourceVersion") or "")
            with self._cond:  # what was written is what is there: no need to decode the answer's entries
                self._remember(key, HealthReport(namespace, self.region, cluster, desired, version, latency))
            self._wrote(key, operation)
            return
        raise KubeError(409, "Conflict", f"still conflicting after {CONFLICT_RETRIES} re-reads")

    def _wrote(self, key: ReportKey, operation: str) -> None:
        with self._cond:
            self._last_write[key] = self.clock()
        self.metrics.report_writes.labels(operation).inc()
        logger.debug("report written", extra={"report": f"{key[0]}/{report_name(self.region, key[1])}",
                                              "operation": operation})

    def _reread(self, key: ReportKey) -> None:
        namespace, cluster = key
        try:
            fresh: HealthReport | None = parse_health_report(
                self.client.get(HEALTH_REPORTS.path(namespace, report_name(self.region, cluster))))
        except KubeError as error:
            if error.status != 404:
                raise
            fresh = None
        with self._cond:
            if fresh is None:
                self.known.pop(key, None)
            else:
                self.known[key] = fresh
