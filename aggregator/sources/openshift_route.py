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
from dataclasses import dataclass, field, replace
from typing import Any

from aggregator.health.readiness import KindProblem, MemberView, Reason, cluster_status, kind_unavailable, unreachable
from aggregator.model import ClusterStatus, IntentKey, IntentKind, LoadBalancerAddress, MemberService, sorted_addresses
from aggregator.policy.loadbalancing import Selector
from aggregator.sources.base import (
    NO_HOSTNAMES,
    Desired,
    Domains,
    MemberIndex,
    MemberKind,
    MemberObjects,
    ServiceRef,
    Source,
    render_served,
    track_users,
)
from aggregator.sources.endpoint_slices import ENDPOINT_SLICE_KIND
from aggregator.sources.lb_hostnames import HostnameLookup
from aggregator.sources.openshift import (
    DEFAULT_ROUTER_NAMESPACE,
    ROUTER_SERVICE_PREFIX,
    MemberRoute,
    RouteIntent,
    parse_member_route,
    parse_route_intent,
)
from aggregator.sources.request import AppRequest, RequestError, common_spec
from aggregator.sources.service import SERVICE_KIND
from fleetdns.apipaths import OPENSHIFT_ROUTES, ROUTE_DNS_RECORDS
from fleetdns.dnsname import InvalidDNSNameError, check_publishable

ROUTE_KIND = MemberKind(OPENSHIFT_ROUTES, parse_member_route, required=False)

NOT_ADMITTED = "NotAdmitted"  # why a cluster's Route is not in the answer: no router admitted it


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
        return "", f"{NO_HOSTNAMES}: the Route has no spec.host"
    try:
        host = check_publishable(route.host)
    except InvalidDNSNameError as error:
        return "", f"{NO_HOSTNAMES}: {error}"
    if listed and host not in listed:
        return "", f"{NO_HOSTNAMES}: the Route's spec.host {host} is not among the intent's spec.hosts"
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
        return cluster_status(view, (), False, why)
    hosts = (host,)
    if not route.admitted_by:
        said = "; ".join(a.describe() for a in route.admissions) or "status.ingress is empty: no router reported"
        return replace(cluster_status(view, (), False, f"{NOT_ADMITTED}: no router admitted the Route ({said})"),
                       hosts=hosts)
    addresses = _addresses(view.routers)
    if not addresses:
        problems = "; ".join(_router_problem(view, router) for router in view.routers)
        return replace(cluster_status(view, (), False, f"{Reason.NO_LOAD_BALANCER_ADDRESS}: {problems}"), hosts=hosts)
    ready = sorted(name for name in route.backend_services if view.backend_ready.get(name, 0) > 0)
    if ready:
        entry = cluster_status(view, addresses, True, f"{Reason.READY_ENDPOINTS}: backend {', '.join(ready)}")
    else:
        backends = ", ".join(route.backend_services) or "none of kind Service"
        entry = cluster_status(view, addresses, False,
                               f"{Reason.NO_READY_BACKENDS}: no ready endpoint behind {backends}")
    return replace(entry, hosts=hosts)


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

    def domain_ref(self, intent: RouteIntent) -> str:
        return intent.domain_ref

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

    def render(self, intent: RouteIntent, clusters: tuple[ClusterStatus, ...], domains: Domains,
               selector: Selector | None = None) -> Desired:
        return render_served(intent, clusters, domains, selector, "Route")
