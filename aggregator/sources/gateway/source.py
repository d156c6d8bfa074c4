"""GatewayDNSRecord: the Gateway API route ``<ns>/<name>`` of ``spec.routeKind`` in every member, each name it
serves published over the addresses of the parent Gateways that accepted it
(rules: aggregator/sources/gateway/objects.py).

Per cluster: names = the route's hostnames intersected with its listeners' (wildcards reported, not published;
``spec.hosts`` limits them, and names TCPRoutes and UDPRoutes); targets = ``status.addresses`` of every parent
Gateway whose ``status.parents[]`` entry says ``Accepted=True``; health = the route's backend Services' ready
endpoints, any one (``AnyBackend``, the default) or every one (``AllBackends``). Each name's records come from
the clusters whose route serves it (``status.dns[].hosts``). Every route kind and Gateway is an optional member
kind: a member without the Gateway API CRDs (404) is not listed and stays connected for its other kinds.
Health checks are sent with Host = the first of ``spec.hosts``, else ``status.fqdn`` (the first published name).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aggregator.health.readiness import (
    KindProblem,
    MemberView,
    Reason,
    backends_ready,
    cannot_serve,
    kind_not_served,
    kind_unavailable,
    no_address,
    unreachable,
)
from aggregator.model import ClusterStatus, IntentKey, IntentKind, ParseError, as_dict, as_list
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
from aggregator.sources.gateway.objects import (
    Gateway,
    ParentRef,
    Route,
    RouteKind,
    attach,
    covers,
    is_wildcard,
    parse_gateway,
    published_names,
    route_parser,
)
from aggregator.sources.intent import Intent, parse_intent
from aggregator.sources.request import AppRequest, RequestError, common_spec
from fleetdns.apipaths import GATEWAY_DNS_RECORDS, GATEWAYS
from fleetdns.dnsname import InvalidDNSNameError, normalize_name

GATEWAY_MEMBER_KIND = MemberKind(GATEWAYS, parse_gateway, required=False)
ROUTE_MEMBER_KINDS = {kind: MemberKind(kind.resource, route_parser(kind), required=False) for kind in RouteKind}
RouteRef = tuple[RouteKind, str, str]  # (kind, namespace, name) in one member


class ServiceHealthPolicy(StrEnum):
    """``spec.serviceHealthPolicy``: how many backend Services need a ready endpoint (k8gb's field)."""

    ANY = "AnyBackend"
    ALL = "AllBackends"


@dataclass(frozen=True, kw_only=True)
class GatewayIntent(Intent):
    """A GatewayDNSRecord: publish the names route ``name`` (of ``route_kind``) serves in every member."""

    kind = IntentKind.GATEWAY
    route_kind: RouteKind = RouteKind.HTTP
    hosts: tuple[str, ...] = ()  # limits the names (HTTP, GRPC, TLS); the names themselves (TCP, UDP)
    service_health_policy: ServiceHealthPolicy = ServiceHealthPolicy.ANY


def _enum(raw: Any, enum: Any, default: Any, name: str) -> Any:
    try:
        return enum(raw or default)
    except ValueError:
        raise ParseError(f"{name} must be one of {', '.join(enum)}, not {raw!r}") from None


def parse_gateway_intent(obj: dict[str, Any]) -> GatewayIntent:
    """ParseError names the field (the CRD refuses these at admission; this guards older objects)."""
    spec = as_dict(obj.get("spec"))
    kind: RouteKind = _enum(spec.get("routeKind"), RouteKind, RouteKind.HTTP, "spec.routeKind")
    try:
        hosts = tuple(dict.fromkeys(normalize_name(str(h)) for h in as_list(spec.get("hosts"))))
    except InvalidDNSNameError as error:
        raise ParseError(f"spec.hosts: {error}") from None
    if not hosts and not kind.has_hostnames:
        raise ParseError(f"spec.hosts is required for routeKind {kind}: a {kind} has no hostnames of its own")
    return parse_intent(GatewayIntent, obj, route_kind=kind, hosts=hosts,
                        service_health_policy=_enum(spec.get("serviceHealthPolicy"), ServiceHealthPolicy,
                                                    ServiceHealthPolicy.ANY, "spec.serviceHealthPolicy"))


# --- one member ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayView(MemberView):
    """One member, for one GatewayDNSRecord: its route (None: not there), the parent Gateways found, and the
    ready endpoints of each backend Service."""

    route: Route | None = None
    gateways: Mapping[tuple[str, str], Gateway] = field(default_factory=dict)
    backend_ready: Mapping[ServiceRef, int] = field(default_factory=dict)
    problem: KindProblem | None = None  # the member does not let us see the route kind or Gateways


def evaluate_gateway_cluster(intent: GatewayIntent, view: GatewayView) -> ClusterStatus | None:
    """The cluster's entry for a GatewayDNSRecord; None when the route does not exist there."""
    if (down := unreachable(view)) is not None:
        return down if isinstance(down, ClusterStatus) else None  # not reachable: decided without its objects
    if view.problem is not None:
        return kind_unavailable(view, view.problem)
    route = view.route
    if route is None:
        return None
    attached = attach(route, view.gateways)
    names = published_names(intent.route_kind, attached.hostnames, intent.hosts)
    notes = "".join(f"; {note}" for note in (*attached.problems,
                                             *(f"not published: {n}" for n in names.left_out)))
    if not attached.accepted:
        why = "; ".join(attached.problems) or "the route names no parent Gateway"
        return cannot_serve(view, Reason.NOT_ACCEPTED, why)
    if not names.names:
        return cannot_serve(view, Reason.NO_HOSTNAMES, f"nothing to publish{notes}")
    if not attached.addresses:
        return no_address(view, f"no accepted parent Gateway has status.addresses yet{notes}", names.names)
    ready = {_service(route, backend): view.backend_ready.get(backend, 0) for backend in route.backends}
    every = intent.service_health_policy is ServiceHealthPolicy.ALL
    return backends_ready(view, attached.addresses, ready, every=every, without="the route has no backend Service",
                          notes=notes, hosts=names.names)


def _service(route: Route, service: ServiceRef) -> str:
    """A backend as reasons name it: by name in the route's namespace, else namespace/name."""
    namespace, name = service
    return name if namespace == route.namespace else f"{namespace}/{name}"


class _GatewayIndex(MemberIndex):
    """A route affects the GatewayDNSRecord of its name; a Gateway, the intents of the routes naming it as a
    parent; a backend's readiness, the intents of the routes using it."""

    def __init__(self) -> None:
        self._by_gateway: dict[tuple[str, str], set[RouteRef]] = {}
        self._by_backend: dict[ServiceRef, set[RouteRef]] = {}

    def object_changed(self, kind: MemberKind, old: Any, new: Any) -> list[IntentKey]:
        if kind.resource == GATEWAY_MEMBER_KIND.resource:
            gateway: Gateway = new or old
            users = self._by_gateway.get((gateway.namespace, gateway.name), ())
            return sorted({IntentKey(IntentKind.GATEWAY, ns, name) for _, ns, name in users})
        for route, present in ((old, False), (new, True)):
            if route is not None:
                ref = (route.kind, route.namespace, route.name)
                track_users(self._by_gateway, {(p.namespace, p.name) for p in _gateway_parents(route)}, ref, present)
                track_users(self._by_backend, set(route.backends), ref, present)
        current: Route = new or old
        return [IntentKey(IntentKind.GATEWAY, current.namespace, current.name)]

    def readiness_changed(self, service: ServiceRef) -> list[IntentKey]:
        return sorted({IntentKey(IntentKind.GATEWAY, ns, name) for _, ns, name in self._by_backend.get(service, ())})


def _gateway_parents(route: Route) -> list[ParentRef]:
    return [ref for ref in route.parent_refs if ref.is_gateway]


class GatewaySource(Source[GatewayIntent]):
    kind = IntentKind.GATEWAY
    intent_resource = GATEWAY_DNS_RECORDS
    endpoint_prefix = "gateway"
    member_kinds = (GATEWAY_MEMBER_KIND, *ROUTE_MEMBER_KINDS.values(), ENDPOINT_SLICE_KIND)
    exposed_kinds = tuple(ROUTE_MEMBER_KINDS.values())

    def parse_intent(self, raw: dict[str, Any]) -> GatewayIntent:
        return parse_gateway_intent(raw)

    def generated_spec(self, obj: Route, request: AppRequest) -> dict[str, Any]:
        """The route's kind, and the request's hosts when it lists some (each one the route's hostnames cover);
        without, the names the route serves (its hostnames and its listeners') are published. A TCPRoute or UDPRoute
        has no hostnames: the request must list them."""
        spec = common_spec(request) | {"routeKind": str(obj.kind)}
        if not obj.kind.has_hostnames:
            if not request.hosts:
                raise RequestError(f"a {obj.kind} has no hostnames: list the names to publish "
                                   "(annotation fleetdns.io/hosts)")
            return spec | {"hosts": list(request.hosts)}
        if request.hosts:
            foreign = [h for h in request.hosts if obj.hostnames and not any(covers(o, h) for o in obj.hostnames)]
            if foreign:
                raise RequestError(f"hosts {', '.join(foreign)} are not covered by the {obj.kind}'s hostnames "
                                   f"({', '.join(obj.hostnames)})")
            return spec | {"hosts": list(request.hosts)}
        if obj.hostnames and all(is_wildcard(h) for h in obj.hostnames):
            raise RequestError(f"the {obj.kind}'s hostnames are all wildcards ({', '.join(obj.hostnames)}), which "
                               "cannot be served: list the names to publish (annotation fleetdns.io/hosts)")
        return spec

    def new_index(self) -> MemberIndex:
        return _GatewayIndex()

    def evaluate(self, intent: GatewayIntent, view: MemberView, member: MemberObjects) -> ClusterStatus | None:
        route, gateways, ready, problem = None, {}, {}, None
        if view.reachability.has_cache:
            route_kind = ROUTE_MEMBER_KINDS[intent.route_kind]
            problem = member.kind_problem(route_kind)
            route = member.get(route_kind, intent.namespace, intent.name)
            if route is not None:
                problem = member.kind_problem(GATEWAY_MEMBER_KIND)
                for ref in _gateway_parents(route):
                    if (gateway := member.get(GATEWAY_MEMBER_KIND, ref.namespace, ref.name)) is not None:
                        gateways[(ref.namespace, ref.name)] = gateway
                ready = {service: member.ready_endpoints(*service) for service in route.backends}
        if problem is not None and not problem.served and route is not None:
            return kind_not_served(view, problem)  # the route kind is served but Gateways are not
        return evaluate_gateway_cluster(
            intent, GatewayView(view.cluster, view.reachability, view.detail, view.last_known, route, gateways, ready,
                                problem))

    def check_host(self, intent: GatewayIntent, domains: Domains) -> str:
        return intent.hosts[0] if intent.hosts else intent.status.fqdn

    def layout(self, intent: GatewayIntent, clusters: tuple[ClusterStatus, ...], domains: Domains) -> Layout:
        return served_layout(intent, clusters, domains, "route")
