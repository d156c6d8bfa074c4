"""ServiceDNSRecord: Service ``<ns>/<name>`` of type LoadBalancer in every member, under KubeFed's names.

Health: a cluster counts only while the Service has at least one ready endpoint in its EndpointSlices
(unless ``allowServiceWithoutEndpoints``); no load-balancer address yet → listed unhealthy.
Names: global, region and zone names with KubeFed's CNAME fallbacks, and ``dnsPrefix`` (naming.py).
Health checks are sent with Host = the global name (``status.fqdn``) unless the spec names one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aggregator.health.readiness import MemberView, Reason, cluster_status, unreachable
from aggregator.model import (
    ClusterStatus,
    IntentKey,
    IntentKind,
    MemberService,
    ServiceIntent,
    parse_member_service,
    parse_service_intent,
)
from aggregator.policy.loadbalancing import Selector
from aggregator.render.records import address_records, answer_records, cname, sort_endpoints
from aggregator.render.status import Outcome
from aggregator.sources.base import Desired, Domains, MemberIndex, MemberKind, MemberObjects, ServiceRef, Source
from aggregator.sources.endpoint_slices import ENDPOINT_SLICE_KIND
from aggregator.sources.naming import ServiceNames, service_names
from aggregator.sources.request import AppRequest, RequestError, common_spec
from fleetdns.apipaths import SERVICE_DNS_RECORDS, SERVICES
from fleetdns.dnsname import InvalidDNSNameError
from fleetdns.endpoint import Endpoint

SERVICE_KIND = MemberKind(SERVICES, parse_member_service)


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
        return cluster_status(view, (), False, f"{Reason.NOT_LOAD_BALANCER}: type is not LoadBalancer")
    if not service.addresses:
        return cluster_status(view, (), False,
                              f"{Reason.NO_LOAD_BALANCER_ADDRESS}: status.loadBalancer has no ingress yet")
    if view.ready_endpoints > 0:
        return cluster_status(view, service.addresses, True, f"{Reason.READY_ENDPOINTS}: {view.ready_endpoints} ready")
    if allow_without_endpoints:
        return cluster_status(view, service.addresses, True, str(Reason.ENDPOINTS_NOT_REQUIRED))
    return cluster_status(view, service.addresses, False,
                          f"{Reason.NO_READY_ENDPOINTS}: no ready endpoint in EndpointSlices")


def render_service_endpoints(intent: ServiceIntent, names: ServiceNames, clusters: tuple[ClusterStatus, ...],
                             selector: Selector | None = None) -> list[Endpoint]:
    """Global, region and zone names with KubeFed's CNAME fallbacks; empty when nothing answers. Each name's
    answer is the policy's pick over its own candidates (the global name: every listed cluster). Only the global
    name has client views (location policies): a region or zone name already says where to go.

    Regions and zones are those of the clusters listed in the status (where the Service exists).
    """
    selector = selector or Selector()
    global_records = answer_records(names.global_name, clusters, selector, intent.record_ttl)
    if not global_records:
        return []
    records = list(global_records)
    for region in sorted({c.region for c in clusters}):
        region_name = names.region_name(region)
        in_region = [c for c in clusters if c.region == region]
        records += address_records(region_name, selector.pick(in_region), intent.record_ttl) or [
            cname(region_name, names.global_name, intent.record_ttl)]
        for zone in sorted({c.zone for c in in_region}):
            zone_name = names.zone_name(region, zone)
            in_zone = [c for c in in_region if c.zone == zone]
            records += address_records(zone_name, selector.pick(in_zone), intent.record_ttl) or [
                cname(zone_name, region_name, intent.record_ttl)]
    if intent.dns_prefix:
        records.append(cname(names.dns_prefix_name(intent.dns_prefix), names.global_name, intent.record_ttl))
    return sort_endpoints(records)


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

    def domain_ref(self, intent: ServiceIntent) -> str:
        return intent.domain_ref

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

    def render(self, intent: ServiceIntent, clusters: tuple[ClusterStatus, ...], domains: Domains,
               selector: Selector | None = None) -> Desired:
        domain = domains.find(intent.namespace, intent.domain_ref)
        if domain is None:
            return Desired([], Outcome("", "", clusters, 0, "DomainNotFound",
                                       f"no Domain {intent.domain_ref!r} in namespace "
                                       f"{domains.searched(intent.namespace)}"))
        try:
            names = service_names(intent, domain.domain)
            endpoints = render_service_endpoints(intent, names, clusters, selector)
        except InvalidDNSNameError as error:
            return Desired([], Outcome(domain.domain, "", clusters, 0, "InvalidName", str(error)))
        return Desired(endpoints, Outcome(names.domain, names.global_name, clusters, len(endpoints)))
