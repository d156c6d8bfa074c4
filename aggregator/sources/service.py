"""ServiceDNSRecord: Service ``<ns>/<name>`` of type LoadBalancer in every member, under KubeFed's names.

Health: a cluster counts only while the Service has at least one ready endpoint in its EndpointSlices
(unless ``allowServiceWithoutEndpoints``); no load-balancer address yet → listed unhealthy.
Names (``service_names``), built and checked with fleetdns.dnsname.check_publishable (servable by stock
CoreDNS, with room for ExternalDNS's TXT registry prefix): with P = ``<externalName or service>.<namespace>.
<domainRef>.svc``, the global name is ``P.<domain>``, a region's ``P.<region>.<domain>``, a zone's
``P.<zone>.<region>.<domain>``, with KubeFed's CNAME fallbacks; ``dnsPrefix`` adds ``<dnsPrefix>.<domain>``.
The CRD refuses what can be judged at admission; a name too long only with its Domain is refused here
(Ready=False, InvalidName).
Health checks are sent with Host = the global name (``status.fqdn``) unless the spec names one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aggregator.health.readiness import MemberView, Reason, cannot_serve, endpoints_ready, no_address, unreachable
from aggregator.model import (
    ClusterStatus,
    IntentKey,
    IntentKind,
    LoadBalancerAddress,
    ParseError,
    as_dict,
    as_list,
    member_meta,
    parse_addresses,
)
from aggregator.policy.loadbalancing import Selector, Slot
from aggregator.render.records import Layout, Problem, answered_records
from aggregator.render.status import DOMAIN_NOT_FOUND, INVALID_NAME
from aggregator.sources.base import Domains, MemberIndex, MemberKind, MemberObjects, ServiceRef, Source
from aggregator.sources.endpoint_slices import ENDPOINT_SLICE_KIND
from aggregator.sources.intent import Intent, parse_intent
from aggregator.sources.request import AppRequest, RequestError, common_spec
from fleetdns.apipaths import SERVICE_DNS_RECORDS, SERVICES
from fleetdns.dnsname import InvalidDNSNameError, check_publishable, join, normalize_name
from fleetdns.endpoint import Endpoint


@dataclass(frozen=True, kw_only=True)
class ServiceIntent(Intent):
    """A ServiceDNSRecord: publish Service ``name`` of namespace ``namespace`` from every member."""

    kind = IntentKind.SERVICE
    dns_prefix: str = ""
    external_name: str = ""
    allow_service_without_endpoints: bool = False


def parse_service_intent(obj: dict[str, Any]) -> ServiceIntent:
    spec = as_dict(obj.get("spec"))
    domain_ref = spec.get("domainRef")
    if not isinstance(domain_ref, str) or not domain_ref:
        raise ParseError("spec.domainRef is required")
    return parse_intent(ServiceIntent, obj, dns_prefix=str(spec.get("dnsPrefix") or ""),
                        external_name=str(spec.get("externalName") or ""),
                        allow_service_without_endpoints=bool(spec.get("allowServiceWithoutEndpoints")))


@dataclass(frozen=True)
class ServicePort:
    """One ``spec.ports[]`` entry: ``port`` on the VIP forwards to ``target_port`` (a container port number or name;
    the API's default is ``port``)."""

    port: int
    target_port: int | str
    protocol: str = "TCP"


@dataclass(frozen=True)
class MemberService:
    namespace: str
    name: str
    is_load_balancer: bool
    addresses: tuple[LoadBalancerAddress, ...]
    # spec.selector and spec.ports: a discovered app's pods and the port its readiness probe is reached on
    selector: tuple[tuple[str, str], ...] = ()
    ports: tuple[ServicePort, ...] = ()
    # self-service (aggregator/selfservice/): what DiscoveryRules select on, the fleetdns.io/* annotations only,
    # and metadata.creationTimestamp (the oldest object decides a generated intent)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    created: str = ""


def parse_member_service(obj: dict[str, Any]) -> MemberService:
    meta, spec = as_dict(obj.get("metadata")), as_dict(obj.get("spec"))
    return MemberService(meta.get("namespace", ""), meta.get("name", ""), spec.get("type") == "LoadBalancer",
                         parse_addresses(as_dict(obj.get("status")).get("loadBalancer")),
                         tuple(sorted((str(k), str(v)) for k, v in as_dict(spec.get("selector")).items())),
                         _service_ports(spec.get("ports")), *member_meta(meta))


def _service_ports(raw: Any) -> tuple[ServicePort, ...]:
    ports = []
    for entry in map(as_dict, as_list(raw)):
        port, target = entry.get("port"), entry.get("targetPort")
        if isinstance(port, int) and not isinstance(port, bool):
            target = target if isinstance(target, int | str) and not isinstance(target, bool) and target else port
            if isinstance(target, str) and target.isdigit():
                target = int(target)
            ports.append(ServicePort(port, target, str(entry.get("protocol") or "TCP")))
    return tuple(ports)


SERVICE_KIND = MemberKind(SERVICES, parse_member_service)


@dataclass(frozen=True)
class ServiceNames:
    """The names of one ServiceDNSRecord under one domain."""

    prefix: str
    domain: str

    @property
    def global_name(self) -> str:
        return check_publishable(join(self.prefix, self.domain))

    def region_name(self, region: str) -> str:
        return check_publishable(join(self.prefix, region, self.domain))

    def zone_name(self, region: str, zone: str) -> str:
        return check_publishable(join(self.prefix, zone, region, self.domain))

    def dns_prefix_name(self, dns_prefix: str) -> str:
        return check_publishable(join(dns_prefix, self.domain))


def service_names(intent: ServiceIntent, domain: str) -> ServiceNames:
    """Raises InvalidDNSNameError when the parts do not make a servable name (too long, bad label)."""
    base = intent.external_name or intent.name
    prefix = join(base, intent.namespace, intent.domain_ref, "svc")
    names = ServiceNames(prefix, normalize_name(domain))
    check_publishable(names.global_name)
    if intent.dns_prefix:
        names.dns_prefix_name(intent.dns_prefix)
    return names


@dataclass(frozen=True)
class ServiceView(MemberView):
    """One member, for one ServiceDNSRecord: its Service (None: not there) and the Service's ready endpoints."""

    service: MemberService | None = None
    ready_endpoints: int = 0


def evaluate_service_cluster(view: ServiceView, allow_without_endpoints: bool) -> ClusterStatus | None:
    """The cluster's entry for a ServiceDNSRecord; None when the Service does not exist there."""
    if (down := unreachable(view)) is not None:
        return down if isinstance(down, ClusterStatus) else None  # not reachable: decided without its objects
    service = view.service
    if service is None:
        return None
    if not service.is_load_balancer:
        return cannot_serve(view, Reason.NOT_LOAD_BALANCER, "type is not LoadBalancer")
    if not service.addresses:
        return no_address(view, "status.loadBalancer has no ingress yet")
    return endpoints_ready(view, service.addresses, view.ready_endpoints, required=not allow_without_endpoints)


def service_layout(intent: ServiceIntent, names: ServiceNames, clusters: tuple[ClusterStatus, ...]) -> Layout:
    """KubeFed's names: the global one over every listed cluster (with client views under a location policy), each
    region's and zone's over their own clusters (a region or zone name already says where to go: no views), a CNAME
    to the name above when they get no answer, and ``dnsPrefix`` a CNAME to the global name; nothing without a
    global answer. Regions and zones are those of the clusters listed in the status (where the Service exists).
    Raises InvalidDNSNameError for a region or zone name that cannot be published."""
    slots = [Slot(names.global_name, clusters)]
    fallbacks = {}
    for region in sorted({c.region for c in clusters}):
        region_name = names.region_name(region)
        in_region = tuple(c for c in clusters if c.region == region)
        slots.append(Slot(region_name, in_region, per_view=False))
        fallbacks[region_name] = names.global_name
        for zone in sorted({c.zone for c in in_region}):
            zone_name = names.zone_name(region, zone)
            slots.append(Slot(zone_name, tuple(c for c in in_region if c.zone == zone), per_view=False))
            fallbacks[zone_name] = region_name
    cnames = ((names.dns_prefix_name(intent.dns_prefix), names.global_name),) if intent.dns_prefix else ()
    return Layout(tuple(slots), fallbacks, cnames, anchor=names.global_name, zone=names.domain, fqdn=names.global_name)


def render_service_endpoints(intent: ServiceIntent, names: ServiceNames, clusters: tuple[ClusterStatus, ...],
                             selector: Selector | None = None) -> list[Endpoint]:
    """The records of ``service_layout``, each name answered by ``selector`` (None: every healthy cluster)."""
    return answered_records(service_layout(intent, names, clusters), selector or Selector(), intent.record_ttl)


class _ServiceIndex(MemberIndex):
    """A Service, or its ready endpoints, affect the ServiceDNSRecord of the same namespace/name."""

    def object_changed(self, kind: MemberKind, old: Any, new: Any) -> list[IntentKey]:
        current: MemberService = new or old
        return [IntentKey(IntentKind.SERVICE, current.namespace, current.name)]

    def readiness_changed(self, service: ServiceRef) -> list[IntentKey]:
        return [IntentKey(IntentKind.SERVICE, *service)]


class ServiceSource(Source[ServiceIntent]):
    kind = IntentKind.SERVICE
    intent_resource = SERVICE_DNS_RECORDS
    endpoint_prefix = "service"
    member_kinds = (SERVICE_KIND, ENDPOINT_SLICE_KIND)
    exposed_kinds = (SERVICE_KIND,)

    def parse_intent(self, raw: dict[str, Any]) -> ServiceIntent:
        return parse_service_intent(raw)

    def generated_spec(self, obj: MemberService, request: AppRequest) -> dict[str, Any]:
        """A Service's names come from its name, its namespace and the Domain: it takes no list of hosts."""
        if request.hosts:
            raise RequestError("a Service publishes <name>.<namespace>.<domain>.svc.<zone> and its region and zone "
                               "names; a list of hosts is for Ingresses and routes")
        return common_spec(request)

    def new_index(self) -> MemberIndex:
        return _ServiceIndex()

    def evaluate(self, intent: ServiceIntent, view: MemberView, member: MemberObjects) -> ClusterStatus | None:
        service, ready = None, 0
        if view.reachability.has_cache:
            service = member.get(SERVICE_KIND, intent.namespace, intent.name)
            ready = member.ready_endpoints(intent.namespace, intent.name)
        return evaluate_service_cluster(
            ServiceView(view.cluster, view.reachability, view.detail, view.last_known, service, ready),
            intent.allow_service_without_endpoints)

    def check_host(self, intent: ServiceIntent, domains: Domains) -> str:
        domain = domains.find(intent.namespace, intent.domain_ref)
        try:
            return service_names(intent, domain.domain).global_name if domain is not None else ""
        except InvalidDNSNameError:
            return ""

    def layout(self, intent: ServiceIntent, clusters: tuple[ClusterStatus, ...], domains: Domains) -> Layout:
        domain = domains.find(intent.namespace, intent.domain_ref)
        if domain is None:
            return Layout(problem=Problem("", DOMAIN_NOT_FOUND, f"no Domain {intent.domain_ref!r} in namespace "
                                                                f"{domains.searched(intent.namespace)}"))
        try:
            names = service_names(intent, domain.domain)
        except InvalidDNSNameError as error:
            return Layout(problem=Problem(domain.domain, INVALID_NAME, str(error)))
        try:
            return service_layout(intent, names, clusters)
        except InvalidDNSNameError as error:  # a region's or zone's name: refused once the global name answers
            return Layout((Slot(names.global_name, clusters),), anchor=names.global_name, zone=names.domain,
                          fqdn=names.global_name,
                          problem=Problem(domain.domain, INVALID_NAME, str(error), once_answered=True))
