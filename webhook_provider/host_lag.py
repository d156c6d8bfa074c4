"""How far this region's etcd lags the host's DNSEndpoints, and the repair when it lags too long.

A DNSEndpoint change is pending from the moment the host watch shows it until every record of it that the webhook
would store is in etcd with the same targets; the lag is the age of the oldest pending change. Past
``repair_after`` the relay ends ExternalDNS's host watches (paced by a backoff), so a stalled or stale watch is
replaced at once (docs/design/host-outage.md).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleetdns.apipaths import DNS_ENDPOINTS
from fleetdns.dnsview import VIEW_PROPERTY
from fleetdns.endpoint import Endpoint
from fleetdns.informer import Informer, object_key
from fleetdns.kubeapi import KubeClient
from fleetdns.skydns.store import EtcdUnavailableError
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.metrics import HostMetrics
from webhook_provider.validation import Rejection, storable_endpoint

log = logging.getLogger(__name__)

CHECK_EVERY_SECONDS = 0.2
REPAIR_BACKOFF_MAX_SECONDS = 60.0

# (name, type, set identifier, view) -> targets: what must be in etcd for a record to count as applied. Other
# properties and the TTL are left to ExternalDNS's planner, which updates them on its next loop of the same watch.
RecordKey = tuple[str, str, str, str]
Expected = dict[RecordKey, frozenset[str]]


@dataclass(frozen=True)
class HostDNSEndpoint:
    key: str  # namespace/name
    endpoints: tuple[Endpoint, ...]


def parse_dns_endpoint(raw: dict[str, Any]) -> HostDNSEndpoint:
    """spec.endpoints as ExternalDNS's CRD source reads it (the rest of the object, status included, is ignored)."""
    items = (raw.get("spec") or {}).get("endpoints") or []
    return HostDNSEndpoint(object_key(raw), tuple(Endpoint.from_json(item, f"spec.endpoints[{index}]")
                                                  for index, item in enumerate(items) if item is not None))


def record_key(endpoint: Endpoint) -> RecordKey:
    view = endpoint.provider_specific_value(VIEW_PROPERTY) or ""
    return endpoint.dns_name.lower(), endpoint.record_type, endpoint.set_identifier, view


def expected_records(endpoints: tuple[Endpoint, ...], domain_filter: DomainFilter) -> Expected:
    """The records the region should hold for these endpoints: those ExternalDNS's CRD source passes on (no
    target ending in a dot) and the webhook would store, in their stored form."""
    expected: Expected = {}
    for endpoint in endpoints:
        if any(target.endswith(".") for target in endpoint.targets) and endpoint.record_type.upper() != "NAPTR":
            continue
        verdict = storable_endpoint(endpoint, domain_filter)
        if isinstance(verdict, Rejection):
            continue
        stored = verdict.endpoint
        expected[record_key(stored)] = frozenset(target.lower() for target in stored.targets)
    return expected


def missing_records(expected: Expected, stored_for: Callable[[str], list[Endpoint]]) -> list[str]:
    """The names whose records in etcd differ from ``expected`` (sorted)."""
    by_name: dict[str, dict[RecordKey, frozenset[str]]] = {}
    differing: set[str] = set()
    for key, targets in expected.items():
        name = key[0]
        if name not in by_name:
            by_name[name] = {record_key(e): frozenset(t.lower() for t in e.targets) for e in stored_for(name)}
        if by_name[name].get(key) != targets:
            differing.add(name)
    return sorted(differing)


@dataclass
class Pending:
    seen: float  # monotonic time the change was first seen
    expected: Expected
    missing: list[str]


class LagTracker:
    """Which host changes are not yet in etcd, the lag they add up to, and when to repair (no I/O of its own:
    ``changed`` is fed by the host watch, ``check`` runs on a timer)."""

    def __init__(self, domain_filter: DomainFilter, stored_for: Callable[[str], list[Endpoint]],
                 metrics: HostMetrics, repair_after: float, reset_watches: Callable[[], int] | None,
                 clock: Callable[[], float] = time.monotonic, refresh: Callable[[], object] = lambda: None) -> None:
        """``refresh`` brings what ``stored_for`` reads up to date with etcd (raises EtcdUnavailableError)."""
        self.domain_filter = domain_filter
        self.stored_for = stored_for
        self.refresh = refresh
        self.metrics = metrics
        self.repair_after = repair_after
        self.reset_watches = reset_watches
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, Pending] = {}
        self._repair_backoff = repair_after
        self._next_repair = 0.0
        self._lagging = False

    def changed(self, old: HostDNSEndpoint | None, new: HostDNSEndpoint | None) -> None:
        """A DNSEndpoint's endpoints changed (the informer's callback, on its thread)."""
        if new is None:
            if old is not None:
                with self._lock:
                    self._pending.pop(old.key, None)  # deletions are not followed into etcd (design note)
            return
        expected = expected_records(new.endpoints, self.domain_filter)
        with self._lock:
            previous = self._pending.get(new.key)
            self._pending[new.key] = Pending(previous.seen if previous else self.clock(), expected, [])

    def check(self) -> float:
        """Compare every pending change with etcd now; returns the lag in seconds (0: in step)."""
        with self._lock:
            pending = list(self._pending.items())
        now = self.clock()
        if pending:
            self.refresh()
        applied = []
        for key, entry in pending:
            entry.missing = missing_records(entry.expected, self.stored_for)
            if not entry.missing:
                applied.append((key, entry))
        with self._lock:
            for key, entry in applied:
                if self._pending.get(key) is entry:
                    del self._pending[key]
                    self.metrics.change_applied.observe(max(0.0, now - entry.seen))
        return self.publish()

    def publish(self) -> float:
        now = self.clock()
        with self._lock:
            oldest = min(self._pending.items(), key=lambda item: item[1].seen, default=None)
        lag = 0.0 if oldest is None else max(0.0, now - oldest[1].seen)
        self.metrics.lag.set(lag)
        if oldest is None or lag < self.repair_after:
            if self._lagging:
                log.info("region in step with the host again")
            self._lagging = False
            self._repair_backoff, self._next_repair = self.repair_after, 0.0
            return lag
        self._lagging = True
        if now >= self._next_repair:
            self._repair(oldest[0], oldest[1], lag, now)
        return lag

    def _repair(self, key: str, entry: Pending, lag: float, now: float) -> None:
        facts = {"dnsendpoint": key, "lag_seconds": round(lag, 2), "names": entry.missing[:10],
                 "next_check_in_seconds": self._repair_backoff}
        if self.reset_watches is None:  # no relay (--host-relay-listen empty): nothing here can hurry ExternalDNS
            log.warning("region lags the host; ExternalDNS does not reach the host through the relay, so it "
                        "cannot be reset", extra=facts)
        else:
            self.metrics.lag_repairs.inc()
            log.warning("region lags the host: ending ExternalDNS's host watches so it watches again at once",
                        extra={**facts, "watches_reset": self.reset_watches()})
        self._next_repair = now + self._repair_backoff
        self._repair_backoff = min(self._repair_backoff * 2, REPAIR_BACKOFF_MAX_SECONDS)


class HostLag:
    """The host's DNSEndpoints watched into a LagTracker, checked every CHECK_EVERY_SECONDS on a thread."""

    def __init__(self, client: KubeClient, namespace: str, label_selector: str, tracker: LagTracker) -> None:
        self.tracker = tracker
        self._stopping = threading.Event()
        self.informer: Informer[HostDNSEndpoint] = Informer(
            "host-dnsendpoints", client, DNS_ENDPOINTS.path(namespace), parse_dns_endpoint, tracker.changed,
            label_selector=label_selector)
        self._thread = threading.Thread(target=self._loop, name="host-lag", daemon=True)

    def start(self) -> HostLag:
        self.informer.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.informer.stop()

    def _loop(self) -> None:
        while not self._stopping.wait(CHECK_EVERY_SECONDS):
            try:
                self.tracker.check()
            except EtcdUnavailableError:
                self.tracker.publish()  # etcd down: nothing can be applied, the lag keeps growing
            except Exception:  # noqa: BLE001 - the check must outlive any one bad object
                log.exception("host lag check failed")


def stored_endpoints(encoded_name: Callable[[str], str]) -> Callable[[str], list[Endpoint]]:
    """``stored_for`` over the records listing: one name's endpoints, decoded from the listing's encoded part."""
    def stored_for(name: str) -> list[Endpoint]:
        part = encoded_name(name)
        return [Endpoint.from_json(item) for item in json.loads(f"[{part}]")] if part else []

    return stored_for

