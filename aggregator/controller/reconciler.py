"""One reconcile of one intent, as a pipeline: read the caches once (``observe``), decide (aggregator/plan.py:
evaluate, health, policy, render), the guard rails (aggregator/registry/guardrails.py), write the DNSEndpoint
(dnsendpoints.py), build the status and write it when it changed, then hand the events of that change
(aggregator/render/events.py) to the recorder. And one reconcile of a MemberCluster's status (its reachability)
and of a DNSView's (Accepted).

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

from aggregator.controller.dnsendpoints import DNSEndpoints
from aggregator.controller.events import EventRecorder
from aggregator.controller.statuses import ImmediateStatuses, StatusSink
from aggregator.health.quorum import Votes
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
)
from aggregator.plan import Member, Observed, plan, unreadable
from aggregator.policy.proximity import Locality, client_views
from aggregator.registry.domains import DomainLookup
from aggregator.registry.guardrails import GuardRails
from aggregator.render.events import Event, EventSink, InvolvedObject, status_events
from aggregator.render.status import (
    NAME_CONFLICT,
    Outcome,
    build_status,
    condition_of,
    dns_view_conditions,
    member_status,
    now_rfc3339,
)
from aggregator.sources import SOURCES
from aggregator.sources.base import Desired, MemberObjects, Source, SourceRegistry
from aggregator.sources.intent import Intent, InvalidIntent
from fleetdns.apipaths import DNS_VIEWS, MEMBER_CLUSTERS
from fleetdns.conditions import DEGRADED, FAIL_OPEN, READY
from fleetdns.dnsview import accept_views
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
        self.dns_endpoints = DNSEndpoints(inputs, host, metrics)
        # SourcesAgree of a generated intent (None for the others); the engine sets the generator's
        self.agreement: Callable[[IntentKey], Condition | None] = lambda key: None
        self._conditions: dict[IntentKey, tuple[str, str, str]] = {}  # Ready, Degraded, FailOpen
        self._last_status: dict[IntentKey, IntentStatus] = {}  # what this leader last wrote as status
        self._member_status: dict[str, MemberClusterStatus] = {}  # what this leader last wrote on MemberClusters
        self._view_status: dict[str, tuple[Condition, ...]] = {}  # what this leader last wrote on DNSViews
        # Where decided statuses go: written at once here; the engine defers them behind the answers (statuses.py)
        self.statuses: StatusSink = ImmediateStatuses(self.write_status)

    # --- what the engine asks -----------------------------------------------------------------

    def status_written(self, key: IntentKey) -> IntentStatus | None:
        """The status this leader last wrote (its watch event coming back is not a change)."""
        return self._last_status.get(key)

    def desired_endpoints(self, key: IntentKey) -> tuple[dict[str, Any], ...] | None:
        """The records last rendered for the intent; None when it was never reconciled (or is gone)."""
        return self.dns_endpoints.desired(key)

    def dns_endpoint_observed(self, key: IntentKey, seen: DNSEndpointObject | None) -> None:
        """The cache saw the intent's DNSEndpoint change (see DNSEndpoints.observed)."""
        self.dns_endpoints.observed(key, seen)

    def forget_writes(self) -> None:
        """Leadership gained: another replica may have written since, so the caches are the truth again."""
        self._last_status.clear()
        self.statuses.clear()
        self.dns_endpoints.forget_writes()
        self._member_status.clear()
        self._view_status.clear()
        if self.guard is not None:
            self.guard.reset()

    def condition_counts(self) -> Tally[tuple[str, str, str]]:
        tally: Tally[tuple[str, str, str]] = Tally()
        for key, (ready, degraded, fail_open) in list(self._conditions.items()):
            tally[(str(key.kind), READY, ready)] += 1
            tally[(str(key.kind), DEGRADED, degraded)] += 1
            tally[(str(key.kind), FAIL_OPEN, fail_open)] += 1
        return tally

    # --- intents: read, plan (aggregator/plan.py), guard, write, status, events --------------------

    def reconcile(self, key: IntentKey) -> bool:
        """One intent; False when deferred because a cache it reads has not listed yet (the engine queues
        every intent again once they have)."""
        if not self.inputs.synced(key.kind):
            return False
        source = self.sources.for_kind(key.kind)
        intent = self.inputs.intent(key)
        if intent is None:
            self._withdraw(key, source)
            return True
        # What this leader last wrote is fresher than the cache until the write's watch event arrives;
        # comparing with the cache then would write twice and announce the same join twice.
        old = self._last_status.get(key) or intent.status
        if isinstance(intent, InvalidIntent):
            outcome = unreadable(intent, old)
        else:
            observed = self.observe(source, intent)
            desired = plan(source, intent, old, observed)
            if self.guard is not None:
                desired = self.guard.apply(intent, source, desired, observed.domains)
            outcome = self._publish(source, intent, desired)
        status = build_status(outcome, intent.generation, old, now_rfc3339(), self.agreement(key))
        if old != status:
            self._report(key, source, intent.uid, status, status_events(old, status))
        self._last_status[key] = status
        fail_open = "True" if _condition(status, FAIL_OPEN) == "True" else "False"  # absent: not failing open
        self._conditions[key] = (_condition(status, READY), _condition(status, DEGRADED), fail_open)
        return True

    def observe(self, source: Source[Any], intent: Intent) -> Observed:
        """What ``plan`` decides from, read from the caches once: each member's view, the intent's Domain, the
        probers' votes (spec.healthCheck only) and the client views with their RTTs (location policies only)."""
        members = tuple(Member(member.view(), member) for member in self.inputs.members())
        domains = DomainLookup.read(self.inputs.domain, self.domain_namespace, intent.namespace,
                                    source.domain_ref(intent))
        votes = self.inputs.votes(intent.key) if intent.health_check is not None else Votes()
        locality = None
        if intent.load_balancing.policy.per_view:
            clusters = [member.view.cluster for member in members]
            views = client_views(clusters, (obj.view for obj in self.inputs.dns_views() if obj.view is not None))
            rtts = {region: self.inputs.latency(region) for region in {v.latency_from for v in views if v.latency_from}}
            locality = Locality.of(views, clusters, rtts)
        return Observed(members, domains, votes, locality)

    def _publish(self, source: Source[Any], intent: Intent, desired: Desired) -> Outcome:
        """Write the DNSEndpoint; the outcome, or NameConflict when its name is held by an object not ours."""
        conflict = self.dns_endpoints.write(source, intent, desired.endpoints)
        if not conflict:
            return desired.outcome
        if self.guard is not None:
            self.guard.release(intent.key)  # it publishes nothing: its names must not keep others waiting
        return replace(desired.outcome, problem=NAME_CONFLICT, problem_message=conflict)

    def _withdraw(self, key: IntentKey, source: Source[Any]) -> None:
        """The intent is gone: its DNSEndpoint too (if ours), then its names and what we kept of it."""
        self.dns_endpoints.delete(key, source)
        if self.guard is not None:
            self.guard.release(key)  # after the delete: whoever waits for its names publishes them next
        self.dns_endpoints.forget(key)
        self.statuses.forget(key)
        self._conditions.pop(key, None)
        self._last_status.pop(key, None)

    def _report(self, key: IntentKey, source: Source[Any], uid: str, status: IntentStatus,
                events: list[Event]) -> None:
        """Hand the status to be written (``statuses``), then the events of its change to the recorder (it posts them
        in the background; a repeat bumps its count)."""
        self._last_status[key] = status  # before the write: its watch event may arrive before we return
        try:
            self.statuses.submit(key, source, status)
        except KubeError:
            self._last_status.pop(key, None)
            raise
        involved = InvolvedObject(source.intent_resource.api_version, str(key.kind), key.namespace, key.name, uid)
        for event in events:
            self.events.record(involved, event.type, event.reason, event.message)
            logger.info("intent event", extra={"intent": str(key), "reason": event.reason, "detail": event.message})

    def write_status(self, key: IntentKey, source: Source[Any], status: IntentStatus) -> None:
        """The status subresource's write (a 404: the intent went meanwhile, its delete event cleans up)."""
        try:
            self.host.merge_patch(source.intent_resource.path(key.namespace, key.name, "status"),
                                  {"status": status.to_json()})
        except KubeError as error:
            if error.status == 404:  # deleted meanwhile; its delete event brings the clean-up
                return
            raise
        self.metrics.status_writes.labels(str(key.kind)).inc()

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
    condition = condition_of(status, kind)
    return condition.status if condition is not None else "Unknown"

