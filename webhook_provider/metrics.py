"""Prometheus metrics of the webhook, on a registry of its own (served on the health port), and the report of
records it cannot store (counted every time, logged once per name)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from fleetdns.skydns.metrics import LATENCY_BUCKETS, StoreMetrics
from webhook_provider.validation import DroppedProperty, Rejection, RejectReason

APPLY_OUTCOMES = ("applied", "empty", "rejected", "failed")  # fleetdns_webhook_applies_total{outcome}

log = logging.getLogger(__name__)

REPORTED_MEMORY = 10_000  # (name, reason) pairs remembered as already logged; the oldest are forgotten first


@dataclass
class RejectionLog:
    """Logs each (name, reason) at warning once, repeats at debug: ExternalDNS resends every second."""

    capacity: int = REPORTED_MEMORY
    _seen: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def report(self, rejection: Rejection, source: str, path: str) -> None:
        level = self._level((rejection.dns_name, rejection.reason.value))
        log.log(level, "record skipped: it cannot be stored", extra={
            "dnsName": rejection.dns_name, "recordType": rejection.record_type, "reason": rejection.reason.value,
            "detail": rejection.message, "source": source, "path": path})

    def report_property(self, dropped: DroppedProperty, source: str, path: str) -> None:
        level = self._level((dropped.dns_name, f"property:{dropped.property}"))
        log.log(level, "providerSpecific property dropped: the record is stored without it", extra={
            "dnsName": dropped.dns_name, "recordType": dropped.record_type, "property": dropped.property,
            "detail": dropped.message, "source": source, "path": path})

    def _level(self, key: tuple[str, str]) -> int:
        """Warning the first time ``key`` is seen (of the last ``capacity``), debug for repeats."""
        with self._lock:
            first = key not in self._seen
            self._seen[key] = None
            self._seen.move_to_end(key)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
        return logging.WARNING if first else logging.DEBUG


@dataclass(frozen=True)
class Metrics:
    """The webhook's own metrics, beside the store's and the mirror's (``store``) on one registry."""

    registry: CollectorRegistry
    store: StoreMetrics
    requests: Counter
    request_latency: Histogram
    records_managed: Gauge
    changes_applied: Counter
    applies: Counter
    dropped_endpoints: Counter
    rejected_records: Counter
    dropped_properties: Counter
    rejections: RejectionLog
    name_keys_repaired: Gauge

    @classmethod
    def create(cls, namespace: str = "fleetdns_webhook") -> Metrics:
        store = StoreMetrics.create(namespace)
        registry = store.registry
        name_keys_repaired = Gauge(f"{namespace}_name_keys_repaired", "names whose name key the repair pass "
                                   "at start wrote or removed; -1 until that pass completed", registry=registry)
        name_keys_repaired.set(-1)
        metrics = cls(
            registry=registry,
            store=store,
            requests=Counter(f"{namespace}_requests_total", "API requests by route, method and status",
                             ["route", "method", "status"], registry=registry),
            request_latency=Histogram(f"{namespace}_request_duration_seconds", "API request latency by route",
                                      ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=registry),
            records_managed=Gauge(f"{namespace}_records", "endpoints under the prefix at the last read",
                                  registry=registry),
            changes_applied=Counter(f"{namespace}_changes_applied_total", "endpoints applied, by change type",
                                    ["change"], registry=registry),
            applies=Counter(f"{namespace}_applies_total",
                            "POST /records calls by outcome (applied, empty, rejected, failed)", ["outcome"],
                            registry=registry),
            dropped_endpoints=Counter(f"{namespace}_adjust_dropped_total",
                                      "endpoints /adjustendpoints dropped, by reason", ["reason"], registry=registry),
            rejected_records=Counter(f"{namespace}_records_rejected_total",
                                     "endpoints POST /records skipped (not written), by reason", ["reason"],
                                     registry=registry),
            dropped_properties=Counter(f"{namespace}_properties_dropped_total",
                                       "providerSpecific properties left out of a stored endpoint because their "
                                       "value cannot be used, by property and route", ["property", "route"],
                                       registry=registry),
            rejections=RejectionLog(),
            name_keys_repaired=name_keys_repaired,
        )
        # every series an alert or a dashboard reads, at 0 from the start: a rate over a series that appears only with
        # its first increment misses that increment, and a panel shows "no data" instead of 0
        for outcome in APPLY_OUTCOMES:
            metrics.applies.labels(outcome)
        for reason in RejectReason:
            metrics.rejected_records.labels(reason.value)
        return metrics


@dataclass(frozen=True)
class HostMetrics:
    """The region's view of the host: the relay of ExternalDNS's host connection and how far the region lags."""

    host_reachable: Gauge
    relay_requests: Counter
    relay_held: Histogram
    relay_holding: Gauge
    lag: Gauge
    change_applied: Histogram
    lag_repairs: Counter
    views: Gauge
    views_invalid: Counter
    view_writes: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry, region: str, namespace: str = "fleetdns_webhook") -> HostMetrics:
        lag = Gauge(f"{namespace}_host_lag_seconds", "age of the oldest host DNSEndpoint change not yet in this "
                    "region's etcd (0: in step)", ["region"], registry=registry)
        return cls(
            host_reachable=Gauge(f"{namespace}_host_reachable", "1 when the host API server answered the relay's "
                                 "last request, 0 while it does not", registry=registry),
            relay_requests=Counter(f"{namespace}_host_relay_requests_total", "ExternalDNS's host API requests "
                                   "through the relay, by method and outcome (status, watch, held_out, refused)",
                                   ["method", "outcome"], registry=registry),
            relay_held=Histogram(f"{namespace}_host_relay_held_seconds", "how long a request was held while the "
                                 "host did not answer", buckets=LATENCY_BUCKETS, registry=registry),
            relay_holding=Gauge(f"{namespace}_host_relay_holding", "requests the relay holds now because the host "
                                "does not answer", registry=registry),
            lag=lag.labels(region),
            change_applied=Histogram(f"{namespace}_host_change_applied_seconds", "from a host DNSEndpoint change "
                                     "seen to its records in this region's etcd", ["region"],
                                     buckets=LATENCY_BUCKETS + (60.0, 120.0), registry=registry).labels(region),
            lag_repairs=Counter(f"{namespace}_host_lag_repairs_total", "host watch resets because the region "
                                "lagged the host", ["region"], registry=registry).labels(region),
            views=Gauge(f"{namespace}_host_views", "the host's DNSViews kept in this region's etcd (-1 until the "
                        "host was first listed)", registry=registry),
            views_invalid=Counter(f"{namespace}_host_views_invalid_total", "host DNSViews skipped because they "
                                  "cannot be served (counted each time one is read)", registry=registry),
            view_writes=Counter(f"{namespace}_host_view_writes_total", "DNSView keys written (put) or removed "
                                "(delete) in this region's etcd", ["change"], registry=registry),
        )
