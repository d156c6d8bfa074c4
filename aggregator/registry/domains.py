"""Who may publish a name under a Domain (docs/design/sources.md §4): pure rules over parsed Domains and the
labels of the intent's host namespace.

- **Names outside the Domain.** An intent with a ``domainRef`` publishes only names under that Domain's zone.
- **Who may use a Domain.** A name is judged by the most specific Domain covering it (the longest zone it is
  equal to or under), looked up where a ``domainRef`` is: in the intent's namespace, and in the aggregator's
  domain namespace. In each of the two the most specific covering Domain (all of them, when several name the
  same zone) must admit the intent's namespace by its ``spec.namespaceSelector`` (empty: every namespace). So
  the platform delegates with a more specific Domain of its own, and a Domain a team writes in its own
  namespace never widens what the platform's Domains allow. A name no Domain covers is not judged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aggregator.model import Domain
from fleetdns.dnsname import InvalidDNSNameError, is_within, normalize_name

NAME_OUTSIDE_DOMAIN = "NameOutsideDomain"
NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"


@dataclass(frozen=True)
class DomainLookup:
    """The Domain an intent's ``domainRef`` names, read once per reconcile: the sources and the guard rails look it
    up here (``Domains``, aggregator/sources/base.py), so they all see the same Domain and call nothing back."""

    domain_namespace: str
    found: Mapping[tuple[str, str], Domain] = field(default_factory=dict)  # (namespace, name) -> Domain

    @classmethod
    def read(cls, domain: Callable[[str, str], Domain | None], domain_namespace: str, namespace: str,
             ref: str) -> DomainLookup:
        """Domain ``ref`` in the intent's ``namespace`` and in the domain namespace (none when ``ref`` is empty):
        only the Domain named by ``Source.domain_ref``, the one whose changes re-queue the intent."""
        places = dict.fromkeys((namespace, domain_namespace)) if ref else {}
        return cls(domain_namespace, {(place, ref): found for place in places
                                      if (found := domain(place, ref)) is not None})

    def find(self, namespace: str, name: str) -> Domain | None:
        """The intent's namespace first, then the aggregator's domain namespace."""
        return self.found.get((namespace, name)) or self.found.get((self.domain_namespace, name))

    def searched(self, namespace: str) -> str:
        return f"{namespace} or {self.domain_namespace}"


@dataclass(frozen=True)
class Refusal:
    """A name the intent may not publish, and why (the message names the Domain and what to change)."""

    name: str
    reason: str  # NameOutsideDomain or NamespaceNotAllowed
    message: str


@dataclass(frozen=True)
class NamespaceLabels:
    """The intent's host namespace as the aggregator knows it: its labels, or why they are unknown."""

    name: str
    labels: Mapping[str, str] | None  # None: unknown (not in the cache, or namespaces cannot be listed)
    unknown: str = ""


def zone(domain: Domain) -> str:
    """The Domain's zone, normalised ("" when it is no DNS name: such a Domain covers nothing)."""
    try:
        return normalize_name(domain.domain)
    except InvalidDNSNameError:
        return ""


def most_specific(name: str, domains: Iterable[Domain]) -> tuple[Domain, ...]:
    """The Domains covering ``name`` with the longest zone (several when they name the same zone)."""
    covering = [(z, d) for d in domains if (z := zone(d)) and is_within(name, z)]
    longest = max((len(z) for z, _ in covering), default=0)
    return tuple(sorted((d for z, d in covering if len(z) == longest), key=lambda d: (d.namespace, d.name)))


def admission(domain: Domain, namespace: NamespaceLabels) -> str:
    """Why the Domain does not admit the namespace ("" when it does)."""
    where = f"Domain {domain.namespace}/{domain.name} ({zone(domain)})"
    if domain.selector_problem:
        return f"{where} admits no namespace: its spec.namespaceSelector cannot be read ({domain.selector_problem})"
    selector = domain.namespace_selector
    if selector.selects_everything:
        return ""
    if namespace.labels is None:
        return (f"{where} admits namespaces matching {selector}; the labels of namespace {namespace.name} are "
                f"unknown ({namespace.unknown or 'not seen yet'})")
    if selector.matches(namespace.labels):
        return ""
    return f"{where} admits namespaces matching {selector}; namespace {namespace.name} does not match"


def judge_names(names: Iterable[str], namespace: NamespaceLabels, home: Domain | None,
                scopes: Sequence[Sequence[Domain]]) -> dict[str, Refusal]:
    """The refused names (normalised) and why. ``home``: the intent's ``domainRef`` Domain (None: no domainRef);
    ``scopes``: the Domains of the intent's namespace and those of the domain namespace."""
    home_zone = zone(home) if home is not None else ""
    refused: dict[str, Refusal] = {}
    for name in sorted(set(names)):
        if home is not None and not (home_zone and is_within(name, home_zone)):
            refused[name] = Refusal(name, NAME_OUTSIDE_DOMAIN,
                                    f"{name} is not under Domain {home.namespace}/{home.name} ({home_zone})")
            continue
        why = next((reason for scope in scopes for domain in most_specific(name, scope)
                    if (reason := admission(domain, namespace))), "")
        if why:
            refused[name] = Refusal(name, NAMESPACE_NOT_ALLOWED, f"{name}: {why}")
    return refused
