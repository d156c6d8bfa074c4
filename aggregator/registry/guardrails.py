"""The guard rails between render and write (docs/design/sources.md §4): of the names an intent's source
rendered, only those it may publish stay. A name is refused when it is outside the intent's Domain or its
namespace is not admitted by the Domains covering it (aggregator/registry/domains.py), or when another intent claimed
it first (aggregator/registry/claims.py). The rest is published; the refusals become the conditions
``HostnamesAllowed`` and ``HostnamesClaimed``.

Generic over sources: it looks only at the rendered endpoints' names (every record type, every view), so a
source whose names come from member objects is guarded like one whose names come from its spec.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from aggregator.model import Condition, Domain, IntentKey
from aggregator.registry.claims import Claimant, ClaimRegistry, Seed
from aggregator.registry.domains import (
    NAME_OUTSIDE_DOMAIN,
    NAMESPACE_NOT_ALLOWED,
    NamespaceLabels,
    Refusal,
    judge_names,
)
from aggregator.render.status import DOMAIN_NOT_FOUND, HOSTNAMES_ALLOWED, HOSTNAMES_CLAIMED
from aggregator.sources.base import Desired, Domains, Source
from aggregator.sources.intent import Intent
from fleetdns.dnsname import InvalidDNSNameError, normalize_name

logger = logging.getLogger("aggregator.guardrails")
CLAIMED_BY_ANOTHER_INTENT = "ClaimedByAnotherIntent"
LISTED = 10  # names listed in a condition's message; the rest are counted


class GuardInputs(Protocol):
    """What the guard rails read; the Engine implements it over its caches."""

    def namespace_labels(self, namespace: str) -> NamespaceLabels: ...

    def domains_in(self, namespace: str) -> Sequence[Domain]: ...

    def published_names(self) -> Seed:
        """Every intent with the names its own DNSEndpoint publishes now (seeds the claims)."""
        ...

    def requeue(self, keys: Iterable[IntentKey]) -> None:
        """Reconcile these intents again (a name they wait for was let go, or they lost one)."""
        ...


class GuardRails:
    def __init__(self, inputs: GuardInputs, domain_namespace: str) -> None:
        self.inputs = inputs
        self.domain_namespace = domain_namespace
        self.claims = ClaimRegistry()

    def apply(self, intent: Intent, source: Source[Any], desired: Desired, domains: Domains) -> Desired:
        """The records the intent may publish, with the guard rails' conditions on its outcome."""
        names = _names(desired)
        ref = source.domain_ref(intent)
        home = domains.find(intent.namespace, ref) if ref else None
        if ref and home is None and not desired.outcome.problem:
            self.release(intent.key)
            return Desired([], replace(desired.outcome, published_records=0, problem=DOMAIN_NOT_FOUND,
                                       problem_message=f"no Domain {ref!r} in namespace "
                                                       f"{domains.searched(intent.namespace)}"))
        refused = judge_names(names, self.inputs.namespace_labels(intent.namespace), home, self._scopes(intent))
        claimed = self.claims.claim(Claimant.of(intent.key, intent.created), names - refused.keys(),
                                    self.inputs.published_names)
        if claimed.requeue:
            self.inputs.requeue(claimed.requeue)
        held = {name: f"{owner}" for name, owner in claimed.refused.items()}
        if refused or held:
            logger.info("names refused", extra={"intent": str(intent.key), "refused": sorted(refused),
                                                "claimed_elsewhere": held})
        kept = [e for e in desired.endpoints if _name(e.dns_name) not in refused and _name(e.dns_name) not in held]
        conditions = (_allowed(refused), _claimed(held))
        outcome = replace(desired.outcome, published_records=len(kept), guard=conditions)
        if desired.endpoints and not kept and not outcome.problem:
            refusal = next(c for c in conditions if c.status == "False")
            outcome = replace(outcome, problem=refusal.reason, problem_message=f"no name can be published: "
                                                                               f"{refusal.message}")
        return Desired(kept, outcome)

    def release(self, key: IntentKey) -> None:
        """The intent publishes nothing any more (deleted, or its DNSEndpoint is not ours to write)."""
        self.inputs.requeue(self.claims.release(key))

    def reset(self) -> None:
        """Leadership gained: claims start again from what is published."""
        self.claims.reset()

    def _scopes(self, intent: Intent) -> list[Sequence[Domain]]:
        places = dict.fromkeys((intent.namespace, self.domain_namespace))
        return [self.inputs.domains_in(namespace) for namespace in places]


def _name(name: str) -> str:
    try:
        return normalize_name(name)
    except InvalidDNSNameError:
        return name


def _names(desired: Desired) -> set[str]:
    return {_name(endpoint.dns_name) for endpoint in desired.endpoints}


def _listing(items: list[str]) -> str:
    more = len(items) - LISTED
    return "; ".join(items[:LISTED]) + (f"; and {more} more" if more > 0 else "")


def _allowed(refused: Mapping[str, Refusal]) -> Condition:
    if not refused:
        return Condition(HOSTNAMES_ALLOWED, "True", "Allowed",
                         "every name is under the intent's Domain and admitted by the Domains covering it")
    reasons = {r.reason for r in refused.values()}
    reason = NAME_OUTSIDE_DOMAIN if NAME_OUTSIDE_DOMAIN in reasons else NAMESPACE_NOT_ALLOWED
    return Condition(HOSTNAMES_ALLOWED, "False", reason,
                     f"not published: {_listing([r.message for r in refused.values()])}")


def _claimed(held: Mapping[str, str]) -> Condition:
    if not held:
        return Condition(HOSTNAMES_CLAIMED, "True", "Claimed", "no other intent claimed its names first")
    by_owner: dict[str, list[str]] = {}
    for name, owner in sorted(held.items()):
        by_owner.setdefault(owner, []).append(name)
    parts = [f"{', '.join(names)} claimed first by {owner}" for owner, names in sorted(by_owner.items())]
    return Condition(HOSTNAMES_CLAIMED, "False", CLAIMED_BY_ANOTHER_INTENT,
                     f"not published: {_listing(parts)}; published once the owner lets go")
