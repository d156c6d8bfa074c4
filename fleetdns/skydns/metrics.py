"""Metrics of the etcd store and the prefix mirror, named after the process that reads the key space
(``fleetdns_webhook_…``, ``fleetdns_zonefiles_…``) on that process's registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class StoreMetrics:
    registry: CollectorRegistry
    etcd_latency: Histogram
    etcd_errors: Counter
    reads: Counter
    mirror_relists: Counter
    mirror_events: Counter
    mirror_revision: Gauge

    @classmethod
    def create(cls, namespace: str) -> StoreMetrics:
        """On a new registry: the process adds its own metrics to it and serves it on its health port."""
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            etcd_latency=Histogram(f"{namespace}_etcd_operation_duration_seconds", "etcd call latency",
                                   ["operation"], buckets=LATENCY_BUCKETS, registry=registry),
            etcd_errors=Counter(f"{namespace}_etcd_errors_total", "failed etcd calls and transaction conflicts",
                                ["operation"], registry=registry),
            reads=Counter(f"{namespace}_reads_total",
                          "prefix reads for GET /records and apply, by source (mirror, etcd)", ["source"],
                          registry=registry),
            mirror_relists=Counter(f"{namespace}_mirror_relists_total",
                                   "full listings of the prefix by the mirror, by reason", ["reason"],
                                   registry=registry),
            mirror_events=Counter(f"{namespace}_mirror_events_total",
                                  "watch events applied to the mirror", registry=registry),
            mirror_revision=Gauge(f"{namespace}_mirror_revision",
                                  "highest etcd revision the mirror has applied", registry=registry),
        )
