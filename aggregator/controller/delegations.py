"""One reconcile of a Domain's delegation (docs/design/delegation.md): read each nameserver's Service from the member
caches, decide (aggregator/render/delegation.py, pure), write the parent's and the zone's DNSEndpoints when they
differ, then the Domain's Delegated condition and its Event.

The DNSEndpoints live in the Domain's namespace, which the host's DNSEndpoint informer may not watch (``--namespace``),
and a reconcile is rare (a Domain or a nameserver's Service changed): they are read from the API server each time, so
what is published (and kept) is what the API server holds, whoever wrote it last.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from aggregator.controller.members import MemberConnection
from aggregator.health.readiness import Reachability
from aggregator.metrics import AggregatorMetrics
from aggregator.model import Condition, Domain, DomainKey, Nameserver, parse_dns_endpoint
from aggregator.registry.ownership import describe
from aggregator.render.delegation import (
    DELEGATED,
    DELEGATION_CONFLICT,
    INVALID_DELEGATION,
    Seen,
    delegation_event,
    delegation_zone,
    is_ours,
    not_delegated,
    parent_endpoint_name,
    plan_delegation,
    published_glue,
    render_delegation_endpoints,
    zone_endpoint_name,
)
from aggregator.render.events import EventSink, InvolvedObject
from aggregator.render.status import now_rfc3339, stamp
from aggregator.sources.service import SERVICE_KIND, MemberService
from fleetdns.apipaths import DNS_ENDPOINTS, DOMAINS
from fleetdns.kubeapi import KubeClient, KubeError

logger = logging.getLogger("aggregator.delegations")


class DelegationInputs(Protocol):
    def domain(self, namespace: str, name: str) -> Domain | None: ...

    def members(self) -> Sequence[MemberConnection]: ...


class Delegations:
    """Writes the delegated Domains' DNSEndpoints and their Delegated condition."""

    def __init__(self, inputs: DelegationInputs, host: KubeClient, metrics: AggregatorMetrics, events: EventSink,
                 watched_namespace: str = "") -> None:
        self.inputs = inputs
        self.host = host
        self.metrics = metrics
        self.events = events
        self.watched_namespace = watched_namespace  # the aggregator's --namespace: member Services outside are unseen
        self._conditions: dict[DomainKey, tuple[Condition, ...]] = {}  # what this leader last wrote as conditions

    def forget_writes(self) -> None:
        self._conditions.clear()

    def reconcile(self, key: DomainKey) -> None:
        domain = self.inputs.domain(key.namespace, key.name)
        if domain is None or not domain.delegated:
            self._withdraw(key, domain)
            return
        zone = delegation_zone(domain)
        if domain.delegation is None or not zone:
            condition = not_delegated(INVALID_DELEGATION, f"spec.delegation cannot be used: "
                                      f"{domain.delegation_problem or f'{domain.domain!r} is no DNS name'}; "
                                      "what was published stays")
        elif self._connecting(domain.delegation.nameservers):
            return  # its first list (or the end of its grace period) queues the Domain again
        else:
            existing = self._read(key.namespace, parent_endpoint_name(key.name))
            published = published_glue(_endpoints(existing)) if existing is not None and _ours(existing, key) else {}
            seen = {ns.name: self._seen(ns) for ns in domain.delegation.nameservers if ns.service is not None}
            plan = plan_delegation(zone, domain.delegation, seen, published)
            condition = plan.condition
            if plan.glue:
                conflict = self._write(domain, render_delegation_endpoints(domain, plan), {
                    parent_endpoint_name(key.name): existing})
                if conflict:
                    condition = not_delegated(DELEGATION_CONFLICT, conflict)
        self._report(key, domain, condition)

    # --- what each nameserver's Service says ---------------------------------------------------

    def _connecting(self, nameservers: Sequence[Nameserver]) -> bool:
        """A nameserver's member is still being connected since start-up (within its grace period): deciding now
        would report an address as lost that is only not read yet."""
        members = {m.name: m for m in self.inputs.members()}
        return any(ns.member in members and members[ns.member].view().reachability is Reachability.CONNECTING
                   for ns in nameservers)

    def _seen(self, nameserver: Nameserver) -> Seen:
        assert nameserver.service is not None
        ref = f"{nameserver.service.namespace}/{nameserver.service.name}"
        member = next((m for m in self.inputs.members() if m.name == nameserver.member), None)
        if member is None:
            return Seen(problem=f"MemberCluster {nameserver.member} does not exist")
        view = member.view()
        if not view.reachability.has_cache:
            detail = f" ({view.detail})" if view.detail else ""
            return Seen(problem=f"member {nameserver.member} is {view.reachability}{detail}")
        service: MemberService | None = member.get(SERVICE_KIND, nameserver.service.namespace, nameserver.service.name)
        if service is None:
            outside = (f"; the aggregator watches namespace {self.watched_namespace} only (--namespace)"
                       if self.watched_namespace and self.watched_namespace != nameserver.service.namespace else "")
            return Seen(problem=f"Service {ref} not found in member {nameserver.member}{outside}")
        ips = tuple(a.ip for a in service.addresses if a.ip)
        if ips:
            return Seen(ips)
        hostnames = [a.hostname for a in service.addresses if a.hostname]
        if hostnames:
            return Seen(problem=f"Service {ref} in member {nameserver.member} has only load-balancer hostnames "
                                f"({', '.join(hostnames)}); glue must be IP addresses")
        return Seen(problem=f"Service {ref} in member {nameserver.member} has no load-balancer address")

    # --- the DNSEndpoints ----------------------------------------------------------------------

    def _read(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.host.get_if_exists(DNS_ENDPOINTS.path(namespace, name))

    def _write(self, domain: Domain, bodies: list[dict[str, Any]], known: dict[str, dict[str, Any] | None]) -> str:
        """Create or update each DNSEndpoint that differs; the conflict message (nothing more written) when one of
        those names is held by an object that is not ours."""
        key = DomainKey(domain.namespace, domain.name)
        for body in bodies:
            name = body["metadata"]["name"]
            existing = known[name] if name in known else self._read(domain.namespace, name)
            if existing is None:
                try:
                    self.host.create(DNS_ENDPOINTS.path(domain.namespace), body)
                except KubeError as error:
                    if error.status != 409:
                        raise
                    existing = self._read(domain.namespace, name)  # there already, written meanwhile
                    if existing is None:
                        raise
                else:
                    self._count("create", key, body)
                    continue
            if not _ours(existing, key):
                return (f"{describe(parse_dns_endpoint(existing))} already exists and was not written for this Domain; "
                        "it is left untouched: delete or rename it to publish the delegation")
            meta = existing.get("metadata") or {}
            if _endpoints(existing) == body["spec"]["endpoints"] and (meta.get("labels") or {}) == \
                    body["metadata"]["labels"] and meta.get("ownerReferences") == body["metadata"]["ownerReferences"]:
                continue
            patch = {"metadata": {"labels": body["metadata"]["labels"],
                                  "ownerReferences": body["metadata"]["ownerReferences"],
                                  "resourceVersion": meta.get("resourceVersion")},
                     "spec": body["spec"]}
            self.host.merge_patch(DNS_ENDPOINTS.path(domain.namespace, name), patch)  # a 409 is retried by the queue
            self._count("update", key, body)
        return ""

    def _withdraw(self, key: DomainKey, domain: Domain | None) -> None:
        """The Domain is gone or no longer delegated: its delegation's DNSEndpoints go (garbage collection would,
        for a deleted Domain; a delegation removed from the spec is the user's word), and its condition."""
        for name in (parent_endpoint_name(key.name), zone_endpoint_name(key.name)):
            existing = self._read(key.namespace, name)
            if existing is None or not _ours(existing, key):
                continue
            meta = existing.get("metadata") or {}
            preconditions = {"resourceVersion": meta.get("resourceVersion"), "uid": meta.get("uid")}
            try:
                self.host.request("DELETE", DNS_ENDPOINTS.path(key.namespace, name), body={
                    "apiVersion": "v1", "kind": "DeleteOptions", "preconditions": preconditions})
            except KubeError as error:
                if error.status != 404:
                    raise
                continue
            self.metrics.dnsendpoint_writes.labels("delete").inc()
            logger.info("delegation DNSEndpoint deleted", extra={"domain": str(key), "dnsendpoint": name})
        old = self._conditions.pop(key, None)
        if domain is not None and any(c.type == DELEGATED for c in (old or domain.conditions)):
            kept = tuple(c for c in (old or domain.conditions) if c.type != DELEGATED)
            self._write_status(key, domain, kept)

    # --- status and events ---------------------------------------------------------------------

    def _report(self, key: DomainKey, domain: Domain, condition: Condition) -> None:
        old = self._conditions.get(key, domain.conditions)
        previous = next((c for c in old if c.type == DELEGATED), None)
        stamped = stamp(condition, domain.generation, old, now_rfc3339())
        new = (*(c for c in old if c.type != DELEGATED), stamped)
        if new == old:
            return
        self._write_status(key, domain, new)
        event = delegation_event(previous, stamped)
        if event is not None:
            self.events.record(InvolvedObject(DOMAINS.api_version, DOMAINS.kind, key.namespace, key.name, domain.uid),
                               event.type, event.reason, event.message)
            logger.info("delegation", extra={"domain": str(key), "reason": event.reason, "detail": event.message})

    def _write_status(self, key: DomainKey, domain: Domain, conditions: tuple[Condition, ...]) -> None:
        self._conditions[key] = conditions  # before the write: its watch event may arrive before we return
        try:
            self.host.merge_patch(DOMAINS.path(key.namespace, key.name, "status"), {"status": {
                "conditions": [c.to_json() for c in conditions], "observedGeneration": domain.generation}})
        except KubeError as error:
            self._conditions.pop(key, None)
            if error.status == 404:  # deleted meanwhile
                return
            raise
        self.metrics.status_writes.labels(key.kind).inc()

    def _count(self, operation: str, key: DomainKey, body: dict[str, Any]) -> None:
        self.metrics.dnsendpoint_writes.labels(operation).inc()
        logger.info("delegation DNSEndpoint written", extra={
            "domain": str(key), "dnsendpoint": body["metadata"]["name"], "operation": operation,
            "records": len(body["spec"]["endpoints"])})


def _endpoints(obj: dict[str, Any] | None) -> list[Any]:
    spec = (obj or {}).get("spec") or {}
    endpoints = spec.get("endpoints") if isinstance(spec, dict) else None
    return endpoints if isinstance(endpoints, list) else []


def _ours(obj: dict[str, Any], key: DomainKey) -> bool:
    parsed = parse_dns_endpoint(obj)
    return is_ours(parsed.labels, parsed.owners, key.name)
