"""IngressDNSRecord: Ingress ``<ns>/<name>`` in every member, one record per host over its load-balancer addresses.

Health: a cluster counts while at least one of the Ingress's backend Services (default backend and
every rule path) has a ready endpoint. Ingress is an optional kind: a member that forbids listing
Ingresses (403) is listed unhealthy with reason ``KindUnavailable``; one that does not serve the API
(404) is not listed; either way the member stays connected for its Services.
Health checks are sent with Host = the first of ``spec.hosts`` unless the spec names one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aggregator.health.readiness import KindProblem, MemberView, Reason, cluster_status, kind_unavailable, unreachable
from aggregator.model import (
    ClusterStatus,
    IngressIntent,
    IntentKey,
    IntentKind,
    MemberIngress,
    parse_ingress_intent,
    parse_member_ingress,
)
from aggregator.policy.loadbalancing import Selector
from aggregator.render.records import answer_records, sort_endpoints
from aggregator.render.status import Outcome
from aggregator.sources.base import (
    Desired,
    Domains,
    MemberIndex,
    MemberKind,
    MemberObjects,
    ServiceRef,
    Source,
    track_users,
)
from aggregator.sources.endpoint_slices import ENDPOINT_SLICE_KIND
from aggregator.sources.naming import ingress_host_names
from aggregator.sources.request import AppRequest, RequestError, common_spec
from fleetdns.apipaths import INGRESS_DNS_RECORDS, INGRESSES
from fleetdns.dnsname import InvalidDNSNameError
from fleetdns.endpoint import Endpoint

INGRESS_KIND = MemberKind(INGRESSES, parse_member_ingress, required=False)


@dataclass(frozen=True)
class IngressView(MemberView):
    """One member, for one IngressDNSRecord: its Ingress (None: not there) and ready endpoints per backend."""

    ingress: MemberIngress | None = None
    backend_ready: dict[str, int] = field(default_factory=dict)
    problem: KindProblem | None = None  # the member does not let us see Ingresses


def evaluate_ingress_cluster(view: IngressView) -> ClusterStatus | None:
    """The cluster's entry for an IngressDNSRecord; None when the Ingress does not exist there."""
    if (down := unreachable(view)) is not None:
        return down if isinstance(down, ClusterStatus) else None  # not reachable: decided without its objects
    if view.problem is not None:
        return kind_unavailable(view, view.problem)
    ingress = view.ingress
    if ingress is None:
        return None
    if not ingress.addresses:
        return cluster_status(view, (), False,
                              f"{Reason.NO_LOAD_BALANCER_ADDRESS}: status.loadBalancer has no ingress yet")
    ready = sorted(name for name in ingress.backend_services if view.backend_ready.get(name, 0) > 0)
    if ready:
        return cluster_status(view, ingress.addresses, True, f"{Reason.READY_ENDPOINTS}: backend {', '.join(ready)}")
    backends = ", ".join(ingress.backend_services) or "none"
    return cluster_status(view, ingress.addresses, False,
                          f"{Reason.NO_READY_BACKENDS}: no ready endpoint behind {backends}")


def render_ingress_endpoints(intent: IngressIntent, hosts: tuple[str, ...], clusters: tuple[ClusterStatus, ...],
                             selector: Selector | None = None) -> list[Endpoint]:
    """One A/AAAA (or CNAME) record set per host over the policy's pick of the clusters (and, for a location
    policy, one per host and client view)."""
    selector = selector or Selector()
    records = [record for host in hosts for record in answer_records(host, clusters, selector, intent.record_ttl)]
    return sort_endpoints(records)


class _IngressIndex(MemberIndex):
    """An Ingress affects the IngressDNSRecord of its name; a backend's readiness, every Ingress using it."""

    def __init__(self) -> None:
        self._by_backend: dict[ServiceRef, set[str]] = {}

    def object_changed(self, kind: MemberKind, old: Any, new: Any) -> list[IntentKey]:
        for ingress, present in ((old, False), (new, True)):
            if ingress is None:
                continue
            track_users(self._by_backend, [(ingress.namespace, s) for s in ingress.backend_services], ingress.name,
                        present)
        current: MemberIngress = new or old
        return [IntentKey(IntentKind.INGRESS, current.namespace, current.name)]

    def readiness_changed(self, service: ServiceRef) -> list[IntentKey]:
        return [IntentKey(IntentKind.INGRESS, service[0], name) for name in sorted(self._by_backend.get(service, ()))]


class IngressSource(Source[IngressIntent]):
    kind = IntentKind.INGRESS
    intent_resource = INGRESS_DNS_RECORDS
    endpoint_prefix = "ingress"
    member_kinds = (INGRESS_KIND, ENDPOINT_SLICE_KIND)
    exposed_kinds = (INGRESS_KIND,)

    def parse_intent(self, raw: dict[str, Any]) -> IngressIntent:
        return parse_ingress_intent(raw)

    def domain_ref(self, intent: IngressIntent) -> str:
        return intent.domain_ref

    def generated_spec(self, obj: MemberIngress, request: AppRequest) -> dict[str, Any]:
        """The Ingress's rule hosts (wildcards left out: they cannot be served), limited to the request's hosts when
        it lists some; each listed host must be one of the Ingress's."""
        own = [host for host in obj.hosts if not host.startswith("*")]
        if request.hosts:
            foreign = [host for host in request.hosts if host not in own]
            if foreign:
                raise RequestError(f"hosts {', '.join(foreign)} are not hosts of this Ingress's rules "
                                   f"({', '.join(own) or 'none'})")
            own = list(request.hosts)
        if not own:
            raise RequestError("the Ingress's rules name no host to publish (wildcard hosts cannot be served)")
        return common_spec(request) | {"hosts": sorted(own)}

    def new_index(self) -> MemberIndex:
        return _IngressIndex()

    def evaluate(self, intent: IngressIntent, view: MemberView, member: MemberObjects) -> ClusterStatus | None:
        ingress, ready, problem = None, {}, None
        if view.reachability.has_cache:
            problem = member.kind_problem(INGRESS_KIND)
            ingress = member.get(INGRESS_KIND, intent.namespace, intent.name)
            if ingress is not None:
                ready = {svc: member.ready_endpoints(intent.namespace, svc) for svc in ingress.backend_services}
        return evaluate_ingress_cluster(
            IngressView(view.cluster, view.reachability, view.detail, view.last_known, ingress, ready, problem))

    def check_host(self, intent: IngressIntent, domains: Domains) -> str:
        return intent.hosts[0] if intent.hosts else ""

    def render(self, intent: IngressIntent, clusters: tuple[ClusterStatus, ...], domains: Domains,
               selector: Selector | None = None) -> Desired:
        try:
            hosts = ingress_host_names(intent.hosts)
        except InvalidDNSNameError as error:
            return Desired([], Outcome("", "", clusters, 0, "InvalidName", str(error)))
        endpoints = render_ingress_endpoints(intent, hosts, clusters, selector)
        return Desired(endpoints, Outcome("", ", ".join(hosts), clusters, len(endpoints)))
