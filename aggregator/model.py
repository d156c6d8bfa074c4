"""The aggregator's shared vocabulary, parsed once from raw JSON at the edge: the work queue's keys, the
status types it writes (``status.dns[]``, ``status.answers[]``, conditions), the host objects it reads
(Domains and their delegation, MemberClusters, DNSEndpoints, DNSViews, prober Leases) and the JSON helpers every
parser uses.

Everything past the parsers works on these dataclasses; a malformed object becomes a parse error here
(logged and skipped) instead of a KeyError deep in the policy. The intents and the member objects behind
them are their sources' (aggregator/sources/): this module imports none of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fleetdns.addresses import parse_ips
from fleetdns.dnsname import check_publishable, fold_name, is_dns_label, is_dns_subdomain
from fleetdns.dnsview import DNSView, DNSViewError, Location, parse_dns_view, parse_location
from fleetdns.labels import LABEL_INTENT_KIND, LABEL_INTENT_NAME
from fleetdns.labelselector import EVERYTHING, LabelSelector, SelectorError, parse_label_selector

DEFAULT_DELEGATION_TTL = 300  # NS and glue: a parent's records change rarely, and resolvers keep them that long
DEFAULT_TTL = 30  # k8gb's default (KubeFed had 180): a client behind a caching resolver fails over within it
DEFAULT_KUBECONFIG_KEY = "kubeconfig"


class HostnameMode(StrEnum):
    """``spec.loadBalancerHostnames``: what a load balancer that gives a hostname (EKS-style) contributes."""

    RESOLVE = "Resolve"  # its addresses, resolved by the aggregator (aggregator/sources/lb_hostnames.py)
    CNAME = "CNAME"  # a CNAME to one hostname, only when no cluster gives an IP (KubeFed's behaviour)


class Policy(StrEnum):
    """``spec.loadBalancing.policy``: which healthy clusters answer (aggregator/policy/loadbalancing.py)."""

    ROUND_ROBIN = "RoundRobin"  # every healthy cluster
    WEIGHTED = "Weighted"  # clusters with weight > 0, in proportion (webhook/weights on the A/AAAA records)
    FAILOVER = "Failover"  # the healthy clusters of the first target in failoverOrder that has one
    GEO_PROXIMITY = "GeoProximity"  # per view: the healthy clusters nearest to the view's location
    LOWEST_LATENCY = "LowestLatency"  # per view: the healthy clusters with the lowest RTT from the view's region

    @property
    def per_view(self) -> bool:
        """Whether the answer depends on where the client is (one answer per view; aggregator/policy/proximity.py)."""
        return self in (Policy.GEO_PROXIMITY, Policy.LOWEST_LATENCY)


@dataclass(frozen=True)
class TargetWeight:
    target: str  # a MemberCluster or a region
    weight: int  # 0-255; 0 = drained


@dataclass(frozen=True)
class LoadBalancing:
    """``spec.loadBalancing``: the policy and its targets (MemberCluster names or regions)."""

    policy: Policy = Policy.ROUND_ROBIN
    weights: tuple[TargetWeight, ...] = ()
    failover_order: tuple[str, ...] = ()


class IntentKind(StrEnum):
    """The intent kinds of the API (manifests/crds/); each is served by one source (aggregator/sources/)."""

    SERVICE = "ServiceDNSRecord"
    INGRESS = "IngressDNSRecord"
    GATEWAY = "GatewayDNSRecord"  # Gateway API routes (aggregator/sources/gateway/source.py)
    ROUTE = "RouteDNSRecord"  # OpenShift Routes (aggregator/sources/openshift_route.py)


@dataclass(frozen=True, order=True)
class IntentKey:
    """What the work queue de-duplicates on: one intent, whatever changed about it."""

    kind: IntentKind
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True, order=True)
class MemberKey:
    """A MemberCluster whose status (reachability) the work queue should bring up to date."""

    name: str
    kind = "MemberCluster"  # the metrics label, as IntentKey.kind is for intents

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True, order=True)
class DomainKey:
    """A Domain whose delegation (its DNSEndpoints and the Delegated condition) the work queue should bring up to
    date."""

    namespace: str
    name: str
    kind = "Domain"  # the metrics label, as IntentKey.kind is for intents

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True, order=True)
class ViewKey:
    """A DNSView whose status (Accepted) the work queue should bring up to date."""

    name: str
    kind = "DNSView"  # the metrics label, as IntentKey.kind is for intents

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class ObjectRef:
    namespace: str
    name: str


@dataclass(frozen=True)
class LoadBalancerAddress:
    """One ``status.loadBalancer.ingress[]`` entry: an IP or a hostname (cloud LBs give either)."""

    ip: str = ""
    hostname: str = ""

    @property
    def is_ipv6(self) -> bool:
        return bool(self.ip) and ipaddress.ip_address(self.ip).version == 6

    def to_json(self) -> dict[str, str]:
        return {"ip": self.ip} if self.ip else {"hostname": self.hostname}


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: str = ""
    observed_generation: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "status": self.status, "reason": self.reason, "message": self.message,
                "lastTransitionTime": self.last_transition_time, "observedGeneration": self.observed_generation}


class Verdict(StrEnum):
    """The quorum's verdict on a cluster for one intent (aggregator/health/quorum.py)."""

    UP = "Up"  # at least one of its addresses is not Down
    DOWN = "Down"  # every address Down by a majority of the fresh regions
    UNKNOWN = "Unknown"  # no fresh voter (or no address to check): readiness alone decides


@dataclass(frozen=True)
class RegionHealth:
    """How one prober region sees one cluster of an intent (``status.dns[].healthCheck.regions[]``)."""

    region: str
    state: str  # Up, Down (every address), PartlyDown (some addresses)
    message: str = ""  # the report's reason ("HTTP 500"); per address when only some are Down
    since: str = ""  # when the region saw it go Down (the prober's clock)
    fresh: bool = False  # the region votes (its prober Lease is being renewed)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"region": self.region, "state": self.state, "fresh": self.fresh}
        if self.message:
            out["message"] = self.message
        if self.since:
            out["since"] = self.since
        return out


@dataclass(frozen=True)
class ClusterHealth:
    """``status.dns[].healthCheck``: the combined verdict and each region's view."""

    verdict: Verdict
    down_addresses: tuple[str, ...] = ()  # addresses a majority sees Down: never published
    regions: tuple[RegionHealth, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"verdict": str(self.verdict), "regions": [r.to_json() for r in self.regions]}
        if self.down_addresses:
            out["downAddresses"] = list(self.down_addresses)
        return out


@dataclass(frozen=True)
class ClusterStatus:
    """One ``status.dns[]`` entry: what the aggregator saw in one member cluster."""

    cluster: str
    region: str
    zone: str
    addresses: tuple[LoadBalancerAddress, ...]
    healthy: bool
    reason: str
    resolved: tuple[str, ...] = ()  # IPs the load balancer's hostnames resolved to (loadBalancerHostnames: Resolve)
    health_check: ClusterHealth | None = None  # only for an intent with spec.healthCheck
    hosts: tuple[str, ...] = ()  # names this cluster serves, for sources whose names come from member objects

    @property
    def withdrawn(self) -> tuple[str, ...]:
        """Addresses the probers' quorum sees Down: left out of every record."""
        return self.health_check.down_addresses if self.health_check is not None else ()

    def to_json(self) -> dict[str, Any]:
        entry = {"cluster": self.cluster, "region": self.region, "zone": self.zone,
                 "loadBalancer": {"ingress": [a.to_json() for a in self.addresses]},
                 "healthy": self.healthy, "reason": self.reason}
        if self.resolved:
            entry["resolvedAddresses"] = list(self.resolved)
        if self.health_check is not None:
            entry["healthCheck"] = self.health_check.to_json()
        if self.hosts:
            entry["hosts"] = list(self.hosts)
        return entry


@dataclass(frozen=True)
class AnswerCluster:
    """One cluster in an answer: the addresses it contributes and, under Weighted, its weight (1-255)."""

    cluster: str
    addresses: tuple[str, ...] = ()  # IPs (or, in the CNAME form, the hostname) as published
    weight: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cluster": self.cluster, "addresses": list(self.addresses)}
        if self.weight:
            out["weight"] = self.weight
        return out


@dataclass(frozen=True)
class Answer:
    """``status.answers[]``: who answers the intent's names in one view ("" = the default view). Also the
    memory of fail-open (the last healthy set) and of LowestLatency's hysteresis (a view's current answer):
    both survive restarts and leader changes here."""

    view: str
    policy: Policy
    clusters: tuple[AnswerCluster, ...]
    reason: str
    fallback: str = ""  # why a location policy could not rank this view (NoLocation, NoLatencyData)

    def to_json(self) -> dict[str, Any]:
        out = {"view": self.view, "policy": str(self.policy), "clusters": [c.to_json() for c in self.clusters],
               "reason": self.reason}
        if self.fallback:
            out["fallback"] = self.fallback
        return out


@dataclass(frozen=True)
class IntentStatus:
    domain: str = ""
    fqdn: str = ""
    healthy_clusters: int = 0
    dns: tuple[ClusterStatus, ...] = ()
    conditions: tuple[Condition, ...] = ()
    observed_generation: int = 0
    answers: tuple[Answer, ...] = ()

    def answer(self, view: str = "") -> Answer | None:
        return next((a for a in self.answers if a.view == view), None)

    def to_json(self) -> dict[str, Any]:
        out = {"domain": self.domain, "fqdn": self.fqdn, "healthyClusters": self.healthy_clusters,
               "dns": [entry.to_json() for entry in self.dns],
               "conditions": [c.to_json() for c in self.conditions],
               "observedGeneration": self.observed_generation}
        if self.answers:
            out["answers"] = [a.to_json() for a in self.answers]
        return out


@dataclass(frozen=True)
class Nameserver:
    """One ``spec.delegation.nameservers[]`` entry: ``<name>.<zone>``, whose addresses are the load-balancer IPs of
    Service ``service`` in MemberCluster ``member``, or fixed ``addresses``."""

    name: str  # a DNS label
    member: str = ""
    service: ObjectRef | None = None
    addresses: tuple[str, ...] = ()

    def fqdn(self, zone: str) -> str:
        return f"{self.name}.{zone}"


@dataclass(frozen=True)
class Delegation:
    """``spec.delegation``: the zone's NS and glue, published for its parent zone (docs/design/delegation.md)."""

    nameservers: tuple[Nameserver, ...]
    ttl: int = DEFAULT_DELEGATION_TTL
    labels: tuple[tuple[str, str], ...] = ()  # extra labels on the parent's DNSEndpoint (sorted)


@dataclass(frozen=True)
class Domain:
    """A zone: ``spec.domain`` / ``spec.nameServer``, or KubeFed's top-level fields (accepted for migration)."""

    namespace: str
    name: str
    domain: str
    name_server: str = ""
    # spec.namespaceSelector: the host namespaces whose intents may publish names under this zone
    # (aggregator/registry/domains.py); a selector that cannot be read admits none (``selector_problem`` says why)
    namespace_selector: LabelSelector = EVERYTHING
    selector_problem: str = ""
    # spec.delegation (None: not delegated by FleetDNS); one that cannot be used is reported, not dropped
    delegation: Delegation | None = None
    delegation_problem: str = ""
    uid: str = ""
    generation: int = 0
    # ours (written by the leader): a status-only change is no change of the Domain
    conditions: tuple[Condition, ...] = field(default=(), compare=False)

    @property
    def delegated(self) -> bool:
        return self.delegation is not None or bool(self.delegation_problem)


@dataclass(frozen=True)
class HostNamespace:
    """A host namespace's labels: what a Domain's namespaceSelector is matched against."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SecretKeyRef:
    namespace: str
    name: str
    key: str = DEFAULT_KUBECONFIG_KEY


@dataclass(frozen=True)
class UnavailableKind:
    """An optional kind of member object the member forbids (403) or does not serve (404)."""

    kind: str
    code: int
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class MemberClusterStatus:
    """What the aggregator reports on a MemberCluster: its reachability (one write per change of it)."""

    state: str = ""
    conditions: tuple[Condition, ...] = ()
    unavailable_kinds: tuple[UnavailableKind, ...] = ()
    observed_generation: int = 0
    served_kinds: tuple[str, ...] = ()  # the optional kinds it lets us list (plural, sorted), once it was reached

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "conditions": [c.to_json() for c in self.conditions],
                "unavailableKinds": [k.to_json() for k in self.unavailable_kinds],
                "servedKinds": list(self.served_kinds), "observedGeneration": self.observed_generation}


@dataclass(frozen=True)
class MemberCluster:
    name: str
    region: str
    zone: str
    kubeconfig_secret: SecretKeyRef
    location: Location | None = None  # spec.location: GeoProximity's input
    generation: int = 0
    status: MemberClusterStatus = field(default_factory=MemberClusterStatus, compare=False)
    # status is ours (written by the leader): a status-only change is no change of the member's spec
    labels: dict[str, str] = field(default_factory=dict)  # metadata.labels: DiscoveryRules' clusterSelector


@dataclass(frozen=True)
class OwnerReference:
    """One ``metadata.ownerReferences[]`` entry."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool = False
    block_owner_deletion: bool = False

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def to_json(self) -> dict[str, Any]:
        return {"apiVersion": self.api_version, "kind": self.kind, "name": self.name, "uid": self.uid,
                "controller": self.controller, "blockOwnerDeletion": self.block_owner_deletion}


@dataclass(frozen=True)
class DNSEndpointObject:
    """The part of an existing DNSEndpoint the aggregator compares with what it would write."""

    namespace: str
    name: str
    labels: dict[str, str]
    endpoints: tuple[dict[str, Any], ...]
    owners: tuple[OwnerReference, ...]
    resource_version: str
    uid: str = ""

    @property
    def owner_uids(self) -> tuple[str, ...]:
        return tuple(owner.uid for owner in self.owners)

    @property
    def intent_key(self) -> IntentKey | None:
        try:
            kind = IntentKind(self.labels.get(LABEL_INTENT_KIND, ""))
        except ValueError:
            return None
        name = self.labels.get(LABEL_INTENT_NAME, "")
        return IntentKey(kind, self.namespace, name) if name else None


class ParseError(ValueError):
    """An object whose shape the aggregator cannot use; the message names the field."""


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def as_dict(value: Any) -> dict[str, Any]:
    """A JSON object field as parsed at the edge: the object, or {} when it is absent or not an object."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """A JSON array field as parsed at the edge: the array, or [] when it is absent or not an array."""
    return value if isinstance(value, list) else []


def parse_addresses(load_balancer: Any) -> tuple[LoadBalancerAddress, ...]:
    """``status.loadBalancer`` → addresses, sorted so that comparisons ignore the API's order."""
    found = set()
    for entry in as_list(as_dict(load_balancer).get("ingress")):
        entry = as_dict(entry)
        ip, hostname = str(entry.get("ip") or ""), str(entry.get("hostname") or "")
        if ip:
            address = _target_address(ip)
            if address:
                found.add(LoadBalancerAddress(ip=address))
        elif hostname:
            found.add(LoadBalancerAddress(hostname=fold_name(hostname)))
    return sorted_addresses(found)


def _target_address(text: str) -> str:
    """The IP in canonical form, or "" for one no client could be sent to (not an IP, unspecified, multicast, the
    limited broadcast): a load balancer's status written by a buggy controller or by hand must not become an answer."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return ""
    if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        return ""
    return str(ip)


def sorted_addresses(addresses: Iterable[LoadBalancerAddress]) -> tuple[LoadBalancerAddress, ...]:
    """Each address once, IPs first, so that comparisons ignore the order the API (or several sources) gave them."""
    return tuple(sorted(set(addresses), key=lambda a: (a.ip == "", a.ip, a.hostname)))


def parse_hostname_mode(spec: dict[str, Any]) -> HostnameMode:
    raw = spec.get("loadBalancerHostnames") or HostnameMode.RESOLVE
    try:
        return HostnameMode(raw)
    except ValueError:
        raise ParseError(f"spec.loadBalancerHostnames must be Resolve or CNAME, not {raw!r}") from None


def parse_conditions(raw: Any) -> tuple[Condition, ...]:
    return tuple(
        Condition(str(c.get("type", "")), str(c.get("status", "")), str(c.get("reason", "")),
                  str(c.get("message", "")), str(c.get("lastTransitionTime") or ""),
                  int(c.get("observedGeneration") or 0))
        for c in map(as_dict, as_list(raw))
    )


def parse_status(raw: Any) -> IntentStatus:
    raw = as_dict(raw)
    dns = tuple(
        ClusterStatus(str(e.get("cluster", "")), str(e.get("region", "")), str(e.get("zone", "")),
                      parse_addresses(e.get("loadBalancer")), bool(e.get("healthy")), str(e.get("reason", "")),
                      parse_ips(e.get("resolvedAddresses")), _cluster_health(e.get("healthCheck")),
                      tuple(str(h) for h in as_list(e.get("hosts"))))
        for e in map(as_dict, as_list(raw.get("dns")))
    )
    return IntentStatus(str(raw.get("domain") or ""), str(raw.get("fqdn") or ""), int(raw.get("healthyClusters") or 0),
                        dns, parse_conditions(raw.get("conditions")), int(raw.get("observedGeneration") or 0),
                        tuple(a for a in map(_answer, as_list(raw.get("answers"))) if a is not None))


def _cluster_health(raw: Any) -> ClusterHealth | None:
    if not isinstance(raw, dict):
        return None
    try:
        verdict = Verdict(str(raw.get("verdict")))
    except ValueError:
        verdict = Verdict.UNKNOWN
    regions = tuple(RegionHealth(str(r.get("region", "")), str(r.get("state", "")), str(r.get("message") or ""),
                                 str(r.get("since") or ""), r.get("fresh") is True)
                    for r in map(as_dict, as_list(raw.get("regions"))))
    return ClusterHealth(verdict, tuple(str(a) for a in as_list(raw.get("downAddresses"))), regions)


def _answer(raw: Any) -> Answer | None:
    """A ``status.answers[]`` entry as written (None when it is not one: a hand edit)."""
    raw = as_dict(raw)
    try:
        policy = Policy(str(raw.get("policy")))
    except ValueError:
        return None
    clusters = tuple(AnswerCluster(str(c.get("cluster", "")), tuple(str(a) for a in as_list(c.get("addresses"))),
                                   c["weight"] if isinstance(c.get("weight"), int) else 0)
                     for c in map(as_dict, as_list(raw.get("clusters"))) if c.get("cluster"))
    return Answer(str(raw.get("view") or ""), policy, clusters, str(raw.get("reason") or ""),
                  str(raw.get("fallback") or ""))


def parse_load_balancing(raw: Any) -> LoadBalancing:
    """``spec.loadBalancing`` (absent: RoundRobin). The CRD refuses bad ones at admission; this guards objects
    written before it did (a ParseError names the field)."""
    if raw is None:
        return LoadBalancing()
    if not isinstance(raw, dict):
        raise ParseError("spec.loadBalancing must be an object")
    policy_raw = raw.get("policy") or Policy.ROUND_ROBIN
    try:
        policy = Policy(policy_raw)
    except ValueError:
        raise ParseError(f"spec.loadBalancing.policy must be one of {', '.join(Policy)}, not {policy_raw!r}") from None
    weights: list[TargetWeight] = []
    for index, item in enumerate(as_list(raw.get("weights"))):
        item = as_dict(item)
        target, weight = item.get("target"), item.get("weight")
        if not isinstance(target, str) or not target:
            raise ParseError(f"spec.loadBalancing.weights[{index}].target must name a MemberCluster or a region")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 255:
            raise ParseError(f"spec.loadBalancing.weights[{index}].weight must be 0-255, not {weight!r}")
        if any(w.target == target for w in weights):
            raise ParseError(f"spec.loadBalancing.weights lists target {target!r} twice")
        weights.append(TargetWeight(target, weight))
    order = tuple(str(t) for t in as_list(raw.get("failoverOrder")))
    if len(set(order)) != len(order):
        raise ParseError("spec.loadBalancing.failoverOrder lists a target twice")
    return LoadBalancing(policy, tuple(weights), order)


def parse_domain(obj: dict[str, Any]) -> Domain:
    meta, spec = _meta(obj), as_dict(obj.get("spec"))
    source = spec if spec.get("domain") else obj  # spec first; KubeFed put the fields at the top level
    domain = source.get("domain")
    if not isinstance(domain, str) or not domain:
        raise ParseError("spec.domain is required")
    selector, problem = EVERYTHING, ""
    try:
        selector = parse_label_selector(spec.get("namespaceSelector"), "spec.namespaceSelector")
    except SelectorError as error:  # the CRD refuses it; an old object admits nobody rather than everybody
        selector, problem = LabelSelector(), str(error)
    delegation, delegation_problem = None, ""
    if spec.get("delegation") is not None:
        try:
            delegation = parse_delegation(spec["delegation"], domain)
        except ParseError as error:  # the CRD refuses most; reported on the Domain, which keeps its other rules
            delegation_problem = str(error)
    generation = meta.get("generation")
    return Domain(meta.get("namespace", ""), meta.get("name", ""), domain, str(source.get("nameServer") or ""),
                  selector, problem, delegation, delegation_problem, str(meta.get("uid") or ""),
                  generation if isinstance(generation, int) else 0,
                  parse_conditions(as_dict(obj.get("status")).get("conditions")))


MAX_NAMESERVERS = 16


def parse_delegation(raw: Any, zone: str) -> Delegation:
    """``spec.delegation``; a ParseError names the field and the value."""
    if not isinstance(raw, dict):
        raise ParseError("spec.delegation must be an object")
    entries = raw.get("nameservers")
    if not isinstance(entries, list) or not entries:
        raise ParseError("spec.delegation.nameservers must list at least one nameserver")
    if len(entries) > MAX_NAMESERVERS:
        raise ParseError(f"spec.delegation.nameservers lists {len(entries)}; at most {MAX_NAMESERVERS}")
    nameservers: list[Nameserver] = []
    for index, entry in enumerate(entries):
        nameserver = _nameserver(entry, f"spec.delegation.nameservers[{index}]", zone)
        if any(n.name == nameserver.name for n in nameservers):
            raise ParseError(f"spec.delegation.nameservers lists {nameserver.name!r} twice")
        nameservers.append(nameserver)
    ttl = raw.get("ttl", DEFAULT_DELEGATION_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= 2**31 - 1:
        raise ParseError(f"spec.delegation.ttl must be 1-2147483647 seconds, not {ttl!r}")
    labels = raw.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ParseError("spec.delegation.labels must map label names to strings")
    return Delegation(tuple(nameservers), ttl, tuple(sorted((str(k), v) for k, v in labels.items())))


def _nameserver(raw: Any, where: str, zone: str) -> Nameserver:
    entry = as_dict(raw)
    name = entry.get("name")
    if not isinstance(name, str) or not is_dns_label(name):
        raise ParseError(f"{where}.name must be a DNS label (lower-case letters, digits and '-'), not {name!r}")
    try:
        check_publishable(f"{name}.{zone}")
    except ValueError as error:
        raise ParseError(f"{where}.name: {error}") from None
    member, service, addresses = entry.get("member"), entry.get("service"), entry.get("addresses")
    if (member is not None or service is not None) == (addresses is not None):
        raise ParseError(f"{where} ({name}) needs member and service, or addresses (not both, not neither)")
    if addresses is not None:
        if not isinstance(addresses, list) or not addresses:
            raise ParseError(f"{where}.addresses must list at least one IP address")
        parsed = []
        for address in addresses:
            try:
                parsed.append(str(ipaddress.ip_address(str(address).strip())))
            except ValueError:
                raise ParseError(f"{where}.addresses: {address!r} is not an IPv4 or IPv6 address") from None
        return Nameserver(name, addresses=tuple(dict.fromkeys(parsed)))
    if not isinstance(member, str) or not is_dns_subdomain(member):
        raise ParseError(f"{where}.member must name a MemberCluster, not {member!r}")
    namespace, slash, service_name = str(service or "").partition("/")
    if not slash or not is_dns_label(namespace) or not is_dns_label(service_name):
        raise ParseError(f"{where}.service must be namespace/name of a Service, not {service!r}")
    return Nameserver(name, member, ObjectRef(namespace, service_name))


def parse_host_namespace(obj: dict[str, Any]) -> HostNamespace:
    meta = _meta(obj)
    return HostNamespace(str(meta.get("name") or ""), {str(k): str(v) for k, v in as_dict(meta.get("labels")).items()})


def parse_member_cluster(obj: dict[str, Any]) -> MemberCluster:
    meta, spec = _meta(obj), as_dict(obj.get("spec"))
    ref = as_dict(spec.get("kubeconfigSecretRef"))
    if not ref.get("namespace") or not ref.get("name"):
        raise ParseError("spec.kubeconfigSecretRef needs namespace and name")
    try:
        location = parse_location(spec.get("location"), "spec.location")
    except DNSViewError:  # the CRD refuses it; an old object still counts as a member, only without a location
        location = None
    return MemberCluster(
        name=meta.get("name", ""), region=str(spec.get("region") or ""), zone=str(spec.get("zone") or ""),
        kubeconfig_secret=SecretKeyRef(str(ref["namespace"]), str(ref["name"]),
                                       str(ref.get("key") or DEFAULT_KUBECONFIG_KEY)),
        location=location, generation=int(meta.get("generation") or 0),
        status=parse_member_cluster_status(obj.get("status")),
        labels={str(k): str(v) for k, v in as_dict(meta.get("labels")).items()},
    )


def parse_member_cluster_status(raw: Any) -> MemberClusterStatus:
    raw = as_dict(raw)
    kinds = tuple(UnavailableKind(str(k.get("kind", "")), int(k.get("code") or 0), str(k.get("message", "")))
                  for k in map(as_dict, as_list(raw.get("unavailableKinds"))))
    return MemberClusterStatus(str(raw.get("state") or ""), parse_conditions(raw.get("conditions")), kinds,
                               int(raw.get("observedGeneration") or 0),
                               tuple(str(k) for k in as_list(raw.get("servedKinds"))))


SELF_SERVICE_PREFIX = "fleetdns.io/"  # the only annotations kept of member objects (aggregator/selfservice/)


def member_meta(meta: dict[str, Any]) -> tuple[dict[str, str], dict[str, str], str]:
    """A member object's labels, its ``fleetdns.io/*`` annotations (others, such as kubectl's last-applied copy,
    are not kept: memory) and its creationTimestamp: what self-service reads of every exposed kind."""
    annotations = {str(k): str(v) for k, v in as_dict(meta.get("annotations")).items()
                   if str(k).startswith(SELF_SERVICE_PREFIX)}
    return ({str(k): str(v) for k, v in as_dict(meta.get("labels")).items()}, annotations,
            str(meta.get("creationTimestamp") or ""))


def parse_owner_references(raw: Any) -> tuple[OwnerReference, ...]:
    return tuple(OwnerReference(str(o.get("apiVersion", "")), str(o.get("kind", "")), str(o.get("name", "")),
                                str(o.get("uid", "")), o.get("controller") is True, o.get("blockOwnerDeletion") is True)
                 for o in map(as_dict, as_list(raw)))


def parse_dns_endpoint(obj: dict[str, Any]) -> DNSEndpointObject:
    """Every DNSEndpoint is watched (a foreign one may hold an intent's name); the records are kept only
    for those labelled as ours, the only ones ever compared with what we would write."""
    meta = _meta(obj)
    labels = dict(as_dict(meta.get("labels")))
    endpoints = tuple(as_list(as_dict(obj.get("spec")).get("endpoints"))) if LABEL_INTENT_KIND in labels else ()
    return DNSEndpointObject(
        namespace=meta.get("namespace", ""), name=meta.get("name", ""), labels=labels, endpoints=endpoints,
        owners=parse_owner_references(meta.get("ownerReferences")),
        resource_version=str(meta.get("resourceVersion", "")), uid=str(meta.get("uid") or ""),
    )


@dataclass(frozen=True)
class DNSViewObject:
    """A DNSView as the host holds it: the view (None when it cannot be read: ``problem`` says why) and the
    status the aggregator last wrote on it."""

    name: str
    view: DNSView | None
    problem: str = ""
    generation: int = 0
    conditions: tuple[Condition, ...] = field(default=(), compare=False)  # ours: a status-only change is no change


def parse_dns_view_object(obj: dict[str, Any]) -> DNSViewObject:
    """Never fails on a bad spec (dropping the object would hide it): the problem is reported on its status."""
    meta = _meta(obj)
    generation = meta.get("generation")
    name, generation = str(meta.get("name") or ""), generation if isinstance(generation, int) else 0
    conditions = parse_conditions(as_dict(obj.get("status")).get("conditions"))
    try:
        return DNSViewObject(name, parse_dns_view(obj), "", generation, conditions)
    except DNSViewError as error:
        return DNSViewObject(name, None, str(error), generation, conditions)
