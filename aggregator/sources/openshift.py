"""OpenShift Routes (``route.openshift.io/v1``) and the RouteDNSRecord intent, parsed once at the edge.

A member Route keeps what the Route source decides on (its host, backend Services and which routers
admitted it) and what self-service reads over every kind (labels, annotations, creation time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aggregator.model import (
    DEFAULT_TTL,
    HostnameMode,
    IntentKey,
    IntentKind,
    IntentStatus,
    LoadBalancing,
    ParseError,
    _health_check,
    _integer,
    as_dict,
    as_list,
    member_meta,
    parse_hostname_mode,
    parse_load_balancing,
    parse_status,
)
from fleetdns.dnsname import fold_name
from fleetdns.healthcheck import HealthCheck

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
    """A Route in one member cluster."""

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


@dataclass(frozen=True)
class RouteIntent:
    """A RouteDNSRecord: publish Route ``name``'s host over the addresses of the routers that admitted it."""

    namespace: str
    name: str
    uid: str
    generation: int
    hosts: tuple[str, ...] = ()  # when set, only Routes whose spec.host is listed serve
    domain_ref: str = ""  # when set, only names under that Domain are published
    record_ttl: int = DEFAULT_TTL
    load_balancer_hostnames: HostnameMode = HostnameMode.RESOLVE
    load_balancing: LoadBalancing = field(default_factory=LoadBalancing)
    health_check: HealthCheck | None = None
    status: IntentStatus = field(default_factory=IntentStatus)
    status_json: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    created: str = ""  # metadata.creationTimestamp

    @property
    def key(self) -> IntentKey:
        return IntentKey(IntentKind.ROUTE, self.namespace, self.name)


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
    meta, spec = as_dict(obj.get("metadata")), as_dict(obj.get("spec"))
    domain_ref = spec.get("domainRef") or ""
    if not isinstance(domain_ref, str):
        raise ParseError(f"spec.domainRef must name a Domain, not {domain_ref!r}")
    return RouteIntent(
        namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""), uid=str(meta.get("uid") or ""),
        generation=int(meta.get("generation") or 0),
        hosts=tuple(fold_name(str(h)) for h in as_list(spec.get("hosts"))), domain_ref=domain_ref,
        record_ttl=_integer(spec.get("recordTTL"), "spec.recordTTL", DEFAULT_TTL),
        load_balancer_hostnames=parse_hostname_mode(spec),
        load_balancing=parse_load_balancing(spec.get("loadBalancing")), health_check=_health_check(spec),
        status=parse_status(obj.get("status")), status_json=as_dict(obj.get("status")),
        created=str(meta.get("creationTimestamp") or ""),
    )
