"""The prober wired together: informers → targets → schedule → checks → thresholds → reports, and the Lease.

Threads: one informer for each intent kind (``apipaths.INTENT_RESOURCES``) and one for HealthReports; the check loop
(``schedule.Scheduler``), which alone owns the targets and the thresholds (informers hand it their
changes through its inbox); the report writers; the Lease loop. The verdicts and the RTT figures
(``latency.LatencyTable``) the writers read are the only state shared across threads, behind one lock.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleetdns.apipaths import HEALTH_REPORTS, INTENT_RESOURCES, Resource, host_cannot_read
from fleetdns.healthreport import REGION_LABEL, HealthReport, LatencyEntry, parse_health_report
from fleetdns.informer import Informer, StateHandler
from fleetdns.kubeapi import KubeClient
from prober.checks import Outcome, check_target
from prober.latency import STALE_PERIODS, Change, LatencyTable
from prober.lease import RegionLease
from prober.metrics import ProberMetrics
from prober.reports import EntryKey, ReportKey, ReportWriter, Verdict, rfc3339
from prober.schedule import Scheduler
from prober.settings import Settings
from prober.targets import (
    Changes,
    ProbedIntent,
    ProbeKey,
    Subject,
    SubjectKey,
    TargetIndex,
    parse_intent,
    subjects_of,
)
from prober.thresholds import State, Threshold, judge

logger = logging.getLogger("prober")
# A subject that leaves the intent's status and is listed again with the same probe within this many seconds
# keeps its thresholded state (and its verdict's since): a status seen without its addresses for a moment
# must not restart the thresholds (Unknown settles on one result, skipping failureThreshold/successThreshold).
RETAIN_SECONDS = 60.0


@dataclass(frozen=True)
class _Retired:
    """What a subject had seen when it left, for a while (RETAIN_SECONDS)."""

    probe: ProbeKey
    threshold: Threshold
    verdict: Verdict | None
    at: float


class Prober:
    def __init__(self, settings: Settings, host: KubeClient, metrics: ProberMetrics,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.region = settings.region
        self.metrics = metrics
        self.wall = wall
        self.index = TargetIndex()
        self.thresholds: dict[SubjectKey, Threshold] = {}
        self.problems: dict[tuple[str, str, str], str] = {}  # intents whose healthCheck is not run, and why
        self.subjects_down = 0
        self._retired: dict[SubjectKey, _Retired] = {}  # subjects gone lately, oldest first
        self._verdicts: dict[ReportKey, dict[EntryKey, Verdict]] = {}
        self.latency = LatencyTable(rfc3339)  # behind _lock: the writers read it
        self._reports_of: dict[str, collections.Counter[ReportKey]] = {}  # address → its subjects per report (_lock)
        self._periods_of: dict[str, dict[ProbeKey, float]] = {}  # address → its probes' periods (check loop only)
        self._lock = threading.Lock()
        self.scheduler = Scheduler(self.region, self._on_outcome, settings.max_in_flight)
        self.scheduler.on_tick = self._expire_latency
        self.lease = RegionLease(host, settings.lease_namespace, self.region, settings.identity, self.current,
                                 self._leading_changed, behind=lambda: self.writer.behind())
        self.writer = ReportWriter(host.fenced(self.lease.holds), self.region, self.snapshot, self.lease.holds,
                                   metrics, namespace=settings.namespace, latency=self.latency_of)
        self.writer.on_current = self.lease.wake  # the Lease says "current" as soon as the reports are
        namespace = settings.namespace
        # An intent kind the host does not serve (its CRD not installed: 404) or lets us list (403) holds up no
        # other: its intents are not probed until it can be listed (said once, with the fix).
        self.refused_kinds: dict[str, str] = {}  # informer name -> why
        self.intent_informers: list[Informer[ProbedIntent]] = [
            Informer(resource.plural, host, resource.path(namespace), functools.partial(parse_intent, resource.kind),
                     self._intent_changed, on_state=self._intent_kind_state(resource))
            for resource in INTENT_RESOURCES]
        # other regions' reports only (corroboration); this region's own are the writer's (reports.py)
        self.report_informer: Informer[HealthReport] = Informer(
            "healthreports", host, HEALTH_REPORTS.path(namespace), parse_health_report, self._report_changed,
            label_selector=f"{REGION_LABEL}!={self.region}")
        self._stop = threading.Event()
        self._loop = threading.Thread(target=self._run_checks, name="checks", daemon=True)
        self._starter = threading.Thread(target=self._begin_round_when_synced, name="first-round", daemon=True)
        metrics.sample(self._sampled)
        metrics.watch_rtt(self.rtt_by_cluster)

    # --- lifecycle -----------------------------------------------------------------------------------

    @property
    def _informers(self) -> list[Informer[Any]]:
        return [*self.intent_informers, self.report_informer]

    def start(self) -> Prober:
        self._loop.start()
        for informer in self._informers:
            informer.start()
        self.writer.start()
        self._starter.start()
        self.lease.start()
        return self

    def stop(self, flush: float = 2.0) -> None:
        """Write what is pending (bounded), release the Lease, stop every thread."""
        deadline = time.monotonic() + flush
        while self.writer.pending and self.lease.holds() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.lease.stop()
        self.writer.stop()
        for informer in self._informers:
            informer.stop()
            informer.interrupt()
        self._stop.set()
        self.scheduler.call_soon_threadsafe(lambda: None)  # wake the loop
        self._loop.join(timeout=5)

    def alive(self) -> bool:
        """False once the check loop has ended without being asked to (the process should exit)."""
        return self._loop.is_alive() or self._stop.is_set()

    def _run_checks(self) -> None:
        try:
            self.scheduler.run(self._stop)
        except Exception:  # noqa: BLE001 - logged; __main__ exits non-zero so the replica is restarted
            logger.exception("check loop failed")

    def _begin_round_when_synced(self) -> None:
        for informer in self.intent_informers:
            while not informer.synced.wait(0.5) and informer.name not in self.refused_kinds:
                if self._stop.is_set():
                    return
        # queued after every change the first lists delivered, so the round counts every intent listed
        self.scheduler.call_soon_threadsafe(self.scheduler.begin_round)

    def _listed(self, informer: Informer[Any]) -> bool:
        """Listed once, or (intent kinds only) refused by the host: nothing of that kind to probe."""
        return informer.synced.is_set() or informer.name in self.refused_kinds

    def synced(self) -> bool:
        return all(self._listed(i) for i in self._informers)

    def ready(self) -> tuple[bool, str]:
        if not self.synced():
            waiting = [i.name for i in self._informers if not self._listed(i)]
            return False, f"waiting for the first list of {', '.join(waiting)}"
        if not self.scheduler.round_done:
            return False, "first round of checks not finished"
        return True, f"{len(self.scheduler.runs)} checks"

    def current(self) -> tuple[bool, str]:
        """Whether this region's reports are current (the Lease is renewed only then)."""
        ready, why = self.ready()
        if not ready:
            return False, why
        return self.scheduler.keeping_up()

    def _leading_changed(self, leading: bool) -> None:
        logger.info("region Lease " + ("held: writing reports" if leading else "lost: not writing reports"),
                    extra={"region": self.region, "identity": self.settings.identity})
        self.writer.leadership(leading)  # list this region's reports again before writing any
        if leading:
            with self._lock:
                keys = list(self._verdicts)
            self.writer.mark_all(keys)  # bring every report of this region up to date (only differences)

    # --- informers (their threads) -------------------------------------------------------------------

    def _intent_kind_state(self, resource: Resource) -> StateHandler:
        def changed(connected: bool, detail: str, status: int) -> None:
            if status in (403, 404):
                if resource.plural not in self.refused_kinds:
                    logger.warning(f"{host_cannot_read(resource, status)}; its intents are not probed meanwhile",
                                   extra={"informer": resource.plural, "status": status, "detail": detail})
                self.refused_kinds[resource.plural] = detail
            elif connected and self.refused_kinds.pop(resource.plural, None) is not None:
                logger.info("intent kind readable again; its intents are probed", extra={"informer": resource.plural})
        return changed

    def _intent_changed(self, old: ProbedIntent | None, new: ProbedIntent | None) -> None:
        self.scheduler.call_soon_threadsafe(lambda: self._apply_intent(old, new))

    def _report_changed(self, old: HealthReport | None, new: HealthReport | None) -> None:
        report = new or old
        if report is None:
            return
        if report.region == self.region:
            return  # the label selector keeps these out; one written by hand without the label is no news
        if new is None or not self.report_informer.synced.is_set():
            return  # the first list is history, not news
        before = {(e.address, e.check) for e in old.down} if old is not None else set()
        fresh = [ProbeKey(e.address, e.check) for e in new.down if (e.address, e.check) not in before]
        if fresh:
            self.scheduler.call_soon_threadsafe(lambda: self._corroborate(fresh))

    # --- the check loop (its thread) -----------------------------------------------------------------

    def _apply_intent(self, old: ProbedIntent | None, new: ProbedIntent | None) -> None:
        intent = new or old
        assert intent is not None
        ident = intent.ident
        self._note_problem(ident, new)
        changes = self.index.update(ident, subjects_of(new) if new is not None else ())
        for key in changes.removed_probes:
            self.scheduler.remove(key)
        now = self.scheduler.clock()
        self._forget_retired(now)
        readded = {s.key: s for s in changes.added_subjects}
        carried: dict[SubjectKey, Threshold] = {}
        for subject in changes.removed_subjects:
            threshold = self.thresholds.pop(subject.key, None)
            again = readded.get(subject.key)
            if threshold is not None and again is not None and again.probe == subject.probe:
                carried[subject.key] = threshold  # only its timing changed: keep what it has seen
                continue
            if threshold is not None:
                self.subjects_down -= threshold.state is State.DOWN
                self._retired[subject.key] = _Retired(subject.probe, threshold, self._verdict(subject.key), now)
            self._set_verdict(subject, None)
        for subject in changes.added_subjects:
            check = subject.check
            threshold = carried.pop(subject.key, None) or self._restore(subject)
            if threshold is None:
                self.thresholds[subject.key] = Threshold(check.failure_threshold, check.success_threshold,
                                                         float(check.period_seconds))
                self._set_verdict(subject, Verdict(State.UNKNOWN, subject.probe.check_id))
            else:
                threshold.failure_threshold, threshold.success_threshold = (check.failure_threshold,
                                                                            check.success_threshold)
                threshold.period = float(check.period_seconds)
                self.thresholds[subject.key] = threshold
        for key in changes.added_probes:
            probe = self.index.probes[key]
            self.scheduler.add(key, check_target(key.address, probe.check), probe.period, probe.timeout)
        for key in changes.retimed_probes:
            probe = self.index.probes[key]
            self.scheduler.retime(key, probe.period, probe.timeout)
        self._track_addresses(changes)

    def _track_addresses(self, changes: Changes) -> None:
        """Keep each address's staleness window at STALE_PERIODS × its longest probe period; forget an address
        no probe uses any more."""
        touched = set()
        for key in changes.removed_probes:
            self._periods_of.get(key.address, {}).pop(key, None)
            touched.add(key.address)
        for key in (*changes.added_probes, *changes.retimed_probes):
            self._periods_of.setdefault(key.address, {})[key] = self.index.probes[key].period
            touched.add(key.address)
        now = self.scheduler.clock()
        with self._lock:
            for address in touched:
                periods = self._periods_of.get(address)
                if periods:
                    self.latency.track(address, STALE_PERIODS * max(periods.values()), now)
                else:
                    self._periods_of.pop(address, None)
                    self.latency.forget(address)

    def _restore(self, subject: Subject) -> Threshold | None:
        """The state of a subject listed again soon after it left with the same probe (None: start Unknown)."""
        retired = self._retired.pop(subject.key, None)
        if retired is None or retired.probe != subject.probe:
            return None
        self.subjects_down += retired.threshold.state is State.DOWN
        self._set_verdict(subject, retired.verdict or Verdict(retired.threshold.state, subject.probe.check_id))
        return retired.threshold

    def _forget_retired(self, now: float) -> None:
        retired = self._retired
        while retired:
            key, oldest = next(iter(retired.items()))
            if now - oldest.at < RETAIN_SECONDS:
                return
            del retired[key]

    def _verdict(self, key: SubjectKey) -> Verdict | None:
        with self._lock:
            return self._verdicts.get(key.report, {}).get(key.entry)

    def _note_problem(self, ident: tuple[str, str, str], new: ProbedIntent | None) -> None:
        problem = new.problem if new is not None else ""
        if problem and self.problems.get(ident) != problem:
            logger.warning("healthCheck not run", extra={"intent": "/".join(ident), "reason": problem})
        if problem:
            self.problems[ident] = problem
        else:
            self.problems.pop(ident, None)
        self.metrics.skipped_intents.set(len(self.problems))

    def _set_verdict(self, subject: Subject, verdict: Verdict | None) -> None:
        key = subject.key
        with self._lock:
            entries = self._verdicts.setdefault(key.report, {})
            if verdict is None:
                if entries.pop(key.entry, None) is not None:
                    reports = self._reports_of[key.address]
                    reports[key.report] -= 1
                    if reports[key.report] <= 0:
                        del reports[key.report]
                        if not reports:
                            del self._reports_of[key.address]
                if not entries:
                    del self._verdicts[key.report]
            else:
                if key.entry not in entries:
                    self._reports_of.setdefault(key.address, collections.Counter())[key.report] += 1
                entries[key.entry] = verdict
        self.writer.mark(key.report)

    def _on_outcome(self, key: ProbeKey, outcome: Outcome, corroboration: bool) -> None:
        self.metrics.observe_check(outcome.result, outcome.elapsed, outcome.tls_resumed)
        probe = self.index.probes.get(key)
        run = self.scheduler.runs.get(key)
        if probe is None or run is None:
            return
        now = self.scheduler.clock()
        if outcome.rtt is not None:
            self._sampled_rtt(key.address, outcome.rtt, now)
        for subject in probe.subjects.values():
            threshold = self.thresholds[subject.key]
            if not corroboration and not threshold.counts(now, run.period):
                continue
            success, message = judge(outcome, subject.check.timeout_seconds)
            before = threshold.state
            if threshold.observe(success, message, now):
                self._flipped(subject, before, threshold)

    def _flipped(self, subject: Subject, before: State, threshold: Threshold) -> None:
        state = threshold.state
        self.subjects_down += (state is State.DOWN) - (before is State.DOWN)
        self.metrics.flips.labels(state.value).inc()
        self._set_verdict(subject, Verdict(state, subject.probe.check_id, rfc3339(self.wall()), threshold.message))
        if before is not State.UNKNOWN or state is State.DOWN:
            key = subject.key
            logger.info(f"check {state.value}", extra={"namespace": key.namespace, "intent": key.intent,
                                                       "cluster": key.cluster, "address": key.address,
                                                       "reason": threshold.message, "was": before.value})

    def _sampled_rtt(self, address: str, rtt: float, now: float) -> None:
        self.metrics.rtt_samples.observe(rtt)
        with self._lock:
            change = self.latency.sample(address, rtt, now, self.wall())
        if change is not None:
            self._latency_changed(address, change)

    def _expire_latency(self, now: float) -> None:
        with self._lock:
            gone = self.latency.expire(now)
        for address in gone:
            self._latency_changed(address, Change.STALE)

    def _latency_changed(self, address: str, change: Change) -> None:
        """Rewrite every report holding ``address`` (each namespace with a check on it, for its cluster)."""
        self.metrics.rtt_changes.labels(change.value).inc()
        with self._lock:
            reports = list(self._reports_of.get(address, ()))
            figure = self.latency.published(address)
        for report in reports:
            self.writer.mark(report)
        logger.log(logging.DEBUG if change is Change.APPEARED else logging.INFO, f"rtt {change.value}",
                   extra={"address": address, "rtt_micros": figure.rtt_micros if figure is not None else None,
                          "reports": len(reports)})

    def _corroborate(self, keys: list[ProbeKey]) -> None:
        for key in keys:
            if self.scheduler.run_now(key):
                self.metrics.corroborations.inc()

    # --- shared with the writers and the metrics -----------------------------------------------------

    def snapshot(self, key: ReportKey) -> dict[EntryKey, Verdict]:
        with self._lock:
            return dict(self._verdicts.get(key, {}))

    def latency_of(self, key: ReportKey) -> dict[str, LatencyEntry | None]:
        """The RTT figure of each address the report's subjects use (``LatencyTable.figures``)."""
        with self._lock:
            return self.latency.figures({address for _, address in self._verdicts.get(key, {})})

    def rtt_by_cluster(self) -> list[tuple[str, str, float]]:
        """(cluster, address, median seconds) of every address with a current median, for the metrics."""
        with self._lock:
            medians = self.latency.medians()
            clusters = {address: {cluster for _, cluster in self._reports_of.get(address, ())} for address in medians}
        return [(cluster, address, micros / 1_000_000) for address, micros in medians.items()
                for cluster in sorted(clusters[address])]

    def _sampled(self) -> dict[str, float]:
        scheduler = self.scheduler
        return {
            "checks_started_total": scheduler.started,
            "checks_skipped_total": scheduler.skipped,
            "configured_check_rate": scheduler.configured_rate,
            "achieved_check_rate": scheduler.achieved_rate(),
            "probes": len(scheduler.runs),
            "subjects": len(self.thresholds),
            "subjects_down": self.subjects_down,
            "in_flight": scheduler.runner.in_flight,
            "schedule_lateness_seconds": scheduler.take_worst_lateness(),
            "keeping_up": float(scheduler.keeping_up()[0]),
            "first_round_done": float(scheduler.round_done),
            "lease_held": float(self.lease.holds()),
            "reports_pending": self.writer.pending,
            "reports_current": float(not self.writer.behind()),
        }
