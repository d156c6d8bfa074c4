"""The guard between render and write: what stays published, the conditions and the events, and refused names
keeping no other intent waiting."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from aggregator.model import ClusterStatus, Domain, IntentKey, IntentKind, IntentStatus, LoadBalancerAddress
from aggregator.registry.claims import Seed
from aggregator.registry.domains import NAME_OUTSIDE_DOMAIN, NamespaceLabels
from aggregator.registry.guardrails import CLAIMED_BY_ANOTHER_INTENT, GuardRails
from aggregator.render.events import refusal_events
from aggregator.render.status import HOSTNAMES_ALLOWED, HOSTNAMES_CLAIMED, Outcome, build_status
from aggregator.sources import SOURCES
from aggregator.sources.base import Desired
from aggregator.sources.ingress import IngressIntent
from fleetdns.conditions import READY
from tests.support.model import domain

pytestmark = pytest.mark.unit

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"
TEAM = {"matchLabels": {"team": "shop"}}


class Inputs:
    """The engine's side of the guard rails, in memory."""

    def __init__(self, domains: Sequence[Domain] = (), labels: dict[str, dict[str, str]] | None = None,
                 published: Seed = ()) -> None:
        self.domains = list(domains)
        self.labels = labels or {}
        self.published = published
        self.requeued: list[IntentKey] = []

    def namespace_labels(self, namespace: str) -> NamespaceLabels:
        return NamespaceLabels(namespace, self.labels.get(namespace))

    def domains_in(self, namespace: str) -> Sequence[Domain]:
        return [d for d in self.domains if d.namespace == namespace]

    def published_names(self) -> Seed:
        return self.published

    def requeue(self, keys: Iterable[IntentKey]) -> None:
        self.requeued.extend(keys)

    # Domains (what a source looks a domainRef up in)
    def find(self, namespace: str, name: str) -> Domain | None:
        return next((d for d in self.domains if d.name == name and d.namespace in (namespace, "fleetdns-system")),
                    None)

    def searched(self, namespace: str) -> str:
        return f"{namespace} or fleetdns-system"


HEALTHY = (ClusterStatus("east", "east", "east-1a", (LoadBalancerAddress(ip="192.0.2.10"),), True, "ok"),)
INGRESS = SOURCES.for_kind(IntentKind.INGRESS)


def ingress(name: str, hosts: tuple[str, ...], created: str, domain_ref: str = "") -> IngressIntent:
    return IngressIntent("shop", name, f"uid-{name}", 1, hosts, created=created, domain_ref=domain_ref)


def guarded(guard: GuardRails, inputs: Inputs, intent: IngressIntent) -> Desired:
    return guard.apply(intent, INGRESS, INGRESS.render(intent, HEALTHY, inputs), inputs)


def published(desired: Desired) -> set[str]:
    return {e.dns_name for e in desired.endpoints}


def test_a_later_intent_publishes_its_other_names_and_says_who_owns_the_shared_one() -> None:
    inputs = Inputs(labels={"shop": {}})
    guard = GuardRails(inputs, "fleetdns-system")
    older = ingress("z-older", ("shop.example.org", "old.example.org"), T0)
    newer = ingress("a-newer", ("shop.example.org", "new.example.org"), T1)
    assert published(guarded(guard, inputs, older)) == {"shop.example.org", "old.example.org"}
    result = guarded(guard, inputs, newer)
    assert published(result) == {"new.example.org"}
    assert result.outcome.published_records == 1 and not result.outcome.problem
    allowed, claimed = result.outcome.guard
    assert (allowed.type, allowed.status) == (HOSTNAMES_ALLOWED, "True")
    assert (claimed.type, claimed.status, claimed.reason) == (HOSTNAMES_CLAIMED, "False", CLAIMED_BY_ANOTHER_INTENT)
    assert claimed.message == ("not published: shop.example.org claimed first by IngressDNSRecord shop/z-older "
                               f"(created {T0}); published once the owner lets go")

    guard.release(older.key)  # deleted
    assert inputs.requeued == [newer.key]
    assert published(guarded(guard, inputs, newer)) == {"shop.example.org", "new.example.org"}


def test_an_intent_whose_every_name_is_refused_is_not_ready_and_says_why() -> None:
    inputs = Inputs([domain("shop", "fleet", "example.com")], labels={"shop": {}})
    guard = GuardRails(inputs, "fleetdns-system")
    result = guarded(guard, inputs, ingress("web", ("web.example.org",), T0, domain_ref="fleet"))
    assert result.endpoints == [] and result.outcome.problem == NAME_OUTSIDE_DOMAIN
    status = build_status(result.outcome, 1, IntentStatus(), T0)
    ready = next(c for c in status.conditions if c.type == READY)
    assert (ready.status, ready.reason) == ("False", NAME_OUTSIDE_DOMAIN)
    assert ready.message == ("no name can be published: not published: web.example.org is not under Domain "
                             "shop/fleet (example.com)")
    assert [c.reason for c in refusal_events(IntentStatus(), status)] == [NAME_OUTSIDE_DOMAIN]
    assert refusal_events(status, build_status(result.outcome, 1, status, T1)) == []  # once, not per reconcile

    missing = guarded(guard, inputs, ingress("web", ("web.example.org",), T0, domain_ref="nope"))
    assert missing.endpoints == [] and missing.outcome.problem == "DomainNotFound"


def test_refused_names_do_not_keep_another_intent_waiting() -> None:
    """An older intent whose name is refused by its Domain does not hold it: a newer, admitted one publishes it."""
    inputs = Inputs([domain("fleetdns-system", "corp", "example.com", TEAM)],
                    labels={"shop": {"team": "shop"}, "other": {}})
    guard = GuardRails(inputs, "fleetdns-system")
    outsider = IngressIntent("other", "web", "uid-o", 1, ("web.example.com",), created=T0)
    assert published(guard.apply(outsider, INGRESS, INGRESS.render(outsider, HEALTHY, inputs), inputs)) == set()
    assert published(guarded(guard, inputs, ingress("web", ("web.example.com",), T1))) == {"web.example.com"}


def test_status_keeps_the_guard_conditions_when_nothing_was_judged() -> None:
    inputs = Inputs(labels={"shop": {}})
    guard = GuardRails(inputs, "fleetdns-system")
    judged = build_status(guarded(guard, inputs, ingress("web", ("web.example.org",), T0)).outcome, 1,
                          IntentStatus(), T0)

    def guard_conditions(status: IntentStatus) -> list[tuple[str, str, str, str]]:
        return [(c.type, c.status, c.reason, c.last_transition_time) for c in status.conditions
                if c.type in (HOSTNAMES_ALLOWED, HOSTNAMES_CLAIMED)]

    kept = guard_conditions(judged)
    assert [c[:2] for c in kept] == [(HOSTNAMES_ALLOWED, "True"), (HOSTNAMES_CLAIMED, "True")]
    unreadable = build_status(Outcome("", "", (), 0, "InvalidSpec", "spec.hosts must be a list"), 2, judged, T1)
    assert guard_conditions(unreadable) == kept
