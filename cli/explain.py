"""``fleetdns explain NAME``: why a client gets the addresses it gets, from the facts the system wrote, and whether
each regional CoreDNS serves them now.

The chain, as the aggregator left it: the DNSEndpoint holding NAME names its intent (labels); the intent's status
says each cluster's health as each region reports it, the quorum's verdict and the policy's answer per view; the
DNSViews say which view a client address falls into; the DNSEndpoint's targets for that view are what every region
should serve; ``--dns`` servers are asked live, as the client would ask (its address as the EDNS client subnet, and as
the source address when this machine has it), and any difference is a warning (exit code 4).
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any

from cli.dnsquery import Server, ask
from cli.facts import items
from fleetdns.apipaths import DNS_ENDPOINTS, DNS_VIEWS, INTENT_RESOURCES, Resource
from fleetdns.dnsname import normalize_name
from fleetdns.dnsview import VIEW_PROPERTY, DNSView, DNSViewError, accept_views, parse_dns_view, region_view_name
from fleetdns.endpoint import Endpoint, EndpointFormatError
from fleetdns.kubeapi import KubeClient
from fleetdns.labels import (
    ANNOTATION_SOURCE_CLUSTERS,
    LABEL_DISCOVERY_RULE,
    LABEL_GENERATED_BY,
    LABEL_INTENT_KIND,
    LABEL_INTENT_NAME,
    LABEL_SOURCE_KIND,
)

ADDRESS_TYPES = ("A", "AAAA", "CNAME")


class NotFound(Exception):
    """No intent publishes the name (exit code 3)."""


@dataclass(frozen=True)
class RegionAnswer:
    """One region: the view its CoreDNS answers this client from, what it should serve and what it serves."""

    region: str
    view: str
    should: dict[str, list[str]]
    server: str = ""  # "" when not asked (no --dns for it)
    serves: dict[str, list[str]] = field(default_factory=dict)
    problem: str = ""  # no answer, an rcode, or the difference
    note: str = ""  # what the live answer could not show

    @property
    def matches(self) -> bool:
        return not self.problem


@dataclass(frozen=True)
class Explanation:
    name: str
    intent: dict[str, str]
    policy: str
    clusters: list[dict[str, Any]]
    view_reason: str
    answers: list[dict[str, Any]]  # the intent's status.answers: each view's clusters and reason
    regions: list[RegionAnswer]

    @property
    def ok(self) -> bool:
        return all(r.matches for r in self.regions)

    def to_json(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "regions"},
                "regions": [{**asdict(r), "matches": r.matches} for r in self.regions], "consistent": self.ok}


def explain(host: KubeClient, name: str, client: str, regions: list[str], servers: dict[str, Server]) -> Explanation:
    fqdn = normalize_name(name)
    owner, endpoints = _published(host, fqdn)
    resource = next(r for r in INTENT_RESOURCES if r.kind == owner["kind"])
    intent = host.get(resource.path(owner["namespace"], owner["name"]))
    status = intent.get("status") or {}
    views = _accepted_views(host)
    matched, reason = _client_view(views, client)
    known = sorted({str(e.get("region") or "") for e in status.get("dns") or []} | set(servers) - {""})
    answers = [_region_answer(region, matched or region_view_name(region), endpoints, servers.get(region), fqdn,
                              client, by_network=bool(matched)) for region in (regions or known)]
    return Explanation(fqdn, _origin(resource, intent), str(((intent.get("spec") or {}).get("loadBalancing") or {})
                                                            .get("policy") or "RoundRobin"),
                       list(status.get("dns") or []), reason, list(status.get("answers") or []), answers)


def _published(host: KubeClient, fqdn: str) -> tuple[dict[str, str], list[Endpoint]]:
    """The intent publishing ``fqdn`` and its endpoints for that name (every view's)."""
    for obj in items(host, DNS_ENDPOINTS, label_selector=LABEL_INTENT_KIND):  # the aggregator's only
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        found = []
        for raw in (obj.get("spec") or {}).get("endpoints") or []:
            try:
                endpoint = Endpoint.from_json(raw)
            except EndpointFormatError:
                continue
            if normalize_name(endpoint.dns_name) == fqdn:
                found.append(endpoint)
        if found:
            return ({"kind": labels[LABEL_INTENT_KIND], "name": labels.get(LABEL_INTENT_NAME, ""),
                     "namespace": str(meta.get("namespace") or "")}, found)
    raise NotFound(f"no intent publishes {fqdn}: no DNSEndpoint of the aggregator holds it (a typo, a name outside "
                   f"every Domain, or an intent not Ready: `fleetdns status` lists those)")


def _origin(resource: Resource, intent: dict[str, Any]) -> dict[str, str]:
    meta = intent.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    by = labels.get(LABEL_GENERATED_BY)
    if not by:
        origin = "hand-written"
    else:
        origin = (f"generated by {by} from {labels.get(LABEL_SOURCE_KIND, 'a member object')} in "
                  f"{annotations.get(ANNOTATION_SOURCE_CLUSTERS) or 'the members'}")
        if labels.get(LABEL_DISCOVERY_RULE):
            origin += f" (DiscoveryRule {labels[LABEL_DISCOVERY_RULE]})"
    return {"kind": resource.kind, "namespace": str(meta.get("namespace") or ""), "name": str(meta.get("name") or ""),
            "origin": origin}


def _accepted_views(host: KubeClient) -> tuple[DNSView, ...]:
    views = []
    for obj in items(host, DNS_VIEWS):
        try:
            views.append(parse_dns_view(obj))
        except DNSViewError:
            continue  # not served; its status says why
    return accept_views(views)[0]


def _client_view(views: tuple[DNSView, ...], client: str) -> tuple[str, str]:
    """The DNSView a client address selects by its network ("" none) and why: the same rule CoreDNS's blocks
    apply (clientCIDRs first; countries and continents need GeoIP, which only the live answer shows)."""
    if not client:
        return "", "no --client: each region answers from its own region view (unless a DNSView matches the resolver)"
    address = ipaddress.ip_address(client)
    for view in views:
        network = next((n for n in view.client_cidrs if address.version == n.version and address in n), None)
        if network is not None:
            return view.name, f"{client} is in {network}, a clientCIDR of DNSView {view.name}"
    geo = [v.name for v in views if v.countries or v.continents]
    if geo:
        return "", (f"{client} matches no DNSView's clientCIDRs; GeoIP may place it in {', '.join(geo)} (the live "
                    f"answers show it), else each region answers from its region view")
    return "", f"{client} matches no DNSView: each region answers from its own region view"


def _region_answer(region: str, view: str, endpoints: list[Endpoint], server: Server | None, fqdn: str,
                   client: str, by_network: bool) -> RegionAnswer:
    should = _targets(endpoints, view)
    if server is None:
        return RegionAnswer(region, view, should, note="not asked: give --dns for this region")
    serves: dict[str, list[str]] = {}
    for rdtype in ADDRESS_TYPES:
        reply = ask(server, fqdn, rdtype, client)
        if not reply.answered or reply.rcode != "NOERROR":
            return RegionAnswer(region, view, should, str(server), serves,
                                reply.error or f"{rdtype} query answered {reply.rcode}")
        if by_network and not reply.as_client:
            return RegionAnswer(region, view, should, str(server), note=(
                f"not verifiable from here: view {view} matches the resolver's address, and this machine cannot "
                f"ask from {client}"))
        if reply.values:
            serves[rdtype] = list(reply.values)
    if serves != should:
        return RegionAnswer(region, view, should, str(server), serves,
                            f"serves {_show(serves)}, should serve {_show(should)}")
    return RegionAnswer(region, view, should, str(server), serves)


def _targets(endpoints: list[Endpoint], view: str) -> dict[str, list[str]]:
    """What a view serves for the name: its own endpoints where it has them, else the default ones (a view's zone
    file is the default records overlaid name by name by the view's)."""
    own = [e for e in endpoints if e.provider_specific_value(VIEW_PROPERTY) == view]
    chosen = own or [e for e in endpoints if not e.provider_specific_value(VIEW_PROPERTY)]
    out: dict[str, list[str]] = {}
    for endpoint in chosen:
        if endpoint.record_type in ADDRESS_TYPES and endpoint.targets:
            values = [t.rstrip(".") + "." if endpoint.record_type == "CNAME" else t for t in endpoint.targets]
            out.setdefault(endpoint.record_type, []).extend(values)
    return {rdtype: sorted(set(values)) for rdtype, values in out.items()}


def _show(records: dict[str, list[str]]) -> str:
    return "; ".join(f"{rdtype} {', '.join(values)}" for rdtype, values in sorted(records.items())) or "nothing"
