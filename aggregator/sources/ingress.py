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

from aggregator.health.readiness import (
    KindProblem,
    MemberView,
    backends_ready,
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
    parse_addresses,
)
from aggregator.policy.loadbalancing import Selector, Slot
from aggregator.render.records import Layout, Problem, answered_records
from aggregator.render.status import INVALID_NAME
from aggregator.sources.base import (
    Domains,
    MemberIndex,
    MemberKind,
    MemberObjects,
    ServiceRef,
    Source,
    track_users,
)
from aggregator.sources.endpoint_slices import ENDPOINT_SLICE_KIND
from aggregator.sources.intent import Intent, parse_intent
from aggregator.sources.request import AppRequest, RequestError, common_spec
from fleetdns.apipaths import INGRESS_DNS_RECORDS, INGRESSES
from fleetdns.dnsname import InvalidDNSNameError, check_publishable, fold_name
from fleetdns.endpoint import Endpoint


@dataclass(frozen=True)
class IngressIntent(Intent):
    """An IngressDNSRecord: publish ``hosts`` over the addresses of Ingress ``name`` in every member (with a
    ``domainRef``, only names under that Domain)."""

    kind = IntentKind.INGRESS
    hosts: tuple[str, ...]


def parse_ingress_intent(obj: dict[str, Any]) -> IngressIntent:
    return parse_intent(IngressIntent, obj, hosts=tuple(str(h) for h in as_list(as_dict(obj.get("spec")).get("hosts"))))


def ingress_host_names(hosts: tuple[str, ...]) -> tuple[str, ...]:
    """Used as given: normalised, de-duplicated, sorted; raises InvalidDNSNameError for a host that cannot be
    published (servable by stock CoreDNS, with room for ExternalDNS's TXT registry prefix)."""
    return tuple(sorted({check_publishable(host) for host in hosts}))


@dataclass(frozen=True)
class MemberIngress:
    namespace: str
    name: str
    addresses: tuple[LoadBalancerAddress, ...]
    backend_services: tuple[str, ...]
    hosts: tuple[str, ...] = ()  # spec.rules[].host (normalised, wildcards too): a generated intent's names
    labels: dict[str, str] = field(default_factory=dict)  # self-service, as on MemberService
    annotations: dict[str, str] = field(default_factory=dict)
    created: str = ""


def parse_member_ingress(obj: dict[str, Any]) -> MemberIngress:
    meta, spec = as_dict(obj.get("metadata")), as_dict(obj.get("spec"))
    backends = set()
    default = as_dict(as_dict(spec.get("defaultBackend")).get("service")).get("name")
    if default:
        backends.add(str(default))
    for rule in map(as_dict, as_list(spec.get("rules"))):
        for path in map(as_dict, as_list(as_dict(rule.get("http")).get("paths"))):
            name = as_dict(as_dict(path.get("backend")).get("service")).get("name")
            if name:
                backends.add(str(name))
    hosts = sorted({fold_name(str(rule.get("host"))) for rule in map(as_dict, as_list(spec.get("rules")))
                    if rule.get("host")})
    return MemberIngress(meta.get("namespace", ""), meta.get("name", ""),
                         parse_addresses(as_dict(obj.get("status")).get("loadBalancer")), tuple(sorted(backends)),
                         tuple(hosts), *member_meta(meta))


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
        return no_address(view, "status.loadBalancer has no ingress yet")
    ready = {name: view.backend_ready.get(name, 0) for name in ingress.backend_services}
    return backends_ready(view, ingress.addresses, ready, without="no ready endpoint behind none")


def ingress_layout(hosts: tuple[str, ...], clusters: tuple[ClusterStatus, ...]) -> Layout:
    """One slot per host over every listed cluster (and, for a location policy, its client views)."""
    return Layout(tuple(Slot(host, clusters) for host in hosts), fqdn=", ".join(hosts))


def render_ingress_endpoints(intent: IngressIntent, hosts: tuple[str, ...], clusters: tuple[ClusterStatus, ...],
                             selector: Selector | None = None) -> list[Endpoint]:
    """One A/AAAA (or CNAME) record set per host over the policy's pick of the clusters (and, for a location
    policy, one per host and client view)."""
    return answered_records(ingress_layout(hosts, clusters), selector or Selector(), intent.record_ttl)


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

    def layout(self, intent: IngressIntent, clusters: tuple[ClusterStatus, ...], domains: Domains) -> Layout:
        try:
            return ingress_layout(ingress_host_names(intent.hosts), clusters)
        except InvalidDNSNameError as error:
            return Layout(problem=Problem("", INVALID_NAME, str(error)))
