"""One reconcile of one intent: evaluate every member, render the DNSEndpoint and the status,
and write each only when it differs from what the API server already holds."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter as Tally
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aggregator.kubeapi import KubeClient, KubeError
from aggregator.model import (
    API_VERSION,
    ClusterStatus,
    Domain,
    IngressIntent,
    Intent,
    IntentKey,
    IntentStatus,
    ServiceIntent,
    parse_dns_endpoint,
)
from aggregator.naming import ingress_host_names, service_names
from aggregator.policy import evaluate_ingress_cluster, evaluate_service_cluster
from aggregator.render import render_dns_endpoint, render_ingress_endpoints, render_service_endpoints
from aggregator.status import DEGRADED, READY, Outcome, build_status, cluster_changes
from fleetdns.dnsname import InvalidDNSNameError
from fleetdns.endpoint import Endpoint

if TYPE_CHECKING:
    from aggregator.engine import Engine

logger = logging.getLogger("aggregator.reconciler")
COMPONENT = "fleetdns-aggregator"


@dataclass(frozen=True)
class Desired:
    endpoints: list[Endpoint]
    outcome: Outcome


def event_suffix(uid: str, kind: str, reason: str, message: str) -> str:
    """Same object, type, reason and message -> same Event name, so repeats are counted on one Event."""
    return hashlib.sha256("\0".join((uid, kind, reason, message)).encode()).hexdigest()[:16]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def intent_path(key: IntentKey, subresource: str = "") -> str:
    path = f"/apis/{API_VERSION}/namespaces/{key.namespace}/{key.kind.plural}/{key.name}"
    return f"{path}/{subresource}" if subresource else path


def dns_endpoint_path(namespace: str, name: str = "") -> str:
    path = f"/apis/externaldns.k8s.io/v1alpha1/namespaces/{namespace}/dnsendpoints"
    return f"{path}/{name}" if name else path


class Reconciler:
    def __init__(self, engine: Engine, host: KubeClient, domain_namespace: str) -> None:
        self.engine = engine
        self.host = host
        self.domain_namespace = domain_namespace
        self.conditions: dict[IntentKey, tuple[str, str]] = {}
        self.last_status: dict[IntentKey, IntentStatus] = {}

    # --- decide (pure, given the caches) ------------------------------------------------------

    def find_domain(self, intent: ServiceIntent) -> Domain | None:
        """The intent's namespace first, then the aggregator's domain namespace."""
        domains = self.engine.domains.store
        return domains.get(f"{intent.namespace}/{intent.domain_ref}") or domains.get(
            f"{self.domain_namespace}/{intent.domain_ref}")

    def desired(self, intent: Intent, previous: IntentStatus) -> Desired:
        """``previous`` (the last published status) stands in for members not reached since start-up."""
        members = self.engine.member_list()
        last = {entry.cluster: entry for entry in previous.dns}
        if isinstance(intent, ServiceIntent):
            return self._desired_service(intent, members, last)
        return self._desired_ingress(intent, members, last)

    def _desired_service(self, intent: ServiceIntent, members: list[Any], last: dict[str, ClusterStatus]) -> Desired:
        entries = tuple(entry for m in members
                        if (entry := evaluate_service_cluster(
                            replace(m.service_view(intent.namespace, intent.name), last_known=last.get(m.name)),
                            intent.allow_service_without_endpoints)) is not None)
        domain = self.find_domain(intent)
        if domain is None:
            where = f"{intent.namespace} or {self.domain_namespace}"
            return Desired([], Outcome("", "", entries, 0, "DomainNotFound",
                                       f"no Domain {intent.domain_ref!r} in namespace {where}"))
        try:
            names = service_names(intent, domain.domain)
            endpoints = render_service_endpoints(intent, names, entries)
        except InvalidDNSNameError as error:
            return Desired([], Outcome(domain.domain, "", entries, 0, "InvalidName", str(error)))
        return Desired(endpoints, Outcome(names.domain, names.global_name, entries, len(endpoints)))

    def _desired_ingress(self, intent: IngressIntent, members: list[Any], last: dict[str, ClusterStatus]) -> Desired:
        entries = tuple(entry for m in members
                        if (entry := evaluate_ingress_cluster(
                            replace(m.ingress_view(intent.namespace, intent.name), last_known=last.get(m.name))))
                        is not None)
        try:
            hosts = ingress_host_names(intent.hosts)
        except InvalidDNSNameError as error:
            return Desired([], Outcome("", "", entries, 0, "InvalidName", str(error)))
        endpoints = render_ingress_endpoints(intent, hosts, entries)
        return Desired(endpoints, Outcome("", ", ".join(hosts), entries, len(endpoints)))

    # --- act ----------------------------------------------------------------------------------

    def reconcile(self, key: IntentKey) -> None:
        intent = self.engine.intent(key)
        if intent is None:
            self._delete_dns_endpoint(key)
            self.engine.desired_endpoints.pop(key, None)
            self.conditions.pop(key, None)
            self.last_status.pop(key, None)
            return
        # What this leader last wrote is fresher than the cache until the write's watch event arrives;
        # comparing with the cache then would write twice and announce the same join twice.
        old = self.last_status.get(key) or intent.status
        desired = self.desired(intent, old)
        self._write_dns_endpoint(key, intent, desired.endpoints)
        status = build_status(desired.outcome, intent.generation, old, now_rfc3339())
        if old != status:
            self.last_status[key] = status  # before the write: its watch event may arrive before we return
            try:
                self._write_status(key, status)
            except KubeError:
                self.last_status.pop(key, None)
                raise
            self._emit_changes(key, intent, old, status)
        self.last_status[key] = status
        self.conditions[key] = (_condition(status, READY), _condition(status, DEGRADED))

    def _write_dns_endpoint(self, key: IntentKey, intent: Intent, endpoints: list[Endpoint]) -> None:
        body = render_dns_endpoint(key, intent.uid, endpoints)
        self.engine.desired_endpoints[key] = tuple(body["spec"]["endpoints"])
        existing = self.engine.dns_endpoints.store.get(f"{key.namespace}/{key.dns_endpoint_name}")
        if existing is not None and _dns_endpoint_matches(existing, body, intent.uid):
            return
        path = dns_endpoint_path(key.namespace, key.dns_endpoint_name)
        patch = {"metadata": {"labels": body["metadata"]["labels"],
                              "ownerReferences": body["metadata"]["ownerReferences"]}, "spec": body["spec"]}
        if existing is None:
            try:
                self._remember(self.host.create(dns_endpoint_path(key.namespace), body))
                self._count_write("create", key, len(endpoints))
                return
            except KubeError as error:
                if error.status != 409:
                    raise
        self._remember(self.host.merge_patch(path, patch))
        self._count_write("update", key, len(endpoints))

    def _remember(self, written: dict[str, Any]) -> None:
        """Put what we wrote into the cache now, so a reconcile before its watch event compares right."""
        obj = parse_dns_endpoint(written)
        self.engine.dns_endpoints.store[f"{obj.namespace}/{obj.name}"] = obj

    def _count_write(self, operation: str, key: IntentKey, records: int) -> None:
        self.engine.metrics.dnsendpoint_writes.labels(operation).inc()
        logger.info("DNSEndpoint written", extra={"intent": str(key), "operation": operation, "records": records})

    def _delete_dns_endpoint(self, key: IntentKey) -> None:
        existing = self.engine.dns_endpoints.store.get(f"{key.namespace}/{key.dns_endpoint_name}")
        if existing is None or existing.intent_key != key:
            return
        try:
            self.host.delete(dns_endpoint_path(key.namespace, key.dns_endpoint_name))
        except KubeError as error:
            if error.status != 404:
                raise
        self._count_write("delete", key, 0)

    def _write_status(self, key: IntentKey, status: IntentStatus) -> None:
        try:
            self.host.merge_patch(intent_path(key, "status"), {"status": status.to_json()})
        except KubeError as error:
            if error.status == 404:  # deleted meanwhile; its delete event brings the clean-up
                return
            raise
        self.engine.metrics.status_writes.labels(str(key.kind)).inc()

    def _emit_changes(self, key: IntentKey, intent: Intent, old: IntentStatus, new: IntentStatus) -> None:
        joined, left = cluster_changes(old, new)
        if joined:
            self._event(key, intent, "Normal", "ClusterJoined",
                        "joined the answer: " + "; ".join(f"{c.cluster} ({c.reason})" for c in joined))
        if left:
            self._event(key, intent, "Warning", "ClusterLeft",
                        "left the answer: " + "; ".join(f"{c.cluster} ({c.reason})" for c in left))

    def _event(self, key: IntentKey, intent: Intent, kind: str, reason: str, message: str) -> None:
        """Record an Event; a repeat of the same one (a flapping cluster) bumps its count instead of piling up."""
        stamp = now_rfc3339()
        message = message[:1024]
        path = f"/api/v1/namespaces/{key.namespace}/events"
        name = f"{key.name}.{event_suffix(intent.uid, kind, reason, message)}"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": key.namespace},
            "involvedObject": {"apiVersion": API_VERSION, "kind": str(key.kind), "namespace": key.namespace,
                               "name": key.name, "uid": intent.uid},
            "type": kind, "reason": reason, "message": message,
            "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
            "reportingInstance": self.engine.identity,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }
        try:
            self._create_or_count(path, name, body, stamp)
        except KubeError as error:  # an event is informative; its loss must not fail the reconcile
            logger.warning("event not recorded", extra={"intent": str(key), "reason": reason, "error": str(error)})
            return
        self.engine.metrics.events.labels(reason).inc()
        logger.info("cluster membership changed", extra={"intent": str(key), "reason": reason, "detail": message})

    def _create_or_count(self, path: str, name: str, body: dict[str, Any], stamp: str) -> None:
        try:
            self.host.create(path, body)
            return
        except KubeError as error:
            if error.status != 409:
                raise
        existing = self.host.get(f"{path}/{name}")
        existing["count"] = int(existing.get("count") or 1) + 1
        existing["lastTimestamp"] = stamp
        existing["reportingInstance"] = body["reportingInstance"]
        self.host.replace(f"{path}/{name}", existing)

    def condition_counts(self) -> Tally[tuple[str, str, str]]:
        tally: Tally[tuple[str, str, str]] = Tally()
        for key, (ready, degraded) in list(self.conditions.items()):
            tally[(str(key.kind), READY, ready)] += 1
            tally[(str(key.kind), DEGRADED, degraded)] += 1
        return tally


def _condition(status: IntentStatus, kind: str) -> str:
    return next((c.status for c in status.conditions if c.type == kind), "Unknown")


def _dns_endpoint_matches(existing: Any, body: dict[str, Any], uid: str) -> bool:
    labels = body["metadata"]["labels"]
    return (list(existing.endpoints) == body["spec"]["endpoints"]
            and all(existing.labels.get(k) == v for k, v in labels.items())
            and uid in existing.owner_uids)

