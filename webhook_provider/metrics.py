"""Prometheus metrics of the webhook, on a registry of its own (served on the health port)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
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
        )
