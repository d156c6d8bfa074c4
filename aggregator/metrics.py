"""Prometheus metrics on a dedicated registry (the process's default registry stays untouched)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

NAMESPACE = "fleetdns_aggregator"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _IntentConditions(Collector):
    """Counts intents by (kind, condition, status) at scrape time, from the reconciler's last results."""

    def __init__(self, source: Callable[[], Tally[tuple[str, str, str]]]) -> None:
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(f"{NAMESPACE}_intents", "Intents by kind and condition status (Ready, Degraded; "
                                   "FailOpen True while no cluster is healthy and the last healthy set answers)",
                                   labels=["kind", "condition", "status"])
        for (kind, condition, status), count in sorted(self._source().items()):
            family.add_metric([kind, condition, status], count)
        yield family


class _MemberRetryIntervals(Collector):
    """Each member's retry interval at scrape time (it changes with every failed try, not with a state)."""

    def __init__(self, source: Callable[[], dict[str, float]]) -> None:
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            f"{NAMESPACE}_member_retry_interval_seconds",
            "Seconds between tries of a member API server that does not answer (one request at a time, "
            "0.2 s doubling to 30 s); 0 while it answers", labels=["cluster"])
        for cluster, seconds in sorted(self._source().items()):
            family.add_metric([cluster], seconds)
        yield family


class AggregatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconcile_seconds = Histogram(
            f"{NAMESPACE}_reconcile_duration_seconds",
            "From the change that queued an intent to its DNSEndpoint and status written", ["kind"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.reconcile_errors = Counter(f"{NAMESPACE}_reconcile_errors_total",
                                        "Reconciles that failed and were retried", ["kind"], registry=r)
        self.queue_depth = Gauge(f"{NAMESPACE}_queue_depth", "Intents waiting in the work queue", registry=r)
        self.member_connected = Gauge(f"{NAMESPACE}_member_connected",
                                      "1 while every watch on the member API server is connected", ["cluster"],
                                      registry=r)
        self.member_state = Gauge(f"{NAMESPACE}_member_state", "Member reachability (1 for the current state)",
                                  ["cluster", "state"], registry=r)
        self.member_kind_available = Gauge(
            f"{NAMESPACE}_member_kind_available",
            "0 while the member forbids (403) or does not serve (404) an optional kind of object, else 1",
            ["cluster", "kind"], registry=r)
        self.dnsendpoint_writes = Counter(f"{NAMESPACE}_dnsendpoint_writes_total", "DNSEndpoint writes",
                                          ["operation"], registry=r)
        self.status_writes = Counter(f"{NAMESPACE}_status_writes_total", "Status writes (intents, MemberClusters)",
                                     ["kind"], registry=r)
        self.events = Counter(f"{NAMESPACE}_events_total", "Kubernetes Events posted", ["reason"], registry=r)
        self.events_dropped = Counter(
            f"{NAMESPACE}_events_dropped_total",
            "Events not posted: queue_full, refused (4xx), failed (no answer or 5xx after retries), shutdown",
            ["reason", "cause"], registry=r)
        self.statuses_pending = Gauge(f"{NAMESPACE}_statuses_pending",
                                      "Intent statuses decided and not written yet (they wait behind the answers)",
                                      registry=r)
        self.status_write_errors = Counter(f"{NAMESPACE}_status_write_errors_total",
                                           "Intent status writes that failed (each is tried again)", ["kind"],
                                           registry=r)
        self.events_pending = Gauge(f"{NAMESPACE}_events_pending", "Events waiting to be posted (bounded queue)",
                                    registry=r)
        self.leader = Gauge(f"{NAMESPACE}_leader", "1 while this replica holds the lease and writes", registry=r)
        self.lb_hostname_lookups = Counter(f"{NAMESPACE}_lb_hostname_lookups_total",
                                           "Load-balancer hostname lookups (A and AAAA) by result: resolved, failed",
                                           ["result"], registry=r)
        self.lb_hostname_lookup_seconds = Histogram(f"{NAMESPACE}_lb_hostname_lookup_duration_seconds",
                                                    "Time of one load-balancer hostname lookup (A and AAAA)",
                                                    registry=r)
        self.prober_region_fresh = Gauge(
            f"{NAMESPACE}_prober_region_fresh",
            "1 while the region's prober votes (its Lease seen renewed within --prober-grace-period), else 0",
            ["region"], registry=r)
        self.lb_hostnames = Gauge(f"{NAMESPACE}_lb_hostnames", "Load-balancer hostnames in use by intents",
                                  registry=r)
        # self-service (aggregator/selfservice/)
        self.generated_intents = Gauge(f"{NAMESPACE}_generated_intents",
                                       "Generated intents on the host, by kind and fleetdns.io/generated-by",
                                       ["kind", "generated_by"], registry=r)
        self.generated_writes = Counter(f"{NAMESPACE}_generated_intent_writes_total",
                                        "Writes of generated intents: create, update, delete", ["operation"],
                                        registry=r)
        self.generation_skips = Counter(
            f"{NAMESPACE}_generation_skips_total",
            "Self-service requests not generated: invalid_request (bad annotations, no Domain), hand_written (an "
            "intent of that name was written by hand), refused (the host API refused the intent), kind_not_served (the "
            "host lacks the intent kind's CRD); each counted once per new problem", ["reason"], registry=r)

    def observe_lb_hostname_lookup(self, resolved: bool, seconds: float, in_use: int) -> None:
        self.lb_hostname_lookups.labels("resolved" if resolved else "failed").inc()
        self.lb_hostname_lookup_seconds.observe(seconds)
        self.lb_hostnames.set(in_use)

    def watch_intent_conditions(self, source: Callable[[], Tally[tuple[str, str, str]]]) -> None:
        self.registry.register(_IntentConditions(source))

    def watch_member_retry_intervals(self, source: Callable[[], dict[str, float]]) -> None:
        self.registry.register(_MemberRetryIntervals(source))
