"""Desired DNS records of an intent, as ExternalDNS endpoints, and the DNSEndpoint that carries them:
pure, deterministic, sorted. A source lays out its names (``Layout``, aggregator/sources/), the policy answers every
slot at once (``Selector.answer_all``), and ``render_records`` turns the two into records without asking the policy.

Hostname rule: a name gets A/AAAA records over the IP addresses of its healthy clusters: those their
load balancers give, and those their load-balancer hostnames resolved to (``loadBalancerHostnames:
Resolve``, the default; see lb_hostnames.py). In the CNAME form nothing is resolved: clusters whose load
balancer gives only a hostname count for that name only when no cluster gives an IP, and then the name is
a CNAME to one hostname (the first in cluster-name order), because a CNAME has exactly one target and
cannot share its name with A records. (Resolved, a healthy cluster always has an IP, so no CNAME arises.)
Who is in each name's answer is the policy's choice (aggregator/policy/loadbalancing.py): callers pass its answers.

Views: under a location policy a name has its default answer (no setIdentifier) and one answer per client view,
each endpoint with ``setIdentifier`` = the view (ExternalDNS keeps same-name endpoints apart by it) and the
providerSpecific ``webhook/view`` = the view (what the webhook files it under, /skydns-<view>/).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aggregator.model import ClusterStatus, IntentKey, OwnerReference
from aggregator.policy.loadbalancing import (
    Answers,
    NameAnswer,
    Pick,
    Selector,
    Slot,
    ViewPick,
    address_weights,
    published_ips,
)
from fleetdns.apipaths import DNS_ENDPOINTS, Resource
from fleetdns.dnsview import VIEW_PROPERTY
from fleetdns.endpoint import Endpoint, ProviderSpecificProperty, RecordType
from fleetdns.labels import LABEL_INTENT_KIND, LABEL_INTENT_NAME
from fleetdns.weights import WEIGHTS_PROPERTY, format_weights


@dataclass(frozen=True)
class Problem:
    """Why nothing of an intent is published (Ready=False with ``reason``), and the zone its status shows then."""

    zone: str
    reason: str  # DomainNotFound, InvalidName, NoHostnames
    message: str
    once_answered: bool = False  # it stands only when the anchor answers (nothing would be published before)


@dataclass(frozen=True)
class Layout:
    """The names an intent publishes, laid out by its source before the policy answers them: each slot's records
    are the policy's answer for it, else a CNAME to its fallback (KubeFed's region and zone names), else none;
    fixed CNAMEs (``dnsPrefix``); and what the status reports besides the records."""

    slots: tuple[Slot, ...] = ()
    fallbacks: Mapping[str, str] = field(default_factory=dict)  # slot name -> the name it is a CNAME to
    cnames: tuple[tuple[str, str], ...] = ()  # (name, target), whatever answers
    anchor: str = ""  # nothing is published while this slot gets no records (the Service's global name)
    zone: str = ""  # status.domain
    fqdn: str = ""  # status.fqdn
    problem: Problem | None = None


def render_records(layout: Layout, answers: Answers, ttl: int) -> list[Endpoint]:
    """The layout's records from the policy's answers (one per slot), sorted; nothing when the anchor has none."""
    records: list[Endpoint] = []
    for slot in layout.slots:
        answered = name_records(slot.name, answers[slot.name], ttl)
        if not answered and slot.name == layout.anchor:
            return []
        fallback = layout.fallbacks.get(slot.name)
        records += answered or ([cname(slot.name, fallback, ttl)] if fallback else [])
    records += [cname(name, target, ttl) for name, target in layout.cnames]
    return sort_endpoints(records)


def answered_records(layout: Layout, selector: Selector, ttl: int) -> list[Endpoint]:
    """The layout's records as ``selector`` answers them, asked once for every slot (plan.py's last stages, for
    callers that hold a Selector of their own)."""
    return render_records(layout, selector.answer_all(layout.slots), ttl)


def name_records(name: str, answer: NameAnswer, ttl: int) -> list[Endpoint]:
    """A name's records: its default answer, then (location policies) its answer in each client view; nothing
    when the default answer is empty."""
    default = address_records(name, answer.pick, ttl)
    return default + view_records(name, answer.views, ttl) if default else []


def address_records(name: str, clusters: Iterable[ClusterStatus] | Pick, ttl: int) -> list[Endpoint]:
    """A/AAAA over the clusters' IPs (given or resolved, without those the probers' quorum sees Down), else a
    CNAME to the first hostname; nothing when neither. A Weighted pick carries per-address weights on each
    A/AAAA record (``webhook/weights``, fleetdns/weights.py), each family its own."""
    pick = clusters if isinstance(clusters, Pick) else Pick(tuple(clusters))
    ordered = sorted(pick.clusters, key=lambda c: c.cluster)
    by_cluster = {c.cluster: published_ips(c) for c in ordered}
    ips = {ipaddress.ip_address(ip) for addresses in by_cluster.values() for ip in addresses}
    records = []
    for version, record_type in ((4, RecordType.A), (6, RecordType.AAAA)):
        targets = tuple(sorted(str(ip) for ip in ips if ip.version == version))
        if not targets:
            continue
        properties: tuple[ProviderSpecificProperty, ...] = ()
        if pick.weights is not None:
            weights = format_weights(address_weights(pick.weights, by_cluster, version))
            properties = (ProviderSpecificProperty(WEIGHTS_PROPERTY, weights),)
        records.append(Endpoint(name, record_type, targets, record_ttl=ttl, provider_specific=properties))
    if not records:
        hostnames = [a.hostname for c in ordered for a in c.addresses if a.hostname]
        if hostnames:
            records.append(cname(name, hostnames[0], ttl))
    return records


def answer_records(name: str, candidates: Sequence[ClusterStatus], selector: Selector, ttl: int) -> list[Endpoint]:
    """One name's records over ``candidates``, as ``selector`` answers it (``name_records``)."""
    return name_records(name, selector.answer_all([Slot(name, tuple(candidates))])[name], ttl)


def served_names(listed: Sequence[str], clusters: Iterable[ClusterStatus]) -> tuple[str, ...]:
    """The names the clusters serve (``ClusterStatus.hosts``, for sources whose names come from member objects): in
    the order of ``listed`` (the intent's ``spec.hosts``) when it lists any, else sorted; the first is the fqdn."""
    served = {host for cluster in clusters for host in cluster.hosts}
    if listed:
        return tuple(dict.fromkeys(host for host in listed if host in served))
    return tuple(sorted(served))


def served_slots(names: Iterable[str], clusters: Sequence[ClusterStatus]) -> tuple[Slot, ...]:
    """Each name, answered by the clusters that serve it (``ClusterStatus.hosts``)."""
    return tuple(Slot(name, tuple(c for c in clusters if name in c.hosts)) for name in names)


def served_records(names: Iterable[str], clusters: Sequence[ClusterStatus], selector: Selector,
                   ttl: int) -> list[Endpoint]:
    """Each name answered by the clusters that serve it (``ClusterStatus.hosts``), sorted."""
    return answered_records(Layout(served_slots(names, clusters)), selector, ttl)


def view_records(name: str, views: Iterable[ViewPick], ttl: int) -> list[Endpoint]:
    """The name's records in each view, marked with the view (setIdentifier and ``webhook/view``)."""
    return [replace(record, set_identifier=view.view,
                    provider_specific=(*record.provider_specific, ProviderSpecificProperty(VIEW_PROPERTY, view.view)))
            for view in views for record in address_records(name, view.pick, ttl)]


def cname(name: str, target: str, ttl: int) -> Endpoint:
    return Endpoint(name, RecordType.CNAME, (target,), record_ttl=ttl)


def sort_endpoints(records: list[Endpoint]) -> list[Endpoint]:
    return sorted(records, key=lambda e: (e.dns_name, e.record_type, e.set_identifier))


def render_dns_endpoint(key: IntentKey, name: str, owner: Resource, intent_uid: str,
                        endpoints: list[Endpoint]) -> dict[str, Any]:
    """The DNSEndpoint ``name`` for intent ``key`` (of resource ``owner``); owned by the intent
    (garbage collection on real clusters)."""
    body = DNS_ENDPOINTS.manifest(name, key.namespace, spec={"endpoints": [e.to_json() for e in endpoints]})
    body["metadata"]["labels"] = dns_endpoint_labels(key)
    body["metadata"]["ownerReferences"] = [intent_owner(key, owner, intent_uid).to_json()]
    return body


def intent_owner(key: IntentKey, owner: Resource, uid: str) -> OwnerReference:
    """The intent as the controlling owner of its DNSEndpoint (garbage collection on real clusters)."""
    return OwnerReference(owner.api_version, owner.kind, key.name, uid, controller=True)


def dns_endpoint_labels(key: IntentKey) -> dict[str, str]:
    return {LABEL_INTENT_KIND: str(key.kind), LABEL_INTENT_NAME: key.name}
