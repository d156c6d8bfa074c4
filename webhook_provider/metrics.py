"""Prometheus metrics of the webhook, on a registry of its own (served on the health port), and the report of
records it cannot store (counted every time, logged once per name)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from webhook_provider.validation import Rejection

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REPORTED_MEMORY = 10_000  # (name, reason) pairs remembered as already logged; the oldest are forgotten first


@dataclass
class RejectionLog:
    """Logs each (name, reason) at warning once, repeats at debug: ExternalDNS resends every second."""

    capacity: int = REPORTED_MEMORY
    _seen: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def report(self, rejection: Rejection, source: str, path: str) -> None:
        key = (rejection.dns_name, rejection.reason.value)
        with self._lock:
            first = key not in self._seen
            self._seen[key] = None
            self._seen.move_to_end(key)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
        level = logging.WARNING if first else logging.DEBUG
        log.log(level, "record skipped: it cannot be stored", extra={
            "dnsName": rejection.dns_name, "recordType": rejection.record_type, "reason": rejection.reason.value,
            "detail": rejection.message, "source": source, "path": path})


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    request_latency: Histogram
    etcd_latency: Histogram
    etcd_errors: Counter
    records_managed: Gauge
    changes_applied: Counter
    applies: Counter
    dropped_endpoints: Counter
    rejected_records: Counter
    rejections: RejectionLog
    reads: Counter
    mirror_relists: Counter
    mirror_events: Counter
    mirror_revision: Gauge
    name_keys_repaired: Gauge

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        name_keys_repaired = Gauge("fleetdns_webhook_name_keys_repaired", "names whose name key the repair pass "
                                   "at start wrote or removed; -1 until that pass completed", registry=registry)
        name_keys_repaired.set(-1)
        return cls(
            registry=registry,
            requests=Counter("fleetdns_webhook_requests_total", "API requests by route, method and status",
                             ["route", "method", "status"], registry=registry),
            request_latency=Histogram("fleetdns_webhook_request_duration_seconds", "API request latency by route",
                                      ["route", "method", "status"], buckets=_LATENCY_BUCKETS, registry=registry),
            etcd_latency=Histogram("fleetdns_webhook_etcd_operation_duration_seconds", "etcd call latency",
                                   ["operation"], buckets=_LATENCY_BUCKETS, registry=registry),
            etcd_errors=Counter("fleetdns_webhook_etcd_errors_total", "failed etcd calls and transaction conflicts",
                                ["operation"], registry=registry),
            records_managed=Gauge("fleetdns_webhook_records", "endpoints under the prefix at the last read",
                                  registry=registry),
            changes_applied=Counter("fleetdns_webhook_changes_applied_total", "endpoints applied, by change type",
                                    ["change"], registry=registry),
            applies=Counter("fleetdns_webhook_applies_total",
                            "POST /records calls by outcome (applied, empty, rejected, failed)", ["outcome"],
                            registry=registry),
            dropped_endpoints=Counter("fleetdns_webhook_adjust_dropped_total",
                                      "endpoints /adjustendpoints dropped, by reason", ["reason"], registry=registry),
            rejected_records=Counter("fleetdns_webhook_records_rejected_total",
                                     "endpoints POST /records skipped (not written), by reason", ["reason"],
                                     registry=registry),
            rejections=RejectionLog(),
            reads=Counter("fleetdns_webhook_reads_total",
                          "prefix reads for GET /records and apply, by source (mirror, etcd)", ["source"],
                          registry=registry),
            mirror_relists=Counter("fleetdns_webhook_mirror_relists_total",
                                   "full listings of the prefix by the mirror, by reason", ["reason"],
                                   registry=registry),
            mirror_events=Counter("fleetdns_webhook_mirror_events_total",
                                  "watch events applied to the mirror", registry=registry),
            mirror_revision=Gauge("fleetdns_webhook_mirror_revision",
                                  "highest etcd revision the mirror has applied", registry=registry),
            name_keys_repaired=name_keys_repaired,
        )
