"""RouteDNSRecord: OpenShift Route ``<ns>/<name>`` in every member, its ``spec.host`` over the load-balancer
addresses of the routers that admitted it (docs/design/sources.md §1).

Targets: for each ``status.ingress[]`` entry with condition ``Admitted=True``, the addresses (IPs and
hostnames) of Service ``router-<routerName>`` in the router namespace (``--openshift-router-namespace``,
default ``openshift-ingress``, where OpenShift's ingress operator puts ``router-default``), as redhat-cop's
global load balancer operator reads them. Health: a cluster counts while one of the Route's backend Services
(``spec.to`` and ``spec.alternateBackends`` of kind Service) has a ready endpoint. Names: the Route's
``spec.host``; the intent's ``spec.hosts``, when set, limits them; its ``domainRef``, when set, refuses names
outside the Domain. Each name is answered by the clusters whose Route serves it (``status.dns[].hosts``).
Route is an optional kind: a member without the Route API is not listed and stays connected.
Health checks are sent with Host = the first of ``spec.hosts``, else ``status.fqdn`` (the first published name).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aggregator.health.readiness import (
    KindProblem,
    MemberView,
    Reason,
    backends_ready,
    cannot_serve,
    kind_unavailable,
    no_address,
    unreachable,
)
from aggregator.model import (
    ClusterStatus,
    IntentKey,
    IntentKind,
    LoadBalancerAddress,
    as_dict,
    as_list,
    member_meta,
    sorted_addresses,
)
from aggregator.render.records import Layout
from aggregator.sources.base import (
    Domains,
    MemberIndex,
    MemberKind,
    MemberObjects,
    ServiceRef,
    Source,
    served_layout,
    track_users,
)
from aggregator.sources.endpoint_slices import ENDPOINT_SLICE_KIND
from aggregator.sources.intent import Intent, parse_intent
from aggregator.sources.lb_hostnames import HostnameLookup
from aggregator.sources.request import AppRequest, RequestError, common_spec
from aggregator.sources.service import SERVICE_KIND, MemberService
from fleetdns.apipaths import OPENSHIFT_ROUTES, ROUTE_DNS_RECORDS
from fleetdns.dnsname import InvalidDNSNameError, check_publishable, fold_name

ADMITTED = "Admitted"  # the condition a router sets on its status.ingress[] entry
ROUTER_SERVICE_PREFIX = "router-"  # OpenShift's ingress operator names a router's Service router-<routerName>
DEFAULT_ROUTER_NAMESPACE = "openshift-ingress"  # where the ingress operator puts router-default


@dataclass(frozen=True)
class RouterAdmission:
    """One ``status.ingress[]`` entry: what one router said about the Route."""

    router_name: str
    admitted: bool
    reason: str = ""  # the Admitted condition's reason when not admitted (HostAlreadyClaimed, ...)
    message: str = ""

    def describe(self) -> str:
        if self.admitted:
            return f"{self.router_name}: Admitted"
        why = ": ".join(part for part in (self.reason, self.message) if part)
        return f"{self.router_name}: not admitted" + (f" ({why})" if why else "")


@dataclass(frozen=True)
class MemberRoute:
    """A Route (``route.openshift.io/v1``) in one member cluster: what this source decides on (its host, backend
    Services and which routers admitted it) and what self-service reads of every kind (labels, annotations, age)."""

    namespace: str
    name: str
    host: str  # spec.host, lower-case, no trailing dot ("" when the Route has none)
    backend_services: tuple[str, ...]  # spec.to and spec.alternateBackends of kind Service, sorted
    admissions: tuple[RouterAdmission, ...] = ()  # status.ingress[], one per router
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)  # the fleetdns.io/* ones (model.member_meta)
    created: str = ""  # metadata.creationTimestamp

    @property
    def admitted_by(self) -> tuple[str, ...]:
        """The routers that admitted the Route, in name order."""
        return tuple(sorted({a.router_name for a in self.admissions if a.admitted}))


@dataclass(frozen=True, kw_only=True)
class RouteIntent(Intent):
    """A RouteDNSRecord: publish Route ``name``'s host over the addresses of the routers that admitted it (with a
    ``domainRef``, only names under that Domain)."""

    kind = IntentKind.ROUTE
    hosts: tuple[str, ...] = ()  # when set, only Routes whose spec.host is listed serve


def _backend(ref: Any) -> str:
    """The Service a ``spec.to`` / ``alternateBackends[]`` reference names ("" for another kind)."""
    ref = as_dict(ref)
    kind = ref.get("kind") or "Service"  # the API defaults it to Service
    return str(ref.get("name") or "") if kind == "Service" else ""


def _admission(entry: dict[str, Any]) -> RouterAdmission:
    condition = next((c for c in map(as_dict, as_list(entry.get("conditions"))) if c.get("type") == ADMITTED), {})
    return RouterAdmission(str(entry.get("routerName") or ""), condition.get("status") == "True",
                           str(condition.get("reason") or ""), str(condition.get("message") or ""))


def parse_member_route(obj: dict[str, Any]) -> MemberRoute:
    meta, spec = as_dict(obj.get("metadata")), as_dict(obj.get("spec"))
    backends = {_backend(spec.get("to"))} | {_backend(b) for b in as_list(spec.get("alternateBackends"))}
    labels, annotations, created = member_meta(meta)
    admissions: dict[str, RouterAdmission] = {}
    for admission in map(_admission, map(as_dict, as_list(as_dict(obj.get("status")).get("ingress")))):
        known = admissions.get(admission.router_name)
        if admission.router_name and (known is None or admission.admitted and not known.admitted):
            admissions[admission.router_name] = admission  # one per router; should one repeat, an admission wins
    return MemberRoute(
        namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""),
        host=fold_name(str(spec.get("host") or "")),
        backend_services=tuple(sorted(b for b in backends if b)),
        admissions=tuple(admissions[name] for name in sorted(admissions)),
        labels=labels, annotations=annotations, created=created,
    )


def parse_route_intent(obj: dict[str, Any]) -> RouteIntent:
    hosts = tuple(fold_name(str(h)) for h in as_list(as_dict(obj.get("spec")).get("hosts")))
    return parse_intent(RouteIntent, obj, hosts=hosts)


ROUTE_KIND = MemberKind(OPENSHIFT_ROUTES, parse_member_route, required=False)


def router_service_name(router: str) -> str:
    return f"{ROUTER_SERVICE_PREFIX}{router}"


@dataclass(frozen=True)
class RouterService:
    """An admitting router and its Service as the member holds it (None: not there, or not watched)."""

    router: str
    service: MemberService | None


@dataclass(frozen=True)
class RouteView(MemberView):
    """One member, for one RouteDNSRecord: its Route (None: not there), the Services of the routers that
    admitted it, and the ready endpoints per backend Service."""

    route: MemberRoute | None = None
    routers: tuple[RouterService, ...] = ()
    backend_ready: dict[str, int] = field(default_factory=dict)
    problem: KindProblem | None = None  # the member does not let us see Routes
    router_namespace: str = DEFAULT_ROUTER_NAMESPACE
    unwatched_namespace: str = ""  # set when --namespace limits member watches to another namespace


def served_host(route: MemberRoute, listed: tuple[str, ...]) -> tuple[str, str]:
    """(the name the Route serves, "") or ("", why it serves none)."""
    if not route.host:
        return "", "the Route has no spec.host"
    try:
        host = check_publishable(route.host)
    except InvalidDNSNameError as error:
        return "", str(error)
    if listed and host not in listed:
        return "", f"the Route's spec.host {host} is not among the intent's spec.hosts"
    return host, ""


def _router_problem(view: RouteView, router: RouterService) -> str:
    """Why an admitting router contributes no address, naming the Service looked up."""
    ref = f"{view.router_namespace}/{router_service_name(router.router)}"
    if view.unwatched_namespace:
        return (f"router {router.router}: Service {ref} is outside the member namespace the aggregator watches "
                f"({view.unwatched_namespace}); run it without --namespace or set --openshift-router-namespace")
    if router.service is None:
        return f"router {router.router}: no Service {ref}"
    if not router.service.is_load_balancer:
        return f"router {router.router}: Service {ref} is not of type LoadBalancer"
    return f"router {router.router}: Service {ref} has no load-balancer address yet (status.loadBalancer)"


def evaluate_route_cluster(view: RouteView, listed_hosts: tuple[str, ...] = ()) -> ClusterStatus | None:
    """The cluster's entry for a RouteDNSRecord; None when the Route does not exist there."""
    if (down := unreachable(view)) is not None:
        return down if isinstance(down, ClusterStatus) else None  # not reachable: decided without its objects
    if view.problem is not None:
        return kind_unavailable(view, view.problem)
    route = view.route
    if route is None:
        return None
    host, why = served_host(route, listed_hosts)
    if not host:
        return cannot_serve(view, Reason.NO_HOSTNAMES, why)
    hosts = (host,)
    if not route.admitted_by:
        said = "; ".join(a.describe() for a in route.admissions) or "status.ingress is empty: no router reported"
        return cannot_serve(view, Reason.NOT_ADMITTED, f"no router admitted the Route ({said})", hosts)
    addresses = _addresses(view.routers)
    if not addresses:
        return no_address(view, "; ".join(_router_problem(view, router) for router in view.routers), hosts)
    ready = {name: view.backend_ready.get(name, 0) for name in route.backend_services}
    return backends_ready(view, addresses, ready, without="no ready endpoint behind none of kind Service", hosts=hosts)


def _addresses(routers: Iterable[RouterService]) -> tuple[LoadBalancerAddress, ...]:
    """Every admitting router's load-balancer addresses, once each, IPs first."""
    return sorted_addresses(a for router in routers if router.service is not None for a in router.service.addresses)


class _RouteIndex(MemberIndex):
    """A Route affects the RouteDNSRecord of its name; a backend's readiness, every Route using it; a router's
    Service (``router-<name>`` in the router namespace), every Route that router admitted."""

    def __init__(self, router_namespace: str) -> None:
        self._router_namespace = router_namespace
        self._by_backend: dict[ServiceRef, set[str]] = {}
        self._by_router: dict[str, set[tuple[str, str]]] = {}  # router → (namespace, Route)

    def object_changed(self, kind: MemberKind, old: Any, new: Any) -> list[IntentKey]:
        if kind.resource == SERVICE_KIND.resource:
            return self._router_changed(new or old)
        for route, present in ((old, False), (new, True)):
            if route is not None:
                self._index(route, present)
        current: MemberRoute = new or old
        return [IntentKey(IntentKind.ROUTE, current.namespace, current.name)]

    def _index(self, route: MemberRoute, present: bool) -> None:
        track_users(self._by_backend, [(route.namespace, service) for service in route.backend_services], route.name,
                    present)
        track_users(self._by_router, route.admitted_by, (route.namespace, route.name), present)

    def _router_changed(self, service: MemberService) -> list[IntentKey]:
        if service.namespace != self._router_namespace or not service.name.startswith(ROUTER_SERVICE_PREFIX):
            return []
        routes = self._by_router.get(service.name[len(ROUTER_SERVICE_PREFIX):], ())
        return [IntentKey(IntentKind.ROUTE, namespace, name) for namespace, name in sorted(routes)]

    def readiness_changed(self, service: ServiceRef) -> list[IntentKey]:
        return [IntentKey(IntentKind.ROUTE, service[0], name) for name in sorted(self._by_backend.get(service, ()))]


class RouteSource(Source[RouteIntent]):
    kind = IntentKind.ROUTE
    intent_resource = ROUTE_DNS_RECORDS
    endpoint_prefix = "route"
    member_kinds = (ROUTE_KIND, SERVICE_KIND, ENDPOINT_SLICE_KIND)
    exposed_kinds = (ROUTE_KIND,)

    def __init__(self, hostnames: HostnameLookup | None = None, router_namespace: str = DEFAULT_ROUTER_NAMESPACE,
                 watched_namespace: str = "") -> None:
        """``watched_namespace``: the aggregator's ``--namespace`` ("" for all), which also limits what members
        show of router Services."""
        super().__init__(hostnames)
        self.router_namespace = router_namespace
        self.unwatched = watched_namespace if watched_namespace and watched_namespace != router_namespace else ""

    def parse_intent(self, raw: dict[str, Any]) -> RouteIntent:
        return parse_route_intent(raw)

    def generated_spec(self, obj: MemberRoute, request: AppRequest) -> dict[str, Any]:
        """Without hosts in the request, each cluster's Route publishes its own spec.host; a request that lists
        hosts may list only this Route's (a Route serves one)."""
        if not obj.host:
            raise RequestError("the Route has no spec.host to publish")
        spec = common_spec(request)
        if request.hosts:
            foreign = [host for host in request.hosts if host != obj.host]
            if foreign:
                raise RequestError(f"hosts {', '.join(foreign)} are not the Route's spec.host ({obj.host})")
            return spec | {"hosts": list(request.hosts)}
        return spec

    def new_index(self) -> MemberIndex:
        return _RouteIndex(self.router_namespace)

    def evaluate(self, intent: RouteIntent, view: MemberView, member: MemberObjects) -> ClusterStatus | None:
        route, ready, problem = None, {}, None
        routers: tuple[RouterService, ...] = ()
        if view.reachability.has_cache:
            problem = member.kind_problem(ROUTE_KIND)
            route = member.get(ROUTE_KIND, intent.namespace, intent.name)
            if route is not None:
                routers = tuple(RouterService(router, member.get(SERVICE_KIND, self.router_namespace,
                                                                 router_service_name(router)))
                                for router in route.admitted_by)
                ready = {svc: member.ready_endpoints(intent.namespace, svc) for svc in route.backend_services}
        return evaluate_route_cluster(
            RouteView(view.cluster, view.reachability, view.detail, view.last_known, route, routers, ready, problem,
                      self.router_namespace, self.unwatched), intent.hosts)

    def check_host(self, intent: RouteIntent, domains: Domains) -> str:
        return intent.hosts[0] if intent.hosts else intent.status.fqdn

    def layout(self, intent: RouteIntent, clusters: tuple[ClusterStatus, ...], domains: Domains) -> Layout:
        return served_layout(intent, clusters, domains, "Route")
