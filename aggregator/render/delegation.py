"""A Domain's delegation (docs/design/delegation.md), pure: which addresses each nameserver publishes (the current
ones, else the last published, never an empty NS set), the Delegated condition, and the two DNSEndpoints: the
parent zone's NS and glue (for the parent's ExternalDNS) and the zone's own A/AAAA of its nameservers (for the
regions').
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aggregator.model import Condition, Delegation, Domain, OwnerReference
from aggregator.render.events import NORMAL, WARNING, Event
from aggregator.render.records import sort_endpoints
from fleetdns.apipaths import DNS_ENDPOINTS, DOMAINS
from fleetdns.dnsname import InvalidDNSNameError, normalize_name
from fleetdns.endpoint import NAMESERVER_PROPERTY, Endpoint, ProviderSpecificProperty, RecordType

DELEGATED = "Delegated"  # the Domain's condition
PUBLISHED = "Published"  # True: every nameserver has its current addresses
ADDRESSES_KEPT = "AddressesKept"  # False: a nameserver kept its last published addresses, or was left out
NOTHING_TO_PUBLISH = "NothingToPublish"  # False: no nameserver ever had an address; nothing written
INVALID_DELEGATION = "InvalidDelegation"  # False: spec.delegation cannot be used; what was published stays
DELEGATION_CONFLICT = "NameConflict"  # False: a DNSEndpoint of that name is not ours; left untouched
# What selects the delegation's DNSEndpoints: the parent's ExternalDNS takes publish=parent, the regions' every other
LABEL_PUBLISH = "fleetdns.io/publish"
PUBLISH_PARENT = "parent"
PUBLISH_ZONE = "zone"
LABEL_DOMAIN = "fleetdns.io/domain"


@dataclass(frozen=True)
class Seen:
    """What the member caches say of one nameserver's Service now: its IPs, or why there are none."""

    addresses: tuple[str, ...] = ()
    problem: str = ""


@dataclass(frozen=True)
class DelegationPlan:
    """The addresses to publish per nameserver (fully qualified; empty: write nothing, keep what is published) and
    the Delegated condition (not yet stamped)."""

    zone: str
    glue: Mapping[str, tuple[str, ...]]
    condition: Condition
    ttl: int = 300
    labels: tuple[tuple[str, str], ...] = field(default=())


def delegation_zone(domain: Domain) -> str:
    """The Domain's zone, normalised ("" when it is no DNS name)."""
    try:
        return normalize_name(domain.domain)
    except InvalidDNSNameError:
        return ""


def plan_delegation(zone: str, delegation: Delegation, seen: Mapping[str, Seen],
                    published: Mapping[str, tuple[str, ...]]) -> DelegationPlan:
    """Each nameserver's addresses: fixed ones, else the Service's current IPs, else those last ``published``
    (fully qualified name -> addresses), else it is left out; when none has any, nothing is written."""
    glue: dict[str, tuple[str, ...]] = {}
    notes: list[str] = []
    for nameserver in delegation.nameservers:
        fqdn = nameserver.fqdn(zone)
        if nameserver.addresses:
            glue[fqdn] = sorted_ips(nameserver.addresses)
            continue
        now = seen.get(nameserver.name, Seen(problem="not observed yet"))
        if now.addresses:
            glue[fqdn] = sorted_ips(now.addresses)
            continue
        kept = published.get(fqdn)
        if kept:
            glue[fqdn] = kept
            notes.append(f"{fqdn} keeps its last published addresses ({', '.join(kept)}): {now.problem}")
        else:
            notes.append(f"{fqdn} is left out of the NS set (no address published yet): {now.problem}")

    def plan(status: str, reason: str, message: str) -> DelegationPlan:
        return DelegationPlan(zone, glue, Condition(DELEGATED, status, reason, message), delegation.ttl,
                              delegation.labels)

    if not glue:
        return plan("False", NOTHING_TO_PUBLISH,
                    f"nothing is published for {zone} (an NS set is never emptied): " + "; ".join(notes))
    if notes:
        return plan("False", ADDRESSES_KEPT, "; ".join(notes))
    listed = "; ".join(f"{name} {', '.join(addresses)}" for name, addresses in sorted(glue.items()))
    return plan("True", PUBLISHED, f"{zone} is delegated to {listed}")


def not_delegated(reason: str, message: str) -> Condition:
    return Condition(DELEGATED, "False", reason, message)


def sorted_ips(addresses: Iterable[str]) -> tuple[str, ...]:
    """Each address once, IPv4 before IPv6, in numeric order."""
    ips = {ipaddress.ip_address(address) for address in addresses}
    return tuple(str(ip) for ip in sorted(ips, key=lambda ip: (ip.version, ip)))


def published_glue(endpoints: Iterable[Any]) -> dict[str, tuple[str, ...]]:
    """The A/AAAA addresses per name of an existing delegation DNSEndpoint's ``spec.endpoints`` (raw JSON)."""
    found: dict[str, set[str]] = {}
    for raw in endpoints:
        if not isinstance(raw, dict) or raw.get("recordType") not in ("A", "AAAA"):
            continue
        try:
            name = normalize_name(str(raw.get("dnsName") or ""))
        except InvalidDNSNameError:
            continue
        for target in raw.get("targets") or ():
            try:
                found.setdefault(name, set()).add(str(ipaddress.ip_address(str(target))))
            except ValueError:
                continue
    return {name: sorted_ips(addresses) for name, addresses in found.items()}


def address_endpoints(name: str, addresses: tuple[str, ...], ttl: int,
                      properties: tuple[ProviderSpecificProperty, ...] = ()) -> list[Endpoint]:
    """A and AAAA over ``addresses`` (one endpoint per family present)."""
    out = []
    for version, record_type in ((4, RecordType.A), (6, RecordType.AAAA)):
        targets = tuple(a for a in addresses if ipaddress.ip_address(a).version == version)
        if targets:
            out.append(Endpoint(name, record_type, targets, record_ttl=ttl, provider_specific=properties))
    return out


def parent_records(plan: DelegationPlan) -> list[Endpoint]:
    """For the parent zone: ``<zone> NS`` every nameserver, and their glue."""
    records = [Endpoint(plan.zone, RecordType.NS, tuple(sorted(plan.glue)), record_ttl=plan.ttl)]
    for name, addresses in plan.glue.items():
        records += address_endpoints(name, addresses, plan.ttl)
    return sort_endpoints(records)


def zone_records(plan: DelegationPlan) -> list[Endpoint]:
    """For the zone itself: its nameservers' A/AAAA, marked so the zone files list them as the apex NS."""
    marked = (ProviderSpecificProperty(NAMESERVER_PROPERTY, "true"),)
    return sort_endpoints([record for name, addresses in plan.glue.items()
                           for record in address_endpoints(name, addresses, plan.ttl, marked)])


def parent_endpoint_name(domain: str) -> str:
    return f"fleetdns-delegation-{domain}"


def zone_endpoint_name(domain: str) -> str:
    return f"fleetdns-nameservers-{domain}"


def domain_owner(domain: Domain) -> OwnerReference:
    """The Domain as the controlling owner of its delegation's DNSEndpoints (garbage collection)."""
    return OwnerReference(DOMAINS.api_version, DOMAINS.kind, domain.name, domain.uid, controller=True)


def delegation_labels(domain: str, publish: str, extra: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    return {**dict(extra), LABEL_PUBLISH: publish, LABEL_DOMAIN: domain}


def render_delegation_endpoints(domain: Domain, plan: DelegationPlan) -> list[dict[str, Any]]:
    """The parent's DNSEndpoint and the zone's, in the Domain's namespace, owned by the Domain."""
    bodies = []
    for name, publish, records, extra in (
            (parent_endpoint_name(domain.name), PUBLISH_PARENT, parent_records(plan), plan.labels),
            (zone_endpoint_name(domain.name), PUBLISH_ZONE, zone_records(plan), ())):
        body = DNS_ENDPOINTS.manifest(name, domain.namespace, spec={"endpoints": [e.to_json() for e in records]})
        body["metadata"]["labels"] = delegation_labels(domain.name, publish, extra)
        body["metadata"]["ownerReferences"] = [domain_owner(domain).to_json()]
        bodies.append(body)
    return bodies


def is_ours(labels: Mapping[str, str], owners: Iterable[OwnerReference], domain: str) -> bool:
    """A delegation DNSEndpoint of Domain ``domain``: our labels and an ownerReference to a Domain of that name (any
    UID: an earlier object of the same Domain is adopted, as for intents)."""
    return labels.get(LABEL_DOMAIN) == domain and labels.get(LABEL_PUBLISH) in (PUBLISH_PARENT, PUBLISH_ZONE) and any(
        o.kind == DOMAINS.kind and o.group == DOMAINS.group and o.name == domain for o in owners)


def delegation_event(old: Condition | None, new: Condition) -> Event | None:
    """One event when the Delegated condition changes (its status, reason or message: the addresses are in it)."""
    if old is not None and (old.status, old.reason, old.message) == (new.status, new.reason, new.message):
        return None
    return Event(NORMAL if new.status == "True" else WARNING, new.reason, new.message)
