"""One reconcile of one intent: evaluate every member through the intent's source, add the probers'
verdicts (aggregator/health/quorum.py), let the policy pick each name's answer (aggregator/policy/loadbalancing.py),
render the DNSEndpoint and the status, and write each only when it differs from what the API server holds;
and one reconcile of a MemberCluster's status (its reachability) and of a DNSView's (Accepted).

The reconciler reads through ``ReconcileInputs`` (the Engine's caches, or an in-memory stand-in in
tests) and writes through a KubeClient; it keeps its own record of what it wrote, which is fresher
than the caches until the write's watch event arrives. It changes only DNSEndpoints that are ours
(aggregator/registry/ownership.py), decides nothing from a cache that has not listed yet, and hands events to
an EventSink that posts them off the reconcile path (aggregator/controller/events.py).
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from aggregator.controller.events import EventRecorder, EventSink, InvolvedObject, now_rfc3339
from aggregator.health.quorum import Votes, judge
from aggregator.metrics import AggregatorMetrics
from aggregator.model import (
    Condition,
    DNSEndpointObject,
    DNSViewObject,
    Domain,
    IntentKey,
    IntentKind,
    IntentStatus,
    MemberCluster,
    MemberClusterStatus,
    MemberKey,
    ViewKey,
    parse_dns_endpoint,
)
from aggregator.policy.loadbalancing import Selector
from aggregator.policy.proximity import Locality, views_of
from aggregator.registry.guardrails import GuardRails
from aggregator.registry.ownership import Ownership, conflict_message, owner_references, ownership
from aggregator.render.records import render_dns_endpoint
from aggregator.render.status import (
    ANSWER_MOVED,
    DEGRADED,
    FAIL_OPEN,
    INVALID_SPEC,
    NAME_CONFLICT,
    READY,
    Outcome,
    answer_moved,
    build_status,
    cluster_changes,
    dns_view_conditions,
    fail_open_event,
    member_status,
    problem_event,
    refusal_events,
)
from aggregator.sources import SOURCES
from aggregator.sources.base import Desired, MemberObjects, Source, SourceRegistry
from aggregator.sources.intent import Intent, InvalidIntent
from fleetdns.apipaths import DNS_ENDPOINTS, DNS_VIEWS, MEMBER_CLUSTERS
from fleetdns.dnsview import Location, accept_views
from fleetdns.endpoint import Endpoint
from fleetdns.kubeapi import KubeClient, KubeError

logger = logging.getLogger("aggregator.reconciler")


class ReconcileInputs(Protocol):
    """What a reconcile reads; the Engine implements it over its informer caches."""

    def synced(self, kind: IntentKind) -> bool:
        """Whether every cache a reconcile of ``kind`` reads (its intents, Domains, DNSEndpoints) has listed:
        before that, a missing intent may just not be seen yet, and deleting for it would remove records."""
        ...

    def intent(self, key: IntentKey) -> Intent | InvalidIntent | None: ...

    def members(self) -> Sequence[MemberObjects]:
        """Every member cluster, in name order."""
        ...

    def member_cluster(self, name: str) -> MemberCluster | None:
        """The MemberCluster as the host's cache shows it (its status included)."""
        ...

    def domain(self, namespace: str, name: str) -> Domain | None: ...

    def dns_endpoint(self, namespace: str, name: str) -> DNSEndpointObject | None:
        """The DNSEndpoint as the cache last saw it (None: not there, or not seen yet); foreign ones too."""
        ...

    def votes(self, key: IntentKey) -> Votes:
        """The probers' voters and the intent's Down entries (read only for an intent with spec.healthCheck)."""
        ...

    def dns_views(self) -> Sequence[DNSViewObject]:
        """Every DNSView, readable or not (read only for location policies and DNSView status)."""
        ...

    def latency(self, region: str) -> Mapping[str, int]:
        """The region's RTT to each cluster address, in µs, while its prober votes ({} when it does not)."""
        ...


class Reconciler:
    def __init__(self, inputs: ReconcileInputs, host: KubeClient, metrics: AggregatorMetrics, identity: str,
                 domain_namespace: str, sources: SourceRegistry = SOURCES, events: EventSink | None = None,
                 guard: GuardRails | None = None) -> None:
        self.inputs = inputs
        self.host = host
        self.metrics = metrics
        self.identity = identity
        self.domain_namespace = domain_namespace
        self.sources = sources
        self.events: EventSink = events if events is not None else EventRecorder(host, metrics, identity).start()
        self.guard = guard  # the names each intent may publish (None: no guard rails, for tests of other stages)
        # SourcesAgree of a generated intent (None for the others); the engine sets the generator's
        self.agreement: Callable[[IntentKey], Condition | None] = lambda key: None
        self._conditions: dict[IntentKey, tuple[str, str]] = {}
        self._last_status: dict[IntentKey, IntentStatus] = {}  # what this leader last wrote as status
        self._desired: dict[IntentKey, tuple[dict[str, Any], ...]] = {}  # last rendered DNSEndpoint records
        self._written: dict[IntentKey, DNSEndpointObject] = {}  # last DNSEndpoint written, until the cache has it
        self._member_status: dict[str, MemberClusterStatus] = {}  # what this leader last wrote on MemberClusters
        self._view_status: dict[str, tuple[Condition, ...]] = {}  # what this leader last wrote on DNSViews

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
        self._member_status.clear()
        self._view_status.clear()
        if self.guard is not None:
            self.guard.reset()

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
        """Readiness per member (its source's rule), load-balancer hostnames resolved, the probers' verdicts
        (spec.healthCheck), then the policy's answer for each name. ``previous`` (the last published status)
        stands in for members not reached since start-up, and holds the last healthy set (fail open)."""
        source = self.sources.for_kind(intent.key.kind)
        last = {entry.cluster: entry for entry in previous.dns}
        members = self.inputs.members()
        entries = tuple(entry for member in members
                        if (entry := source.evaluate(intent, replace(member.view(), last_known=last.get(member.name)),
                                                     member)) is not None)
        entries = source.resolve_hostnames(intent, entries)
        if intent.health_check is not None:
            check_id = intent.health_check.resolved(source.check_host(intent, self)).check_id
            entries = judge(entries, check_id, self.inputs.votes(intent.key))
        fleet = {member.name: member.view().cluster.region for member in members}
        locality = self.locality(members) if intent.load_balancing.policy.per_view else None
        selector = Selector(intent.load_balancing, entries, fleet, previous.answer(), locality, previous.answers)
        desired = source.render(intent, entries, self, selector)
        return replace(desired, outcome=replace(desired.outcome, selection=selector.selection))

    def locality(self, members: Sequence[MemberObjects]) -> Locality:
        """The client views (accepted DNSViews, then one per region of the MemberClusters, at its clusters' mean
        location), the clusters' locations and the fresh RTTs from each view's region."""
        clusters = [member.view().cluster for member in members]
        regions: dict[str, list[Location]] = {}
        for cluster in clusters:
            regions.setdefault(cluster.region, []).extend([cluster.location] if cluster.location else [])
        accepted, _ = accept_views(obj.view for obj in self.inputs.dns_views() if obj.view is not None)
        views = views_of(accepted, regions)
        rtts = {region: self.inputs.latency(region) for region in {v.latency_from for v in views if v.latency_from}}
        return Locality(views, {c.name: c.location for c in clusters if c.location is not None}, rtts)

    # --- act: intents -------------------------------------------------------------------------

    def reconcile(self, key: IntentKey) -> bool:
        """One intent; False when deferred because a cache it reads has not listed yet (the engine queues
        every intent again once they have)."""
        if not self.inputs.synced(key.kind):
            return False
        source = self.sources.for_kind(key.kind)
        intent = self.inputs.intent(key)
        if intent is None:
            self._delete_dns_endpoint(key, source)
            if self.guard is not None:
                self.guard.release(key)  # after the delete: whoever waits for its names publishes them next
            self._desired.pop(key, None)
            self._written.pop(key, None)
            self._conditions.pop(key, None)
            self._last_status.pop(key, None)
            return True
        # What this leader last wrote is fresher than the cache until the write's watch event arrives;
        # comparing with the cache then would write twice and announce the same join twice.
        old = self._last_status.get(key) or intent.status
        if isinstance(intent, InvalidIntent):
            # Nothing can be decided; the records stay as last published (never deleted for a parse error).
            outcome = Outcome(old.domain, old.fqdn, old.dns, 0, INVALID_SPEC,
                              f"{intent.problem}; the records published before stay as they are until the spec "
                              "is fixed")
        else:
            desired = self.desired(intent, old)
            if self.guard is not None:
                desired = self.guard.apply(intent, source, desired, self)
            outcome = desired.outcome
            conflict = self._write_dns_endpoint(key, source, intent, desired.endpoints)
            if conflict:
                if self.guard is not None:
                    self.guard.release(key)  # it publishes nothing: its names must not keep others waiting
                outcome = replace(outcome, problem=NAME_CONFLICT, problem_message=conflict)
        status = build_status(outcome, intent.generation, old, now_rfc3339(), self.agreement(key))
        if old != status:
            self._last_status[key] = status  # before the write: its watch event may arrive before we return
            try:
                self._write_status(key, source, status)
            except KubeError:
                self._last_status.pop(key, None)
                raise
            self._emit_changes(key, source, intent.uid, old, status)
        self._last_status[key] = status
        self._conditions[key] = (_condition(status, READY), _condition(status, DEGRADED))
        return True

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

    def _read_dns_endpoint(self, path: str) -> DNSEndpointObject | None:
        """The object as the API server holds it now (the cache had not seen it, or it changed meanwhile)."""
        try:
            return parse_dns_endpoint(self.host.get(path))
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def _write_dns_endpoint(self, key: IntentKey, source: Source[Any], intent: Intent,
                            endpoints: list[Endpoint]) -> str:
        """Create or update the intent's DNSEndpoint; returns the NameConflict message (and writes nothing)
        when its name is held by an object that is not ours. Updates carry the resourceVersion the
        ownership was decided on, so an object replaced meanwhile is looked at again, never overwritten."""
        name = source.dns_endpoint_name(key.name)
        path = DNS_ENDPOINTS.path(key.namespace, name)
        body = render_dns_endpoint(key, name, source.intent_resource, intent.uid, endpoints)
        records = tuple(body["spec"]["endpoints"])
        existing = self._current_dns_endpoint(key, name)
        for attempt in range(2):
            if existing is None:
                try:
                    self._remember(key, self.host.create(DNS_ENDPOINTS.path(key.namespace), body))
                except KubeError as error:
                    if error.status != 409 or attempt:
                        raise
                    existing = self._read_dns_endpoint(path)  # there already, unseen by the cache
                    continue
                self._desired[key] = records
                self._count_write("create", key, len(endpoints))
                return ""
            owner = ownership(existing, key, source.intent_resource, intent.uid)
            if owner is Ownership.FOREIGN:
                self._desired.pop(key, None)
                return conflict_message(existing)
            self._desired[key] = records
            if owner is Ownership.OURS and existing.endpoints == records:  # ours: labels and owner already match
                return ""
            patch = {"metadata": {"labels": body["metadata"]["labels"],
                                  "ownerReferences": owner_references(existing, key, source.intent_resource,
                                                                      intent.uid),
                                  "resourceVersion": existing.resource_version},
                     "spec": body["spec"]}
            try:
                self._remember(key, self.host.merge_patch(path, patch))
            except KubeError as error:
                if error.status not in (404, 409) or attempt:
                    raise
                existing = self._read_dns_endpoint(path)  # changed or deleted since we looked: decide again
                continue
            if owner is Ownership.PREVIOUS:
                logger.info("adopted the DNSEndpoint of an earlier object of this intent",
                            extra={"intent": str(key), "dnsendpoint": f"{key.namespace}/{name}"})
            self._count_write("update", key, len(endpoints))
            return ""
        raise KubeError(409, "Conflict", f"DNSEndpoint {key.namespace}/{name} changed while being written")

    def _remember(self, key: IntentKey, written: dict[str, Any]) -> None:
        """Keep what we wrote, so a reconcile before its watch event compares with it, not the older cache."""
        self._written[key] = parse_dns_endpoint(written)

    def _count_write(self, operation: str, key: IntentKey, records: int) -> None:
        self.metrics.dnsendpoint_writes.labels(operation).inc()
        logger.info("DNSEndpoint written", extra={"intent": str(key), "operation": operation, "records": records})

    def _delete_dns_endpoint(self, key: IntentKey, source: Source[Any]) -> None:
        """The intent is gone (from a cache that has listed): its DNSEndpoint goes too, if it is ours. The
        delete is conditional on the UID and resourceVersion ownership was decided on."""
        name = source.dns_endpoint_name(key.name)
        path = DNS_ENDPOINTS.path(key.namespace, name)
        existing = self._current_dns_endpoint(key, name)
        for attempt in range(2):
            if existing is None or ownership(existing, key, source.intent_resource, None) is not Ownership.OURS:
                return
            preconditions = {"resourceVersion": existing.resource_version} | ({"uid": existing.uid}
                                                                               if existing.uid else {})
            try:
                self.host.request("DELETE", path, body={"apiVersion": "v1", "kind": "DeleteOptions",
                                                        "preconditions": preconditions})
            except KubeError as error:
                if error.status == 404:
                    return
                if error.status != 409 or attempt:
                    raise
                existing = self._read_dns_endpoint(path)
                continue
            self._count_write("delete", key, 0)
            return

    def _write_status(self, key: IntentKey, source: Source[Any], status: IntentStatus) -> None:
        try:
            self.host.merge_patch(source.intent_resource.path(key.namespace, key.name, "status"),
                                  {"status": status.to_json()})
        except KubeError as error:
            if error.status == 404:  # deleted meanwhile; its delete event brings the clean-up
                return
            raise
        self.metrics.status_writes.labels(str(key.kind)).inc()

    def _emit_changes(self, key: IntentKey, source: Source[Any], uid: str, old: IntentStatus,
                      new: IntentStatus) -> None:
        involved = InvolvedObject(source.intent_resource.api_version, str(key.kind), key.namespace, key.name, uid)
        joined, left = cluster_changes(old, new)
        if joined:
            self._event(key, involved, "Normal", "ClusterJoined",
                        "joined the answer: " + "; ".join(f"{c.cluster} ({c.reason})" for c in joined))
        if left:
            self._event(key, involved, "Warning", "ClusterLeft",
                        "left the answer: " + "; ".join(f"{c.cluster} ({c.reason})" for c in left))
        if (problem := problem_event(old, new)) is not None:
            self._event(key, involved, "Warning", problem.reason, problem.message)
        for refusal in refusal_events(old, new):
            self._event(key, involved, "Warning", refusal.reason, refusal.message)
        if (fail_open := fail_open_event(old, new)) is not None:
            self._event(key, involved, "Warning", FAIL_OPEN, fail_open.message)
        if (moved := answer_moved(old, new)) is not None:
            self._event(key, involved, moved[0], ANSWER_MOVED, moved[1])

    def _event(self, key: IntentKey, involved: InvolvedObject, kind: str, reason: str, message: str) -> None:
        """Hand the event to the recorder (it posts it in the background; a repeat bumps its count)."""
        self.events.record(involved, kind, reason, message)
        logger.info("intent event", extra={"intent": str(key), "reason": reason, "detail": message})

    # --- act: MemberClusters ------------------------------------------------------------------

    def reconcile_member(self, key: MemberKey) -> None:
        """The MemberCluster's status: its reachability, written only when it changes (one write per
        member for a control-plane blip, instead of one per intent)."""
        member = next((m for m in self.inputs.members() if m.name == key.name), None)
        cluster = self.inputs.member_cluster(key.name)
        if member is None or cluster is None:
            self._member_status.pop(key.name, None)
            return
        problems = tuple(p for kind in self.sources.member_kinds() if (p := member.kind_problem(kind)) is not None)
        old = self._member_status.get(key.name) or cluster.status
        optional = tuple(kind.name for kind in self.sources.member_kinds() if not kind.required)
        new = member_status(member.view(), problems, cluster.generation, old, now_rfc3339(), optional)
        if new == old:
            return
        self._member_status[key.name] = new
        try:
            self.host.merge_patch(MEMBER_CLUSTERS.path(name=key.name, subresource="status"), {"status": new.to_json()})
        except KubeError as error:
            self._member_status.pop(key.name, None)
            if error.status == 404:  # deleted meanwhile
                return
            raise
        self.metrics.status_writes.labels(key.kind).inc()
        logger.info("member cluster status written", extra={"cluster": key.name, "state": new.state})


    # --- act: DNSViews -------------------------------------------------------------------------

    def reconcile_view(self, key: ViewKey) -> None:
        """A DNSView's status: Accepted, or why it is not served (overlapping CIDRs name the other view); written
        only when it changes."""
        views = self.inputs.dns_views()
        obj = next((v for v in views if v.name == key.name), None)
        if obj is None:
            self._view_status.pop(key.name, None)
            return
        _, refused = accept_views(v.view for v in views if v.view is not None)
        regions = [member.view().cluster.region for member in self.inputs.members()]
        old = self._view_status.get(key.name, obj.conditions)
        new = dns_view_conditions(obj, refused, regions, old, now_rfc3339())
        if new == old:
            return
        self._view_status[key.name] = new
        try:
            self.host.merge_patch(DNS_VIEWS.path(name=key.name, subresource="status"), {"status": {
                "conditions": [c.to_json() for c in new], "observedGeneration": obj.generation}})
        except KubeError as error:
            self._view_status.pop(key.name, None)
            if error.status == 404:  # deleted meanwhile
                return
            raise
        self.metrics.status_writes.labels(key.kind).inc()
        logger.info("DNSView status written", extra={"view": key.name, "accepted": new[0].status,
                                                     "reason": new[0].reason})


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
