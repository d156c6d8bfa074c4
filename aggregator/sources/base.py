"""The source seam: one small class per kind of member object (Service, Ingress, Gateway API routes and
OpenShift Routes) that owns the member informers it needs, its index from member objects to intents,
its health evaluation and the layout of its names (which the policy then answers, aggregator/plan.py).
Members, the engine and the reconciler only iterate over the registered sources (aggregator/sources/__init__.py);
nothing outside a source knows its kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

from aggregator.health.readiness import KindProblem, MemberView, Reason
from aggregator.model import ClusterStatus, Domain, HostnameMode, IntentKey, IntentKind, ParseError
from aggregator.policy.loadbalancing import Selection, Selector
from aggregator.render.records import Layout, Problem, answered_records, served_names, served_slots
from aggregator.render.status import Outcome
from aggregator.sources.intent import IntentT, InvalidIntent, invalid_intent
from aggregator.sources.lb_hostnames import HostnameLookup, hostnames_of, resolve_entry
from aggregator.sources.request import AppRequest, RequestError
from fleetdns.apipaths import Resource
from fleetdns.endpoint import Endpoint

ServiceRef = tuple[str, str]  # (namespace, Service name) in one member
K = TypeVar("K")
U = TypeVar("U")


@dataclass(frozen=True)
class MemberKind:
    """A kind of member object a source watches. A member that forbids or lacks an optional kind stays
    connected for the others; a required kind is part of the member being connected at all."""

    resource: Resource
    parse: Callable[[dict[str, Any]], Any]
    required: bool = True
    label_selector: str = ""

    @property
    def name(self) -> str:
        return self.resource.plural


class MemberObjects(Protocol):
    """What a source reads of one member (MemberConnection implements it over its informer caches)."""

    @property
    def name(self) -> str: ...

    def view(self) -> MemberView: ...

    def get(self, kind: MemberKind, namespace: str, name: str) -> Any | None: ...

    def ready_endpoints(self, namespace: str, service: str) -> int: ...

    def kind_problem(self, kind: MemberKind) -> KindProblem | None: ...


def track_users(index: dict[K, set[U]], keys: Iterable[K], user: U, present: bool) -> None:
    """Add ``user`` under each of ``keys`` (``present``) or take it away, dropping the keys nobody uses any more: the
    sources' indexes from what member objects use (a backend Service, a Gateway, a router) to those objects."""
    for key in keys:
        users = index.setdefault(key, set())
        if present:
            users.add(user)
        else:
            users.discard(user)
            if not users:
                del index[key]


class MemberIndex(ABC):
    """Per member and source: which intents a member change affects. Called under the member's lock."""

    @abstractmethod
    def object_changed(self, kind: MemberKind, old: Any, new: Any) -> list[IntentKey]:
        """A watched object of ``kind`` changed (``old`` None: added; ``new`` None: deleted)."""

    def readiness_changed(self, service: ServiceRef) -> list[IntentKey]:
        """The number of ready endpoints of a Service changed (the shared EndpointSlice index)."""
        return []


class Domains(Protocol):
    """Domain lookup for sources whose names hang under a Domain."""

    def find(self, namespace: str, name: str) -> Domain | None:
        """The Domain ``name`` for an intent in ``namespace`` (its own namespace first, then the shared one)."""
        ...

    def searched(self, namespace: str) -> str:
        """Where ``find`` looked, for the message of a missing Domain."""
        ...


@dataclass(frozen=True)
class Desired:
    """What one reconcile wants: the DNSEndpoint's records and the outcome that becomes the status."""

    endpoints: list[Endpoint]
    outcome: Outcome


def desired(layout: Layout, clusters: tuple[ClusterStatus, ...], records: list[Endpoint],
            selection: Selection | None = None) -> Desired:
    """The rendered records and the outcome for the status; nothing is published while the layout's problem stands."""
    problem = layout.problem
    if problem is not None and (records or not problem.once_answered):
        return Desired([], Outcome(problem.zone, "", clusters, 0, problem.reason, problem.message, selection))
    return Desired(records, Outcome(layout.zone, layout.fqdn, clusters, len(records), selection=selection))


class Source(ABC, Generic[IntentT]):
    """One kind of member object behind one intent kind."""

    kind: IntentKind
    intent_resource: Resource  # where the intents live on the host
    endpoint_prefix: str  # DNSEndpoint ``<prefix>-<intent name>``, as KubeFed named them
    member_kinds: tuple[MemberKind, ...]  # informers every member runs for this source

    def __init__(self, hostnames: HostnameLookup | None = None) -> None:
        self.hostnames = hostnames  # None: load-balancer hostnames are never resolved (the CNAME form)

    @abstractmethod
    def parse_intent(self, raw: dict[str, Any]) -> IntentT:
        """The intent from the API's JSON; ParseError names the field that is wrong."""

    def read_intent(self, raw: dict[str, Any]) -> IntentT | InvalidIntent:
        """What the intents' informer keeps: the intent, or an InvalidIntent saying what is wrong with it
        (dropping it from the cache instead would look like a deletion and withdraw its records)."""
        try:
            return self.parse_intent(raw)
        except (ParseError, ValueError, TypeError, AttributeError) as error:
            return invalid_intent(self.kind, raw, str(error) or type(error).__name__)

    def domain_ref(self, intent: IntentT) -> str:
        """The Domain the intent's names hang under ("" when none): its changes re-queue the intent."""
        return intent.domain_ref

    def dns_endpoint_name(self, intent_name: str) -> str:
        return f"{self.endpoint_prefix}-{intent_name}"

    # Self-service (aggregator/selfservice/, docs/design/sources.md §2-§3): the member kinds whose objects may ask
    # for an intent of this kind (by their fleetdns.io/* annotations, or by a DiscoveryRule). Such an object has
    # ``namespace``, ``name``, ``labels``, ``annotations`` (the fleetdns.io/* ones), ``created``
    # (metadata.creationTimestamp); and when it changes, this source's index returns the key of the intent named
    # after it, IntentKey(kind, namespace, name): that is how the generator hears of it.
    exposed_kinds: tuple[MemberKind, ...] = ()

    def generated_spec(self, obj: Any, request: AppRequest) -> dict[str, Any]:
        """The spec of the intent that ``obj`` (of one of ``exposed_kinds``) asks for with ``request``, as the CRD
        takes it and without ``loadBalancing.weights`` (the generator adds them): ``common_spec(request)`` plus
        this kind's own fields. RequestError says what is missing (e.g. no host to publish)."""
        raise RequestError(f"{self.kind} intents are not generated from member objects")

    @abstractmethod
    def new_index(self) -> MemberIndex:
        """A fresh index for one member connection."""

    @abstractmethod
    def evaluate(self, intent: IntentT, view: MemberView, member: MemberObjects) -> ClusterStatus | None:
        """The member's ``status.dns[]`` entry for the intent; None when the object does not exist there."""

    @abstractmethod
    def check_host(self, intent: IntentT, domains: Domains) -> str:
        """The Host header (and SNI) of the intent's health check when ``spec.healthCheck`` names none: what the
        probers send too, so both name the check by the same ``check_id`` ("" when there is no such name)."""

    @abstractmethod
    def layout(self, intent: IntentT, clusters: tuple[ClusterStatus, ...], domains: Domains) -> Layout:
        """The intent's names over the evaluated clusters, each with the clusters that may answer it, for the policy
        to answer (aggregator/plan.py); or the problem that stops publishing (no Domain, a name that cannot be
        published)."""

    def render(self, intent: IntentT, clusters: tuple[ClusterStatus, ...], domains: Domains,
               selector: Selector | None = None) -> Desired:
        """The layout answered by ``selector`` (None: every healthy cluster) and rendered, without a selection:
        plan.py's last stages in one call."""
        layout = self.layout(intent, clusters, domains)
        return desired(layout, clusters, answered_records(layout, selector or Selector(), intent.record_ttl))

    def resolve_hostnames(self, intent: IntentT, clusters: tuple[ClusterStatus, ...]) -> tuple[ClusterStatus, ...]:
        """The clusters with their load balancers' hostnames resolved (``loadBalancerHostnames: Resolve``), from
        the resolver's cache; unchanged in the CNAME form. The reconciler calls it on every reconcile, before
        the health checks' verdicts (resolved addresses are checked too): it also tells the resolver which
        hostnames the intent uses now (none: it stops refreshing them for it)."""
        if self.hostnames is None:
            return clusters
        mode, record_ttl = intent.load_balancer_hostnames, intent.record_ttl
        wanted = hostnames_of(clusters) if mode is HostnameMode.RESOLVE else set()
        resolutions = self.hostnames.lookup(intent.key, wanted, record_ttl)
        if not wanted:
            return clusters
        previous = {entry.cluster: entry for entry in intent.status.dns}
        return tuple(resolve_entry(entry, resolutions, previous.get(entry.cluster)) for entry in clusters)


class ServedIntent(Protocol):
    """An intent whose names come from its member objects (``ClusterStatus.hosts``): Gateway API routes, Routes."""

    @property
    def namespace(self) -> str: ...

    @property
    def hosts(self) -> tuple[str, ...]: ...

    @property
    def domain_ref(self) -> str: ...

    @property
    def record_ttl(self) -> int: ...


def served_layout(intent: ServedIntent, clusters: tuple[ClusterStatus, ...], domains: Domains,
                  objects: str) -> Layout:
    """Each name the clusters serve (in the order of ``spec.hosts`` when it lists any), answered by the clusters that
    serve it; names outside the ``domainRef`` Domain are refused after this, by the guard rails (guardrails.py).
    ``objects``: what the member objects are, for the reason when none serves a name ("route", "Route")."""
    names = served_names(intent.hosts, clusters)
    domain = domains.find(intent.namespace, intent.domain_ref) if intent.domain_ref else None
    zone = domain.domain if domain is not None else ""
    if clusters and not names:
        return Layout(problem=Problem(zone, str(Reason.NO_HOSTNAMES),
                                      f"no cluster's {objects} serves a name that can be published "
                                      "(status.dns[].reason says why for each)"))
    return Layout(served_slots(names, clusters), zone=zone, fqdn=names[0] if names else "")


class SourceRegistry:
    """The registered sources by intent kind, and the member kinds they need together (each once)."""

    def __init__(self, sources: Iterable[Source[Any]]) -> None:
        self._by_kind: dict[IntentKind, Source[Any]] = {}
        for source in sources:
            if source.kind in self._by_kind:
                raise ValueError(f"two sources for {source.kind}")
            self._by_kind[source.kind] = source

    def __iter__(self) -> Iterator[Source[Any]]:
        return iter(self._by_kind.values())

    def for_kind(self, kind: IntentKind) -> Source[Any]:
        return self._by_kind[kind]

    def member_kinds(self) -> tuple[MemberKind, ...]:
        """Every member kind once, in registration order; required when any source requires it."""
        merged: dict[Resource, MemberKind] = {}
        for source in self:
            for kind in source.member_kinds:
                known = merged.get(kind.resource)
                merged[kind.resource] = kind if known is None else replace(known, required=known.required
                                                                           or kind.required)
        return tuple(merged.values())
