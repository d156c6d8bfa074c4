"""Gateway API (``gateway.networking.k8s.io`` v1) as the aggregator reads it in member clusters: Gateways and the
five route kinds parsed once into dataclasses, and the pure rules that say what a route serves there.

- **Accepted parents**: a parent Gateway counts only when the route's ``status.parents[]`` entry for that
  ``parentRef`` (defaults applied: group ``gateway.networking.k8s.io``, kind ``Gateway``, the route's namespace)
  has condition ``Accepted=True``; its ``status.addresses`` (``IPAddress`` and ``Hostname``) are the targets.
- **Names** (HTTPRoute, GRPCRoute, TLSRoute): the route's ``spec.hostnames`` intersected with the hostname of
  every listener it attaches to (``sectionName``/``port``, a protocol or ``allowedRoutes.kinds`` that admits the
  kind, ``allowedRoutes.namespaces``), as the Gateway API specifies: ``*.example.com`` matches any name below
  ``example.com`` (not ``example.com`` itself); two wildcards intersect in the more specific one; a side without
  a hostname takes the other's. Wildcard results are served but never published (reported instead).
- TCPRoute and UDPRoute have no hostnames: their names come from the intent (``spec.hosts``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aggregator.model import LoadBalancerAddress, ParseError, as_dict, as_list, member_meta, sorted_addresses
from fleetdns.apipaths import GATEWAY_API_GROUP, GRPC_ROUTES, HTTP_ROUTES, TCP_ROUTES, TLS_ROUTES, UDP_ROUTES, Resource
from fleetdns.dnsname import InvalidDNSNameError, check_publishable, fold_name

GATEWAY_KIND = "Gateway"
SERVICE_KIND = "Service"
ANY_HOSTNAME = "*"  # what a route and a listener that both name no hostname serve: every name


class RouteKind(StrEnum):
    """``GatewayDNSRecord.spec.routeKind``: the route kind one intent follows."""

    HTTP = "HTTPRoute"
    GRPC = "GRPCRoute"
    TLS = "TLSRoute"
    TCP = "TCPRoute"
    UDP = "UDPRoute"

    @property
    def resource(self) -> Resource:
        return _RESOURCES[self]

    @property
    def has_hostnames(self) -> bool:
        """TCPRoute and UDPRoute carry no hostnames: the intent's ``spec.hosts`` name them."""
        return self not in (RouteKind.TCP, RouteKind.UDP)

    @property
    def protocols(self) -> frozenset[str]:
        """Listener protocols that admit this kind when the listener lists no ``allowedRoutes.kinds``."""
        return _PROTOCOLS[self]


_RESOURCES = {RouteKind.HTTP: HTTP_ROUTES, RouteKind.GRPC: GRPC_ROUTES, RouteKind.TLS: TLS_ROUTES,
              RouteKind.TCP: TCP_ROUTES, RouteKind.UDP: UDP_ROUTES}
_PROTOCOLS = {RouteKind.HTTP: frozenset({"HTTP", "HTTPS"}), RouteKind.GRPC: frozenset({"HTTP", "HTTPS"}),
              RouteKind.TLS: frozenset({"TLS"}), RouteKind.TCP: frozenset({"TCP"}), RouteKind.UDP: frozenset({"UDP"})}


@dataclass(frozen=True, order=True)
class ParentRef:
    """A ``parentRef`` with the API's defaults applied, so spec and status entries compare equal."""

    group: str
    kind: str
    namespace: str
    name: str
    section_name: str = ""
    port: int = 0

    @property
    def is_gateway(self) -> bool:
        return self.group == GATEWAY_API_GROUP and self.kind == GATEWAY_KIND

    def __str__(self) -> str:
        section = f"/{self.section_name}" if self.section_name else ""
        port = f":{self.port}" if self.port else ""
        return f"{self.namespace}/{self.name}{section}{port}"


@dataclass(frozen=True)
class ParentStatus:
    """One ``status.parents[]`` entry: whether that parent accepted the route, and why (its Accepted condition)."""

    ref: ParentRef
    accepted: bool
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Route:
    """One route of any kind, as far as DNS cares: names, parents and their verdicts, backend Services."""

    kind: RouteKind
    namespace: str
    name: str
    hostnames: tuple[str, ...] = ()
    parent_refs: tuple[ParentRef, ...] = ()
    parents: tuple[ParentStatus, ...] = ()
    backends: tuple[tuple[str, str], ...] = ()  # (namespace, Service): backendRefs of kind Service, weight above 0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)  # the fleetdns.io/* ones (model.member_meta)
    created: str = ""  # metadata.creationTimestamp

    def verdict(self, ref: ParentRef) -> ParentStatus | None:
        """The parent's verdict on this route (accepted when any controller's entry says so); None: none yet."""
        entries = [p for p in self.parents if p.ref == ref]
        return next((p for p in entries if p.accepted), entries[0] if entries else None)


@dataclass(frozen=True)
class Listener:
    name: str
    port: int
    protocol: str
    hostname: str = ""  # "": every hostname
    allowed_kinds: tuple[str, ...] = ()  # allowedRoutes.kinds (Gateway API group); (): the protocol's kinds
    namespaces_from: str = "Same"  # allowedRoutes.namespaces.from: Same, All or Selector

    def admits(self, route: Route, ref: ParentRef, gateway_namespace: str) -> bool:
        """Whether ``route``, through ``ref``, attaches to this listener (hostnames aside). A ``Selector`` on
        namespaces is left to the controller: its Accepted condition already judged it."""
        if (ref.section_name and ref.section_name != self.name) or (ref.port and ref.port != self.port):
            return False
        kind_fits = route.kind in self.allowed_kinds if self.allowed_kinds else self.protocol in route.kind.protocols
        return kind_fits and (self.namespaces_from != "Same" or route.namespace == gateway_namespace)


@dataclass(frozen=True)
class Gateway:
    namespace: str
    name: str
    listeners: tuple[Listener, ...] = ()
    addresses: tuple[LoadBalancerAddress, ...] = ()  # status.addresses of type IPAddress and Hostname
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    created: str = ""


# --- hostnames -----------------------------------------------------------------------------------------


def is_wildcard(hostname: str) -> bool:
    return hostname == ANY_HOSTNAME or hostname.startswith("*.")


def covers(pattern: str, hostname: str) -> bool:
    """Whether ``pattern`` (a name, ``*.suffix`` or ``*``) matches the exact ``hostname``."""
    if pattern == ANY_HOSTNAME:
        return True
    if pattern.startswith("*."):
        return hostname.endswith(pattern[1:])
    return pattern == hostname


def intersect(listener: str, route: str) -> str | None:
    """The hostnames a listener's hostname and one of a route's both match ("" for either: no hostname, i.e.
    all): the more specific of the two when one covers the other, ``*`` when neither names one, else None."""
    if not listener or not route:
        return listener or route or ANY_HOSTNAME
    if covers(listener, route):
        return route
    if covers(route, listener):
        return listener
    return None


@dataclass(frozen=True)
class Attachment:
    """What one route serves in one member: through which accepted parents, with which addresses and names."""

    accepted: tuple[ParentRef, ...] = ()
    addresses: tuple[LoadBalancerAddress, ...] = ()
    hostnames: tuple[str, ...] = ()  # exact names and wildcards, sorted; () for TCPRoute and UDPRoute
    problems: tuple[str, ...] = ()  # parents that did not accept it, Gateways not found


def attach(route: Route, gateways: Mapping[tuple[str, str], Gateway]) -> Attachment:
    """The route's accepted parent Gateways (``gateways`` by (namespace, name)), their addresses and the names
    it serves through their listeners."""
    accepted: list[ParentRef] = []
    addresses: set[LoadBalancerAddress] = set()
    hostnames: set[str] = set()
    problems: list[str] = []
    for ref in route.parent_refs:
        if not ref.is_gateway:
            continue
        verdict = route.verdict(ref)
        if verdict is None or not verdict.accepted:
            why = "no status from its controller yet" if verdict is None else _why(verdict)
            problems.append(f"parent {ref} has not accepted the route ({why})")
            continue
        gateway = gateways.get((ref.namespace, ref.name))
        if gateway is None:
            problems.append(f"parent Gateway {ref.namespace}/{ref.name} not found")
            continue
        accepted.append(ref)
        addresses.update(gateway.addresses)
        if route.kind.has_hostnames:
            hostnames.update(listener_hostnames(route, ref, gateway))
    return Attachment(tuple(accepted), sorted_addresses(addresses), tuple(sorted(hostnames)), tuple(problems))


def listener_hostnames(route: Route, ref: ParentRef, gateway: Gateway) -> set[str]:
    """Every intersection of the route's hostnames with those of the listeners it attaches to through ``ref``."""
    found: set[str] = set()
    for listener in gateway.listeners:
        if not listener.admits(route, ref, gateway.namespace):
            continue
        for hostname in route.hostnames or ("",):
            common = intersect(listener.hostname, hostname)
            if common is not None:
                found.add(common)
    return found


def _why(verdict: ParentStatus) -> str:
    text = ": ".join(part for part in (verdict.reason, verdict.message) if part)
    return f"Accepted=False, {text}" if text else "Accepted is not True"


@dataclass(frozen=True)
class PublishedNames:
    names: tuple[str, ...]  # normalised, publishable, in the order given
    left_out: tuple[str, ...]  # each "name (why)", for the cluster's reason


def published_names(kind: RouteKind, served: Iterable[str], hosts: tuple[str, ...]) -> PublishedNames:
    """The names to publish for a route that serves ``served`` (exact names and wildcards): those of ``hosts``
    it serves when the intent lists hosts (every one of them for TCPRoute/UDPRoute), else its exact names.
    Wildcards, names it does not serve and names that cannot be published are left out, each with its reason."""
    served = tuple(served)
    left_out: list[str] = []
    if not kind.has_hostnames:
        wanted = list(hosts)
    elif hosts:
        wanted = [h for h in hosts if any(covers(s, fold_name(h)) for s in served)]
        left_out += [f"{h} (the route does not serve it here)" for h in hosts if h not in wanted]
    else:
        wanted = [s for s in served if not is_wildcard(s)]
        left_out += [f"{s} (wildcard: list the names in spec.hosts)" for s in served if is_wildcard(s)]
    names: list[str] = []
    for hostname in wanted:
        try:
            name = check_publishable(hostname)
        except InvalidDNSNameError as error:
            left_out.append(f"{hostname} ({error})")
            continue
        if name not in names:
            names.append(name)
    return PublishedNames(tuple(names), tuple(left_out))


# --- parsing ---------------------------------------------------------------------------------------------


def _port(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_parent_ref(raw: Any, route_namespace: str) -> ParentRef:
    raw = as_dict(raw)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ParseError("parentRefs[].name is required")
    group = raw.get("group")
    return ParentRef(GATEWAY_API_GROUP if group is None else str(group), str(raw.get("kind") or GATEWAY_KIND),
                     str(raw.get("namespace") or route_namespace), name, str(raw.get("sectionName") or ""),
                     _port(raw.get("port")))


def _parent_status(raw: Any, route_namespace: str) -> ParentStatus | None:
    raw = as_dict(raw)
    try:
        ref = parse_parent_ref(raw.get("parentRef"), route_namespace)
    except ParseError:
        return None  # an entry we cannot match to a parentRef accepts nothing
    accepted = next((c for c in map(as_dict, as_list(raw.get("conditions"))) if c.get("type") == "Accepted"), {})
    return ParentStatus(ref, accepted.get("status") == "True", str(accepted.get("reason") or ""),
                        str(accepted.get("message") or ""))


def _backends(spec: dict[str, Any], namespace: str) -> tuple[tuple[str, str], ...]:
    """The Services of every rule's backendRefs (group "" and kind Service, the defaults); a weight of 0 takes no
    traffic, so it does not count for health."""
    found: set[tuple[str, str]] = set()
    for rule in map(as_dict, as_list(spec.get("rules"))):
        for ref in map(as_dict, as_list(rule.get("backendRefs"))):
            if ref.get("group") or (ref.get("kind") or SERVICE_KIND) != SERVICE_KIND or not ref.get("name"):
                continue
            if ref.get("weight") == 0:
                continue
            found.add((str(ref.get("namespace") or namespace), str(ref["name"])))
    return tuple(sorted(found))


def parse_route(kind: RouteKind, obj: dict[str, Any]) -> Route:
    """A route of ``kind`` (list items do not always say their kind); ParseError names the bad field."""
    meta, spec, status = as_dict(obj.get("metadata")), as_dict(obj.get("spec")), as_dict(obj.get("status"))
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    hostnames = tuple(sorted({fold_name(str(h)) for h in as_list(spec.get("hostnames")) if h}))
    refs = tuple(parse_parent_ref(r, namespace) for r in as_list(spec.get("parentRefs")))
    parents = tuple(p for r in as_list(status.get("parents")) if (p := _parent_status(r, namespace)) is not None)
    return Route(kind, namespace, name, hostnames if kind.has_hostnames else (), refs, parents,
                 _backends(spec, namespace), *member_meta(meta))


def route_parser(kind: RouteKind) -> Any:
    """The informer's parse function for one route kind."""
    return lambda obj: parse_route(kind, obj)


def _listener(raw: Any) -> Listener:
    raw = as_dict(raw)
    allowed = as_dict(raw.get("allowedRoutes"))
    kinds = tuple(str(k.get("kind")) for k in map(as_dict, as_list(allowed.get("kinds")))
                  if k.get("kind") and (k.get("group") or GATEWAY_API_GROUP) == GATEWAY_API_GROUP)
    namespaces_from = str(as_dict(allowed.get("namespaces")).get("from") or "Same")
    return Listener(str(raw.get("name") or ""), _port(raw.get("port")), str(raw.get("protocol") or ""),
                    fold_name(str(raw.get("hostname") or "")), kinds, namespaces_from)


def gateway_addresses(raw: Any) -> tuple[LoadBalancerAddress, ...]:
    """``status.addresses``: ``IPAddress`` (the default type) and ``Hostname``; ``NamedAddress`` and values that
    do not parse are left out (they name nothing DNS can point at)."""
    found: set[LoadBalancerAddress] = set()
    for entry in map(as_dict, as_list(raw)):
        kind, value = str(entry.get("type") or "IPAddress"), str(entry.get("value") or "")
        if kind == "IPAddress":
            try:
                found.add(LoadBalancerAddress(ip=str(ipaddress.ip_address(value))))
            except ValueError:
                continue
        elif kind == "Hostname" and value:
            found.add(LoadBalancerAddress(hostname=fold_name(value)))
    return sorted_addresses(found)


def parse_gateway(obj: dict[str, Any]) -> Gateway:
    meta, spec, status = as_dict(obj.get("metadata")), as_dict(obj.get("spec")), as_dict(obj.get("status"))
    listeners = tuple(_listener(r) for r in as_list(spec.get("listeners")))
    return Gateway(str(meta.get("namespace") or ""), str(meta.get("name") or ""), listeners,
                   gateway_addresses(status.get("addresses")), *member_meta(meta))
