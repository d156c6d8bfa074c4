"""Prometheus metrics of the prober, on a registry of its own (served on the health port)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from prober.checks import Result
from prober.latency import Change

NAMESPACE = "fleetdns_prober"
CHECK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RTT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class _Sampled(Collector):
    """Gauges read at scrape time from the running prober (rates, lag, states)."""

    def __init__(self, read: Callable[[], dict[str, float]], help_texts: dict[str, str]) -> None:
        self._read = read
        self._help = help_texts

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        values = self._read()
        for name, text in self._help.items():
            if name not in values:
                continue
            if name.endswith("_total"):
                yield CounterMetricFamily(f"{NAMESPACE}_{name.removesuffix('_total')}", text, value=values[name])
            else:
                yield GaugeMetricFamily(f"{NAMESPACE}_{name}", text, value=values[name])


class _Rtt(Collector):
    """``fleetdns_prober_rtt_seconds{cluster,address}``: each address's current median, read at scrape time."""

    def __init__(self, read: Callable[[], list[tuple[str, str, float]]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(f"{NAMESPACE}_rtt_seconds", "Median TCP connect time of this region's last "
                                   "checks of a cluster address (addresses with a current median)",
                                   labels=["cluster", "address"])
        for cluster, address, seconds in self._read():
            family.add_metric([cluster, address], seconds)
        yield family


SAMPLED = {
    "checks_started_total": "Checks started (scheduled and corroboration)",
    "checks_skipped_total": "Runs skipped because the previous check of the probe was still in flight or waiting",
    "configured_check_rate": "Checks a second the current probes need (each once per its period)",
    "achieved_check_rate": "Checks a second actually started, over the last 10 s",
    "probes": "Distinct checks on the wire (identical checks of several intents count once)",
    "subjects": "Thresholded states: (intent, cluster, address) triples checked",
    "subjects_down": "Subjects this region sees Down",
    "in_flight": "Checks in flight now",
    "schedule_lateness_seconds": "Worst start delay of a check behind its due time, since the last scrape",
    "keeping_up": "1 while no check is overdue by more than its period (else the Lease is not renewed)",
    "first_round_done": "1 once every check known at start-up has run once",
    "lease_held": "1 while this replica holds its region's Lease and may write reports",
    "reports_pending": "Reports marked for a write and not yet written",
    "reports_current": "1 while this region's reports on the host are up to date (the Lease says so with each "
                       "renewal; the aggregator counts no renewal that says otherwise)",
}


class ProberMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.checks = Counter(f"{NAMESPACE}_checks_total", "Checks finished, by result", ["result"], registry=r)
        self.check_seconds = Histogram(f"{NAMESPACE}_check_duration_seconds",
                                       "Time of one check: connect, TLS handshake, request, status line",
                                       buckets=CHECK_BUCKETS, registry=r)
        self.corroborations = Counter(f"{NAMESPACE}_corroboration_checks_total",
                                      "Checks run at once because another region newly reported them Down",
                                      registry=r)
        self.tls_resumed = Counter(f"{NAMESPACE}_tls_resumed_total", "HTTPS checks whose TLS session was resumed",
                                   registry=r)
        self.flips = Counter(f"{NAMESPACE}_state_changes_total", "Thresholded state changes, by new state",
                             ["state"], registry=r)
        self.report_writes = Counter(f"{NAMESPACE}_report_writes_total", "HealthReport writes, by operation",
                                     ["operation"], registry=r)
        self.report_write_errors = Counter(f"{NAMESPACE}_report_write_errors_total",
                                           "HealthReport writes that failed and are retried, by HTTP status",
                                           ["status"], registry=r)
        self.report_conflicts = Counter(f"{NAMESPACE}_report_conflicts_total",
                                        "HealthReport writes re-read after a conflict (409) or a missing object",
                                        registry=r)
        self.rtt_samples = Histogram(f"{NAMESPACE}_rtt_sample_seconds",
                                     "TCP handshake round trips of checks as the kernel timed them, every address",
                                     buckets=RTT_BUCKETS, registry=r)
        self.rtt_changes = Counter(f"{NAMESPACE}_rtt_changes_total",
                                   "Published RTT figures that appeared, moved past the threshold or went stale "
                                   "(each rewrites the reports holding the address)", ["change"], registry=r)
        self.skipped_intents = Gauge(f"{NAMESPACE}_skipped_intents",
                                     "Intents with a healthCheck that is not run (invalid, or no Host yet)",
                                     registry=r)
        self._by_result = {result: self.checks.labels(result.value) for result in Result}  # all shown from 0
        for change in Change:
            self.rtt_changes.labels(change.value)

    def observe_check(self, result: Result, seconds: float, tls_resumed: bool) -> None:
        self._by_result[result].inc()
        self.check_seconds.observe(seconds)
        if tls_resumed:
            self.tls_resumed.inc()

    def sample(self, read: Callable[[], dict[str, float]]) -> None:
        """Expose the gauges of ``SAMPLED`` from ``read`` at each scrape."""
        self.registry.register(_Sampled(read, SAMPLED))

    def watch_rtt(self, read: Callable[[], list[tuple[str, str, float]]]) -> None:
        """Expose ``fleetdns_prober_rtt_seconds`` from ``read`` (cluster, address, seconds) at each scrape."""
        self.registry.register(_Rtt(read))
