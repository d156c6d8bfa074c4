"""One reconcile of one intent: evaluate every member through the intent's source, render the
DNSEndpoint and the status, and write each only when it differs from what the API server holds.

The reconciler reads through ``ReconcileInputs`` (the Engine's caches, or an in-memory stand-in in
tests) and writes through a KubeClient; it keeps its own record of what it wrote, which is fresher
than the caches until the write's watch event arrives.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from aggregator.apipaths import DNS_ENDPOINTS, EVENTS
from aggregator.kubeapi import KubeClient, KubeError
from aggregator.metrics import AggregatorMetrics
from aggregator.model import DNSEndpointObject, Domain, Intent, IntentKey, IntentStatus, parse_dns_endpoint
from aggregator.render import render_dns_endpoint
from aggregator.sources import SOURCES
from aggregator.sources.base import Desired, MemberObjects, Source, SourceRegistry
from aggregator.status import DEGRADED, READY, build_status, cluster_changes
from fleetdns.endpoint import Endpoint

logger = logging.getLogger("aggregator.reconciler")
COMPONENT = "fleetdns-aggregator"


class ReconcileInputs(Protocol):
    """What a reconcile reads; the Engine implements it over its informer caches."""

    def intent(self, key: IntentKey) -> Intent | None: ...

    def members(self) -> Sequence[MemberObjects]:
        """Every member cluster, in name order."""
        ...

    def domain(self, namespace: str, name: str) -> Domain | None: ...

    def dns_endpoint(self, namespace: str, name: str) -> DNSEndpointObject | None:
        """The DNSEndpoint as the cache last saw it (None: not there, or not seen yet)."""
        ...


def event_suffix(uid: str, kind: str, reason: str, message: str) -> str:
    """Same object, type, reason and message -> same Event name, so repeats are counted on one Event."""
    return hashlib.sha256("\0".join((uid, kind, reason, message)).encode()).hexdigest()[:16]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(self, inputs: ReconcileInputs, host: KubeClient, metrics: AggregatorMetrics, identity: str,
                 domain_namespace: str, sources: SourceRegistry = SOURCES) -> None:
        self.inputs = inputs
        self.host = host
        self.metrics = metrics
        self.identity = identity
        self.domain_namespace = domain_namespace
        self.sources = sources
        self._conditions: dict[IntentKey, tuple[str, str]] = {}
        self._last_status: dict[IntentKey, IntentStatus] = {}  # what this leader last wrote as status
        self._desired: dict[IntentKey, tuple[dict[str, Any], ...]] = {}  # last rendered DNSEndpoint records
        self._written: dict[IntentKey, DNSEndpointObject] = {}  # last DNSEndpoint written, until the cache has it

    # --- what the engine asks -----------------------------------------------------------------

    def status_written(self, key: IntentKey) -> IntentStatus | None:
        """The status this leader last wrote (its watch event coming back is not a change)."""
        return self._last_status.get(key)

    def desired_endpoints(self, key: IntentKey) -> tuple[dict[str, Any], ...] | None:
        """The records last rendered for the intent; None when it was never reconciled (or is gone)."""
        return self._desired.get(key)

    def dns_endpoint_observed(self, key: IntentKey, seen: DNSEndpointObject | None) -> None:
        """The cache saw the intent's DNSEndpoint change: once it has our write (or anything after it,
        or its deletion), the cache is the fresher view again."""
        written = self._written.get(key)
        if written is not None and (seen is None or _caught_up(seen.resource_version, written.resource_version)):
            self._written.pop(key, None)

    def forget_writes(self) -> None:
        """Leadership gained: another replica may have written since, so the caches are the truth again."""
        self._last_status.clear()
        self._written.clear()

    def condition_counts(self) -> Tally[tuple[str, str, str]]:
        tally: Tally[tuple[str, str, str]] = Tally()
        for key, (ready, degraded) in list(self._conditions.items()):
            tally[(str(key.kind), READY, ready)] += 1
            tally[(str(key.kind), DEGRADED, degraded)] += 1
        return tally

    # --- Domains, for the sources -------------------------------------------------------------

    def find(self, namespace: str, name: str) -> Domain | None:
        """The intent's namespace first, then the aggregator's domain namespace."""
        return self.inputs.domain(namespace, name) or self.inputs.domain(self.domain_namespace, name)

    def searched(self, namespace: str) -> str:
        return f"{namespace} or {self.domain_namespace}"

    # --- decide (pure, given the caches) ------------------------------------------------------

    def desired(self, intent: Intent, previous: IntentStatus) -> Desired:
        """``previous`` (the last published status) stands in for members not reached since start-up."""
        source = self.sources.for_kind(intent.key.kind)
        last = {entry.cluster: entry for entry in previous.dns}
        entries = tuple(entry for member in self.inputs.members()
                        if (entry := source.evaluate(intent, replace(member.view(), last_known=last.get(member.name)),
                                                     member)) is not None)
        return source.render(intent, entries, self)

    # --- act ----------------------------------------------------------------------------------

    def reconcile(self, key: IntentKey) -> None:
        source = self.sources.for_kind(key.kind)
        intent = self.inputs.intent(key)
        if intent is None:
            self._delete_dns_endpoint(key, source)
            self._desired.pop(key, None)
            self._written.pop(key, None)
            self._conditions.pop(key, None)
            self._last_status.pop(key, None)
            return
        # What this leader last wrote is fresher than the cache until the write's watch event arrives;
        # comparing with the cache then would write twice and announce the same join twice.
        old = self._last_status.get(key) or intent.status
        desired = self.desired(intent, old)
        self._write_dns_endpoint(key, source, intent, desired.endpoints)
        status = build_status(desired.outcome, intent.generation, old, now_rfc3339())
        if old != status:
            self._last_status[key] = status  # before the write: its watch event may arrive before we return
            try:
                self._write_status(key, source, status)
            except KubeError:
                self._last_status.pop(key, None)
                raise
            self._emit_changes(key, source, intent, old, status)
        self._last_status[key] = status
        self._conditions[key] = (_condition(status, READY), _condition(status, DEGRADED))

    def _current_dns_endpoint(self, key: IntentKey, name: str) -> DNSEndpointObject | None:
        """The cache, unless what we wrote last is newer (its watch event has not arrived yet)."""
        cached = self.inputs.dns_endpoint(key.namespace, name)
        written = self._written.get(key)
        if written is None:
            return cached
        if cached is not None and _caught_up(cached.resource_version, written.resource_version):
            self._written.pop(key, None)
            return cached
        return written

    def _write_dns_endpoint(self, key: IntentKey, source: Source[Any], intent: Intent,
                            endpoints: list[Endpoint]) -> None:
        name = source.dns_endpoint_name(key.name)
        body = render_dns_endpoint(key, name, source.intent_resource, intent.uid, endpoints)
        self._desired[key] = tuple(body["spec"]["endpoints"])
        existing = self._current_dns_endpoint(key, name)
        if existing is not None and _dns_endpoint_matches(existing, body, intent.uid):
            return
        patch = {"metadata": {"labels": body["metadata"]["labels"],
                              "ownerReferences": body["metadata"]["ownerReferences"]}, "spec": body["spec"]}
        if existing is None:
            try:
                self._remember(key, self.host.create(DNS_ENDPOINTS.path(key.namespace), body))
                self._count_write("create", key, len(endpoints))
                return
            except KubeError as error:
                if error.status != 409:
                    raise
        self._remember(key, self.host.merge_patch(DNS_ENDPOINTS.path(key.namespace, name), patch))
        self._count_write("update", key, len(endpoints))

    def _remember(self, key: IntentKey, written: dict[str, Any]) -> None:
        """Keep what we wrote, so a reconcile before its watch event compares with it, not the older cache."""
        self._written[key] = parse_dns_endpoint(written)

    def _count_write(self, operation: str, key: IntentKey, records: int) -> None:
        self.metrics.dnsendpoint_writes.labels(operation).inc()
        logger.info("DNSEndpoint written", extra={"intent": str(key), "operation": operation, "records": records})

    def _delete_dns_endpoint(self, key: IntentKey, source: Source[Any]) -> None:
        name = source.dns_endpoint_name(key.name)
        existing = self._current_dns_endpoint(key, name)
        if existing is None or existing.intent_key != key:
            return
        try:
            self.host.delete(DNS_ENDPOINTS.path(key.namespace, name))
        except KubeError as error:
            if error.status != 404:
                raise
        self._count_write("delete", key, 0)

    def _write_status(self, key: IntentKey, source: Source[Any], status: IntentStatus) -> None:
        try:
            self.host.merge_patch(source.intent_resource.path(key.namespace, key.name, "status"),
                                  {"status": status.to_json()})
        except KubeError as error:
            if error.status == 404:  # deleted meanwhile; its delete event brings the clean-up
                return
            raise
        self.metrics.status_writes.labels(str(key.kind)).inc()

    def _emit_changes(self, key: IntentKey, source: Source[Any], intent: Intent, old: IntentStatus,
                      new: IntentStatus) -> None:
        joined, left = cluster_changes(old, new)
        if joined:
            self._event(key, source, intent, "Normal", "ClusterJoined",
                        "joined the answer: " + "; ".join(f"{c.cluster} ({c.reason})" for c in joined))
        if left:
            self._event(key, source, intent, "Warning", "ClusterLeft",
                        "left the answer: " + "; ".join(f"{c.cluster} ({c.reason})" for c in left))

    def _event(self, key: IntentKey, source: Source[Any], intent: Intent, kind: str, reason: str,
               message: str) -> None:
        """Record an Event; a repeat of the same one (a flapping cluster) bumps its count instead of piling up."""
        stamp = now_rfc3339()
        message = message[:1024]
        name = f"{key.name}.{event_suffix(intent.uid, kind, reason, message)}"
        body = EVENTS.manifest(name, key.namespace) | {
            "involvedObject": {"apiVersion": source.intent_resource.api_version, "kind": str(key.kind),
                               "namespace": key.namespace, "name": key.name, "uid": intent.uid},
            "type": kind, "reason": reason, "message": message,
            "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
            "reportingInstance": self.identity,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }
        try:
            self._create_or_count(key.namespace, name, body, stamp)
        except KubeError as error:  # an event is informative; its loss must not fail the reconcile
            logger.warning("event not recorded", extra={"intent": str(key), "reason": reason, "error": str(error)})
            return
        self.metrics.events.labels(reason).inc()
        logger.info("cluster membership changed", extra={"intent": str(key), "reason": reason, "detail": message})

    def _create_or_count(self, namespace: str, name: str, body: dict[str, Any], stamp: str) -> None:
        try:
            self.host.create(EVENTS.path(namespace), body)
            return
        except KubeError as error:
            if error.status != 409:
                raise
        existing = self.host.get(EVENTS.path(namespace, name))
        existing["count"] = int(existing.get("count") or 1) + 1
        existing["lastTimestamp"] = stamp
        existing["reportingInstance"] = body["reportingInstance"]
        self.host.replace(EVENTS.path(namespace, name), existing)


def _condition(status: IntentStatus, kind: str) -> str:
    return next((c.status for c in status.conditions if c.type == kind), "Unknown")


def _caught_up(seen: str, written: str) -> bool:
    """Whether a cache showing resourceVersion ``seen`` already has the write that returned ``written``.
    API servers hand out etcd revisions; for versions that are not numbers, trust the cache (at worst
    one redundant write)."""
    try:
        return int(seen) >= int(written)
    except ValueError:
        return True


def _dns_endpoint_matches(existing: DNSEndpointObject, body: dict[str, Any], uid: str) -> bool:
    labels = body["metadata"]["labels"]
    return (list(existing.endpoints) == body["spec"]["endpoints"]
            and all(existing.labels.get(k) == v for k, v in labels.items())
            and uid in existing.owner_uids)
