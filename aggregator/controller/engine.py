"""The watch engine: host informers (intents of every source, Domains, MemberClusters, our DNSEndpoints,
the probers' HealthReports and Leases, DNSViews), what their changes queue, the work queue and its workers.
Writes happen only while this replica leads.

The engine is what the reconciler reads (``ReconcileInputs``) and the guard rails read (``GuardInputs``); the
member connections are connections.py's."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aggregator.controller.connections import MemberConnections
from aggregator.controller.delegations import Delegations
from aggregator.controller.events import FLUSH_SECONDS, EventRecorder
from aggregator.controller.members import MemberConnection
from aggregator.controller.reconciler import Reconciler
from aggregator.controller.statuses import DeferredStatuses
from aggregator.health.latency import LatencyIndex
from aggregator.health.quorum import Freshness, ReportIndex, Votes
from aggregator.metrics import AggregatorMetrics
from aggregator.model import (
    DNSEndpointObject,
    DNSViewObject,
    Domain,
    DomainKey,
    HostNamespace,
    IntentKey,
    IntentKind,
    MemberCluster,
    MemberKey,
    Policy,
    ViewKey,
    parse_dns_endpoint,
    parse_dns_view_object,
    parse_domain,
    parse_host_namespace,
    parse_member_cluster,
)
from aggregator.registry.claims import Claimant, Seed
from aggregator.registry.domains import NamespaceLabels
from aggregator.registry.guardrails import GuardRails
from aggregator.selfservice.discovery import Discovery
from aggregator.selfservice.generator import Generator
from aggregator.settings import Settings
from aggregator.sources import SOURCES
from aggregator.sources.base import MemberKind, SourceRegistry
from aggregator.sources.intent import Intent, InvalidIntent
from aggregator.sources.lb_hostnames import HostnameResolver
from aggregator.sources.service import SERVICE_KIND, MemberService
from fleetdns.apipaths import (
    DNS_ENDPOINTS,
    DNS_VIEWS,
    DOMAINS,
    HEALTH_REPORTS,
    LEASES,
    MEMBER_CLUSTERS,
    NAMESPACES,
    Resource,
    host_cannot_read,
)
from fleetdns.dnsname import InvalidDNSNameError, normalize_name
from fleetdns.gcpauses import freeze_at
from fleetdns.healthreport import (
    REGION_LABEL,
    HealthReport,
    ProberLease,
    intent_ref,
    parse_health_report,
    parse_prober_lease,
)
from fleetdns.informer import Informer
from fleetdns.kubeapi import KubeClient, NotLeaderError
from fleetdns.workqueue import WorkQueue

logger = logging.getLogger("aggregator.engine")
DRAIN_SECONDS = 10.0  # SIGTERM: how long in-flight reconciles may finish (well inside a pod's 30 s)
STATUS_FLUSH_SECONDS = 3.0  # SIGTERM: at least this long for the statuses still waiting, while leading
MEMBER_SYNC_TIMEOUT = 60.0  # a member still busy after this long no longer holds up start-up
# What an optional host kind that cannot be listed (403, 404) means; an intent kind's refusal names its CRD instead
_REFUSED = {
    "host/dnsviews": "cannot read DNSViews; only the regions' own views are served",
    "host/namespaces": "cannot list host namespaces; names under a Domain with a namespaceSelector are refused",
    "host/healthreports": "cannot read the probers' reports or Leases; health checks have no say",
    "host/prober-leases": "cannot read the probers' reports or Leases; health checks have no say",
}


class Engine:
    def __init__(self, settings: Settings, host: KubeClient, metrics: AggregatorMetrics, identity: str,
                 sources: SourceRegistry = SOURCES, hostnames: HostnameResolver | None = None) -> None:
        self.settings = settings
        self.hostnames = hostnames  # the resolver the sources were built with (started and stopped here)
        self.host = host
        self.metrics = metrics
        self.identity = identity
        self.sources = sources
        self.queue: WorkQueue[IntentKey | MemberKey | ViewKey | DomainKey] = WorkQueue()
        self.leading = threading.Event()
        self._stopping = threading.Event()
        self.connections = MemberConnections(settings, host, metrics, sources, self._stopping,
                                             self._member_objects_changed, self.enqueue_all,
                                             self._schedule_grace_expiry, self._member_object_changed)
        self._workers: list[threading.Thread] = []
        self.started_at = time.monotonic()
        ns = settings.namespace
        # An intent kind the host does not serve (its CRD not installed: 404) or lets us list (403) holds up
        # no other kind's reconciles (the claims of names wait for every kind's intents, see synced()).
        self.intent_informers: dict[IntentKind, Informer[Any]] = {
            source.kind: Informer(f"host/{source.intent_resource.plural}", host, source.intent_resource.path(ns),
                                  source.read_intent, self._intent_changed,
                                  on_state=self._health_state(f"host/{source.intent_resource.plural}",
                                                              source.intent_resource))
            for source in sources}
        self.domains: Informer[Domain] = Informer(
            "host/domains", host, DOMAINS.path(), parse_domain, self._domain_changed)
        self.member_clusters: Informer[MemberCluster] = Informer(
            "host/memberclusters", host, MEMBER_CLUSTERS.path(), parse_member_cluster, self._member_cluster_changed)
        # Every DNSEndpoint, not only those labelled ours: a foreign one may hold an intent's name, and
        # its deletion must publish the intent at once (the records of foreign ones are not kept).
        self.dns_endpoints: Informer[DNSEndpointObject] = Informer(
            "host/dnsendpoints", host, DNS_ENDPOINTS.path(ns), parse_dns_endpoint, self._dns_endpoint_changed)
        # The probers' reports (every watched namespace) and their Leases (who votes): aggregator/health/quorum.py.
        self.freshness = Freshness(settings.prober_grace_period)
        self.reports = ReportIndex()
        self.latencies = LatencyIndex()  # the reports' RTTs (LowestLatency)
        self._refused: dict[str, str] = {}  # health informers whose resource is forbidden or not served
        self._voters: tuple[frozenset[str], tuple[str, ...]] = (frozenset(), ())
        self._freshness_lock = threading.Lock()
        self._freshness_wake = threading.Event()
        self.health_reports: Informer[HealthReport] = Informer(
            "host/healthreports", host, HEALTH_REPORTS.path(ns), parse_health_report, self._health_report_changed,
            on_state=self._health_state("host/healthreports"))
        self.prober_leases: Informer[ProberLease] = Informer(
            "host/prober-leases", host, LEASES.path(settings.prober_lease_namespace), parse_prober_lease,
            self._prober_lease_changed, on_state=self._health_state("host/prober-leases"), label_selector=REGION_LABEL)
        # Client views (location policies); a host without the CRD or the RBAC has the regions' views only.
        self.dns_views_informer: Informer[DNSViewObject] = Informer(
            "host/dnsviews", host, DNS_VIEWS.path(), parse_dns_view_object, self._dns_view_changed,
            on_state=self._health_state("host/dnsviews"))
        # Host namespaces' labels, for the Domains' namespaceSelectors (aggregator/registry/domains.py); a host
        # that does not let us list them admits names under a Domain with a selector to no namespace (logged once).
        self.namespaces: Informer[HostNamespace] = Informer(
            "host/namespaces", host, NAMESPACES.path(), parse_host_namespace, self._namespace_changed,
            on_state=self._health_state("host/namespaces"))
        self.host_informers: list[Informer[Any]] = [*self.intent_informers.values(), self.domains,
                                                    self.member_clusters, self.dns_endpoints, self.health_reports,
                                                    self.prober_leases, self.dns_views_informer, self.namespaces]
        # Set to the elector's freshness check when leader election is on (see LeaseElector.holds_fresh_lease).
        self.lease_fresh: Callable[[], bool] = lambda: True
        # Events go through the unfenced client: they report what this replica did while it led, and the
        # recorder flushes them at shutdown, after the lease is released.
        self.events = EventRecorder(host, metrics, identity)
        self.guard = GuardRails(self, settings.domain_namespace)
        self.reconciler = Reconciler(self, host.fenced(self.may_write), metrics, identity,
                                     settings.domain_namespace, sources, self.events, guard=self.guard)
        metrics.watch_intent_conditions(self.reconciler.condition_counts)
        metrics.watch_member_retry_intervals(
            lambda: {m.name: m.retry_interval for m in self.members() if m.client is not None})
        # Self-service: host intents generated from member objects (aggregator/selfservice/generator.py)
        self.generator = Generator(self, host.fenced(self.may_write), sources, metrics, self.events,
                                   settings.namespace, settings.self_service_domain, settings.workers)
        self.reconciler.agreement = self.generator.agreement
        # Statuses wait behind the answers while the work queue is busy (aggregator/controller/statuses.py)
        self.statuses = DeferredStatuses(self.reconciler.write_status, lambda: len(self.queue) > 0, metrics)
        self.reconciler.statuses = self.statuses
        # Delegated Domains: NS and glue for the parent zone (aggregator/controller/delegations.py)
        self.delegations = Delegations(self, host.fenced(self.may_write), metrics, self.events, settings.namespace)
        # Auto-discovery: the DiscoveryRules' claims on generated intents (aggregator/selfservice/discovery.py)
        self.discovery = Discovery(host, host.fenced(self.may_write), sources, self, settings.self_service_domain,
                                   lambda: metrics.status_writes.labels("DiscoveryRule").inc())
        self.generator.add_claim_source(self.discovery)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Engine:
        if self.hostnames is not None:
            self.hostnames.start(self._enqueue_known, lambda key: self.intent(key) is not None)
        self.events.start()
        self.statuses.start()
        for informer in self.host_informers:
            informer.start()
        self.generator.start()
        self.discovery.start(self.generator)
        threading.Thread(target=self._enqueue_when_synced, name="host-sync", daemon=True).start()
        self.connections.start()
        threading.Thread(target=self._watch_freshness, name="prober-freshness", daemon=True).start()
        stages = [("caches listed", self._caches_listed), ("settled", self._settled)]
        threading.Thread(target=freeze_at, args=(stages, self._stopping), kwargs={"pause_until_first": True},
                         name="heap-freeze", daemon=True).start()
        for index in range(self.settings.workers):
            worker = threading.Thread(target=self._work, name=f"worker-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> None:
        """Take no new work, let in-flight reconciles finish while still leading (a reconcile writes the
        DNSEndpoint, then the status a restarted aggregator trusts for members it cannot reach yet: cutting
        between the two would leave them disagreeing), then stop writing and watching."""
        self._stopping.set()
        self._freshness_wake.set()
        self.queue.shutdown()
        deadline = time.monotonic() + DRAIN_SECONDS
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        busy = sum(worker.is_alive() for worker in self._workers)
        if busy:
            logger.warning("reconciles still running at shutdown; abandoned", extra={"workers": busy})
        self.statuses.flush(max(STATUS_FLUSH_SECONDS, deadline - time.monotonic()))  # still leading
        self.statuses.stop()
        self.generator.stop()
        self.discovery.stop()
        self.set_leading(False)
        for informer in self.host_informers:
            informer.stop()
        self.connections.stop()
        self.events.stop(FLUSH_SECONDS)
        if self.hostnames is not None:
            self.hostnames.stop()

    def ready(self) -> tuple[bool, str]:
        """Ready once the host caches are filled and every member is synced or known down."""
        if not all(self._listed(i) for i in self.host_informers):
            return False, "host caches syncing"
        if not self.discovery.listed:  # or the generator would hold back every claim until the rules list
            return False, "DiscoveryRules syncing"
        pending = [m.name for m in self.members() if not m.synced_or_failed]
        if pending and time.monotonic() - self.started_at < MEMBER_SYNC_TIMEOUT:
            return False, "member caches syncing: " + ", ".join(pending)
        return True, "leader" if self.leading.is_set() else "standby"

    def _caches_listed(self) -> bool:
        """Every cache listed (or its member given up on for now)."""
        return (all(informer.synced.is_set() for informer in self.host_informers)
                and all(member.synced_or_failed for member in self.members()))

    def _settled(self) -> bool:
        """Every cache listed and nothing queued: the start-up is over."""
        return self._caches_listed() and len(self.queue) == 0

    def may_write(self) -> bool:
        """Checked by every write the reconciler sends: leading, with a lease renewed in time."""
        return self.leading.is_set() and self.lease_fresh()

    def set_leading(self, leading: bool) -> None:
        """Leadership gained: reconcile everything (also sweeps orphans); lost: stop writing at once."""
        if leading == self.leading.is_set():
            return
        if leading:
            self.reconciler.forget_writes()  # another replica may have written since we last led
            self.delegations.forget_writes()
            self.leading.set()
            self.metrics.leader.set(1)
            self.enqueue_all()
            for member in self.members():
                self._schedule_grace_expiry(member)
        else:
            self.leading.clear()
            self.statuses.clear()  # whoever leads next decides and writes every status again
            self.metrics.leader.set(0)

    # --- what the reconciler reads (ReconcileInputs) ------------------------------------------

    def synced(self, kind: IntentKind) -> bool:
        """The kind's own intents listed (never only refused: a missing intent would delete its records), and
        every other cache a reconcile reads, the other kinds' intents included: a name's owner is decided over
        every intent that wants it (aggregator/registry/claims.py)."""
        informer = self.intent_informers.get(kind)
        return informer is not None and informer.synced.is_set() and all(
            self._listed(i) for i in (*self.intent_informers.values(), self.domains, self.dns_endpoints,
                                      self.health_reports, self.prober_leases, self.dns_views_informer,
                                      self.namespaces))

    def _listed(self, informer: Informer[Any]) -> bool:
        """Listed once, or (health reports, prober Leases and DNSViews only) refused by the API server: a cluster
        without the HealthReport CRD or the RBAC to read it still publishes, with readiness alone deciding; one
        without DNSViews has the regions' views only."""
        return informer.synced.is_set() or informer.name in self._refused

    def intent(self, key: IntentKey) -> Intent | InvalidIntent | None:
        informer = self.intent_informers.get(key.kind)
        return None if informer is None else informer.store.get(f"{key.namespace}/{key.name}")

    def member_cluster(self, name: str) -> MemberCluster | None:
        return self.member_clusters.store.get(name)

    def members(self) -> list[MemberConnection]:
        return self.connections.members()

    def domain(self, namespace: str, name: str) -> Domain | None:
        return self.domains.store.get(f"{namespace}/{name}")

    def dns_endpoint(self, namespace: str, name: str) -> DNSEndpointObject | None:
        return self.dns_endpoints.store.get(f"{namespace}/{name}")

    def votes(self, key: IntentKey) -> Votes:
        if "host/healthreports" in self._refused:
            return Votes()  # reports cannot be read: no voter, readiness alone decides
        return Votes(self.freshness.fresh(), self.freshness.regions(),
                     self.reports.down((key.namespace, intent_ref(str(key.kind), key.name))))

    def dns_views(self) -> list[DNSViewObject]:
        if "host/dnsviews" in self._refused:
            return []
        return sorted(self.dns_views_informer.store.values(), key=lambda v: v.name)

    # --- what the guard rails read (GuardInputs, aggregator/registry/guardrails.py) ---------------------------

    def namespace_labels(self, namespace: str) -> NamespaceLabels:
        refused = self._refused.get("host/namespaces")
        if refused is not None:
            return NamespaceLabels(namespace, None, f"host namespaces cannot be listed: {refused}")
        found = self.namespaces.store.get(namespace)
        return NamespaceLabels(namespace, found.labels if found is not None else None,
                               "" if found is not None else "no such namespace on the host")

    def domains_in(self, namespace: str) -> list[Domain]:
        return [d for d in list(self.domains.store.values()) if d.namespace == namespace]

    def published_names(self) -> Seed:
        """Every intent and the names its own DNSEndpoint (ours, owned by it) publishes now."""
        for source in self.sources:
            for intent in list(self.intent_informers[source.kind].store.values()):
                obj = self.dns_endpoint(intent.namespace, source.dns_endpoint_name(intent.name))
                if obj is None or obj.intent_key != intent.key or intent.uid not in obj.owner_uids:
                    continue
                names = {name for e in obj.endpoints if (name := _published_name(e)) is not None}
                if names:
                    yield Claimant.of(intent.key, intent.created), names

    def requeue(self, keys: Iterable[IntentKey]) -> None:
        for key in keys:
            self.queue.add(key)

    def latency(self, region: str) -> Mapping[str, int]:
        if "host/healthreports" in self._refused or region not in self.freshness.fresh():
            return {}  # only a voting region's measurements count, as for its Down reports
        return self.latencies.region(region)

    # --- queueing -----------------------------------------------------------------------------

    def all_intent_keys(self) -> list[IntentKey]:
        keys = [i.key for informer in self.intent_informers.values() for i in list(informer.store.values())]
        keys += [k for d in list(self.dns_endpoints.store.values()) if (k := d.intent_key) is not None]
        return keys

    def enqueue_all(self) -> None:
        for key in self.all_intent_keys():
            self.queue.add(key)
        for member in self.members():
            self.queue.add(MemberKey(member.name))
        for view in list(self.dns_views_informer.store.values()):
            self.queue.add(ViewKey(view.name))
        for domain in list(self.domains.store.values()):
            if domain.delegated:
                self.queue.add(DomainKey(domain.namespace, domain.name))
        self.generator.touch_all()

    def _enqueue_per_view(self, policies: tuple[Policy, ...], addresses: set[str] | None = None) -> None:
        """Intents of these policies; with ``addresses``, only those whose status lists one of them (or lists
        nothing yet)."""
        for informer in self.intent_informers.values():
            for intent in list(informer.store.values()):
                if isinstance(intent, InvalidIntent) or intent.load_balancing.policy not in policies:
                    continue
                listed = {ip for entry in intent.status.dns
                          for ip in (*(a.ip for a in entry.addresses if a.ip), *entry.resolved)}
                if addresses is None or not listed or listed & addresses:
                    self.queue.add(intent.key)

    def _enqueue_when_synced(self) -> None:
        """Reconciles of a kind whose caches have not listed are deferred (deciding from a cold cache would
        delete records); each time another host cache has listed, everything is queued again."""
        pending = list(self.host_informers)
        while pending and not self._stopping.wait(0.1):
            listed = [informer for informer in pending if informer.synced.is_set()]
            if listed:
                pending = [informer for informer in pending if informer not in listed]
                self.enqueue_all()

    # --- change handlers (informer threads) ---------------------------------------------------

    def _enqueue_known(self, keys: Iterable[IntentKey]) -> None:
        """Member changes name intents that may not exist; only real ones (or leftovers) are queued."""
        for key in keys:
            if self.intent(key) is not None or self.reconciler.desired_endpoints(key) is not None:
                self.queue.add(key)

    def _intent_changed(self, old: Intent | None, new: Intent | None) -> None:
        current = new or old
        assert current is not None
        if old is not None and new is not None and old.generation == new.generation \
                and new.status == self.reconciler.status_written(new.key):
            return  # our own status write coming back
        self.queue.add(current.key)
        self.generator.touch([current.key])  # a hand-written intent of that name came or went

    def _member_objects_changed(self, keys: Iterable[IntentKey]) -> None:
        """A member object changed (a member's watch thread): its intents, and the intent it may generate."""
        keys = list(keys)
        self._enqueue_known(keys)
        self.generator.touch(keys)

    def _domain_changed(self, old: Domain | None, new: Domain | None) -> None:
        """The intents referring to it, and those it may cover: a Domain in the domain namespace covers every
        namespace's intents, one elsewhere its own namespace's (aggregator/registry/domains.py); and its delegation.
        Our own status write coming back changes nothing."""
        if old is not None and new is not None and old == new:
            return
        current = new or old
        assert current is not None
        if any(d is not None and d.delegated for d in (old, new)):
            self.queue.add(DomainKey(current.namespace, current.name))
        names = {d.name for d in (old, new) if d is not None}
        scopes = {d.namespace for d in (old, new) if d is not None}
        every = self.settings.domain_namespace in scopes
        for source in self.sources:
            for intent in list(self.intent_informers[source.kind].store.values()):
                if every or intent.namespace in scopes or (
                        not isinstance(intent, InvalidIntent) and source.domain_ref(intent) in names):
                    self.queue.add(intent.key)

    def _member_object_changed(self, member: str, kind: MemberKind, old: Any, new: Any) -> None:
        """A member's Service changed (a member's watch thread): the delegated Domains whose nameserver it is."""
        if kind.resource != SERVICE_KIND.resource:  # the sources' merged kind, not SERVICE_KIND itself
            return
        refs = {(s.namespace, s.name) for s in (old, new) if isinstance(s, MemberService)}
        if old is not None and new is not None and old.addresses == new.addresses:
            return
        for domain in list(self.domains.store.values()):
            if domain.delegation is not None and any(
                    ns.member == member and ns.service is not None and (ns.service.namespace, ns.service.name) in refs
                    for ns in domain.delegation.nameservers):
                self.queue.add(DomainKey(domain.namespace, domain.name))

    def _namespace_changed(self, old: HostNamespace | None, new: HostNamespace | None) -> None:
        """A namespace's labels changed, or it appeared after its intents (their names were judged without its
        labels): its intents may be admitted under other Domains now. Nothing to do while the first list fills
        the cache (no intent is reconciled before it has listed) or when a namespace goes (its intents go too)."""
        self.discovery.namespace_changed()  # DiscoveryRules' namespaceSelectors (a burst costs one rescan)
        if new is None or not self.namespaces.synced.is_set() or (old is not None and old.labels == new.labels):
            return
        for informer in self.intent_informers.values():
            for intent in list(informer.store.values()):
                if intent.namespace == new.name:
                    self.queue.add(intent.key)

    def _dns_endpoint_changed(self, old: DNSEndpointObject | None, new: DNSEndpointObject | None) -> None:
        current = new or old
        assert current is not None
        keys = {current.intent_key} if current.intent_key is not None else set()
        # An object of another owner at an intent's DNSEndpoint name (a NameConflict, or its end).
        named = self._intent_for_dns_endpoint(current.namespace, current.name)
        if named is not None and self.intent(named) is not None:
            keys.add(named)
        for key in keys:
            self.reconciler.dns_endpoint_observed(key, new)
            if new is not None and self._our_write(key, new):
                continue  # our own write coming back
            self.queue.add(key)

    def _our_write(self, key: IntentKey, seen: DNSEndpointObject) -> bool:
        """The intent's own DNSEndpoint, holding the records last rendered (a foreign one never is)."""
        current = self.intent(key)
        return (seen.intent_key == key and current is not None and current.uid in seen.owner_uids
                and self.reconciler.desired_endpoints(key) == seen.endpoints)

    def _intent_for_dns_endpoint(self, namespace: str, name: str) -> IntentKey | None:
        """The intent whose DNSEndpoint would have this name (``<prefix>-<intent name>``)."""
        for source in self.sources:
            prefix = f"{source.endpoint_prefix}-"
            if name.startswith(prefix) and len(name) > len(prefix):
                return IntentKey(source.kind, namespace, name[len(prefix):])
        return None

    # --- the probers: reports and Leases (aggregator/health/quorum.py) --------------------------------

    def _health_report_changed(self, old: HealthReport | None, new: HealthReport | None) -> None:
        """Only the intents whose entries in this report changed are queued (a report holds many intents); an RTT
        that changed queues the LowestLatency intents answering with that address."""
        moved = self.latencies.apply(old, new)
        if moved:
            self._enqueue_per_view((Policy.LOWEST_LATENCY,), {address for _, address in moved})
        keys = []
        for namespace, ref in self.reports.apply(old, new):
            kind, _, name = ref.partition("/")
            with contextlib.suppress(ValueError):  # an intent kind this aggregator does not serve
                keys.append(IntentKey(IntentKind(kind), namespace, name))
        self._enqueue_known(keys)

    def _prober_lease_changed(self, old: ProberLease | None, new: ProberLease | None) -> None:
        if old is not None and (new is None or new.region != old.region):
            self.freshness.forget(old.region)
        if new is not None:
            self.freshness.observe(new)
        self._check_freshness()

    def _check_freshness(self, wake: bool = True) -> None:
        """A region that starts or stops voting (or appears, or goes) re-queues every intent with a health
        check; a renewal that changes neither costs nothing. ``wake``: tell the expiry watcher to look at the
        next expiry again (a Lease moved it); the watcher itself never wakes itself, or it would spin."""
        with self._freshness_lock:
            voters = (self.freshness.fresh(), self.freshness.regions())
            if voters == self._voters:
                if wake:
                    self._freshness_wake.set()  # a renewal moved the next expiry
                return
            before, self._voters = self._voters, voters
        fresh, regions = voters
        for region in set(before[1]) - set(regions):
            with contextlib.suppress(KeyError):
                self.metrics.prober_region_fresh.remove(region)
        for region in regions:
            self.metrics.prober_region_fresh.labels(region).set(1 if region in fresh else 0)
        logger.info("prober regions", extra={"fresh": sorted(fresh), "stale": sorted(set(regions) - fresh)})
        if wake:
            self._freshness_wake.set()
        for informer in self.intent_informers.values():
            for intent in list(informer.store.values()):
                if not isinstance(intent, InvalidIntent) and intent.health_check is not None:
                    self.queue.add(intent.key)
        self._enqueue_per_view((Policy.LOWEST_LATENCY,))  # a region's RTTs count only while it votes

    def _watch_freshness(self) -> None:
        """Wakes when the next fresh region would go stale (nothing else happens when a prober falls silent)."""
        while not self._stopping.is_set():
            expiry = self.freshness.next_expiry()
            self._freshness_wake.wait(None if expiry is None else expiry + 0.01)
            self._freshness_wake.clear()
            if not self._stopping.is_set():
                self._check_freshness(wake=False)  # the loop takes the next expiry anyway

    def _dns_view_changed(self, old: DNSViewObject | None, new: DNSViewObject | None) -> None:
        """A view that came, went or changed its spec moves the location policies' answers and may change every
        view's acceptance (overlaps); our own status write coming back changes nothing."""
        if old is not None and new is not None and old == new:
            return
        self._enqueue_per_view((Policy.GEO_PROXIMITY, Policy.LOWEST_LATENCY))
        for view in list(self.dns_views_informer.store.values()):
            self.queue.add(ViewKey(view.name))

    def _health_state(self, name: str, intents: Resource | None = None) -> Callable[[bool, str, int], None]:
        """``intents``: the intent kind the informer lists (its refusal names the CRD and the fix)."""
        def changed(connected: bool, detail: str, status: int) -> None:
            if name == "host/prober-leases":
                self.freshness.watching(connected)
                self._check_freshness()
            if status in (403, 404):
                if name not in self._refused:
                    what = (f"{host_cannot_read(intents, status)}; its intents are not served meanwhile"
                            if intents is not None else _REFUSED[name])
                    logger.warning(what, extra={"informer": name, "status": status, "detail": detail})
                self._refused[name] = detail
            elif connected and self._refused.pop(name, None) is not None:
                logger.info("readable again", extra={"informer": name})
                self.enqueue_all()
        return changed

    def _member_cluster_changed(self, old: MemberCluster | None, new: MemberCluster | None) -> None:
        self.connections.cluster_changed(old, new)
        if new is None:
            assert old is not None
            self.generator.forget_cluster(old.name)
        elif old is not None and old.labels != new.labels:
            self.discovery.clusters_changed()  # DiscoveryRules' clusterSelectors
        self.enqueue_all()

    def _schedule_grace_expiry(self, member: MemberConnection) -> None:
        """Reconcile everything again when the member's last known answer expires (nothing else would)."""
        expires = member.grace_expires_in()
        if expires is not None:
            for key in self.all_intent_keys():
                self.queue.add_after(key, expires + 0.05)
            self.queue.add_after(MemberKey(member.name), expires + 0.05)
            for domain in list(self.domains.store.values()):
                if domain.delegated:
                    self.queue.add_after(DomainKey(domain.namespace, domain.name), expires + 0.05)

    # --- workers ------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            item = self.queue.get()
            if item is None:
                return
            key, queued_at = item
            try:
                if self.leading.is_set():
                    if isinstance(key, MemberKey):
                        self.reconciler.reconcile_member(key)
                    elif isinstance(key, ViewKey):
                        self.reconciler.reconcile_view(key)
                    elif isinstance(key, DomainKey):
                        if self.domains.synced.is_set():  # else the first list queues it again
                            self.delegations.reconcile(key)
                    elif self.reconciler.reconcile(key):  # False: deferred until its caches have listed
                        self.metrics.reconcile_seconds.labels(str(key.kind)).observe(time.monotonic() - queued_at)
                self.queue.forget(key)
            except NotLeaderError:
                pass  # leadership is being lost; whoever leads next reconciles everything
            except Exception as error:  # noqa: BLE001 - retried with backoff; one bad intent must not stop the others
                self.metrics.reconcile_errors.labels(str(key.kind)).inc()
                delay = self.queue.add_rate_limited(key)
                logger.warning("reconcile failed; retrying", extra={
                    "intent": str(key), "error": str(error), "retry_in_seconds": delay,
                    "failures": self.queue.failures(key)})
            finally:
                self.queue.done(key)
                self.metrics.queue_depth.set(len(self.queue))


def _published_name(endpoint: Any) -> str | None:
    """The normalised dnsName of one record of a DNSEndpoint as the cache holds it (None: not a name)."""
    try:
        return normalize_name(str(endpoint.get("dnsName") or "")) if isinstance(endpoint, dict) else None
    except InvalidDNSNameError:
        return None
