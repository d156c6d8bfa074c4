"""Pure parts of the guard rails: the claim registry (order, seeds, re-queues, many threads), the Domain rules
(names outside the Domain, the most specific Domain's namespaceSelector) and the guard between render and
write (what stays published, the conditions, the events)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Sequence

import pytest

from aggregator.model import (
    ClusterStatus,
    Domain,
    IngressIntent,
    IntentKey,
    IntentKind,
    IntentStatus,
    LoadBalancerAddress,
    parse_domain,
)
from aggregator.registry.claims import Claimant, ClaimRegistry, Seed
from aggregator.registry.domains import NAME_OUTSIDE_DOMAIN, NAMESPACE_NOT_ALLOWED, NamespaceLabels, judge_names
from aggregator.registry.guardrails import CLAIMED_BY_ANOTHER_INTENT, GuardRails
from aggregator.render.status import HOSTNAMES_ALLOWED, HOSTNAMES_CLAIMED, READY, Outcome, build_status, refusal_events
from aggregator.sources import SOURCES
from aggregator.sources.base import Desired

pytestmark = pytest.mark.unit

T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", "2026-01-02T00:00:00Z"


def ingress_key(name: str, namespace: str = "shop") -> IntentKey:
    return IntentKey(IntentKind.INGRESS, namespace, name)


def who(name: str, created: str, namespace: str = "shop") -> Claimant:
    return Claimant.of(ingress_key(name, namespace), created)


# --- the claim registry --------------------------------------------------------------------------------

def test_the_oldest_intent_owns_a_name_whatever_order_they_claim_it_in() -> None:
    registry = ClaimRegistry()
    newer, older = who("a-newer", T1), who("z-older", T0)  # the name order would pick the newer one
    first = registry.claim(newer, {"shop.example.com", "a.example.com"})
    assert first.refused == {} and first.requeue == frozenset()
    second = registry.claim(older, {"shop.example.com", "z.example.com"})
    assert second.refused == {}
    assert second.requeue == {newer.key}  # it lost a name: it must withdraw it
    again = registry.claim(newer, {"shop.example.com", "a.example.com"})
    assert again.refused == {"shop.example.com": older} and again.requeue == frozenset()
    assert str(older) == "IngressDNSRecord shop/z-older (created 2026-01-01T00:00:00Z)"


def test_same_creation_second_falls_back_to_kind_namespace_and_name() -> None:
    registry = ClaimRegistry()
    service = Claimant.of(IntentKey(IntentKind.SERVICE, "a", "web"), T0)
    ingress = Claimant.of(IntentKey(IntentKind.INGRESS, "z", "web"), T0)
    registry.claim(service, {"web.example.com"})
    assert registry.claim(ingress, {"web.example.com"}).refused == {}  # "IngressDNSRecord" < "ServiceDNSRecord"
    assert registry.owner("web.example.com") == ingress


def test_the_waiting_intent_is_requeued_when_the_owner_lets_go() -> None:
    registry = ClaimRegistry()
    older, newer, newest = who("older", T0), who("newer", T1), who("newest", T2)
    registry.claim(older, {"shop.example.com"})
    registry.claim(newer, {"shop.example.com"})
    registry.claim(newest, {"shop.example.com"})
    # the owner changes its names: the next in line (only it) takes the name
    changed = registry.claim(older, {"other.example.com"})
    assert changed.requeue == {newer.key}
    assert registry.owner("shop.example.com") == newer
    # the new owner is deleted: the last one takes it
    assert registry.release(newer.key) == {newest.key}
    assert registry.claim(newest, {"shop.example.com"}).refused == {}
    assert registry.release(newest.key) == frozenset()  # nobody waits any more
    assert registry.owner("shop.example.com") is None


def test_after_a_restart_the_published_owner_keeps_its_name_from_a_newer_intent_reconciled_first() -> None:
    registry = ClaimRegistry()
    older, newer = who("older", T0), who("newer", T1)
    published: Seed = [(older, {"shop.example.com", "older.example.com"}), (newer, {"newer.example.com"})]
    loads = []

    def load() -> Seed:
        loads.append(1)
        return published

    claimed = registry.claim(newer, {"shop.example.com", "newer.example.com"}, load)
    assert claimed.refused == {"shop.example.com": older}
    assert registry.claim(older, {"shop.example.com", "older.example.com"}, load).refused == {}
    assert loads == [1]  # seeded once per leadership
    registry.reset()  # a new leadership seeds again from what is published then
    registry.claim(newer, {"shop.example.com"}, load)
    assert loads == [1, 1]


def test_a_seed_from_before_the_guard_rails_gives_the_name_to_the_older_intent() -> None:
    """Both published the name before this rule existed: the older keeps it, the newer is told to withdraw."""
    registry = ClaimRegistry()
    older, newer = who("older", T0), who("newer", T1)
    published: Seed = [(older, {"shop.example.com"}), (newer, {"shop.example.com"})]
    claimed = registry.claim(newer, {"shop.example.com"}, lambda: published)
    assert claimed.refused == {"shop.example.com": older}


def test_claims_from_many_threads_agree_on_one_owner_per_name() -> None:
    registry = ClaimRegistry()
    names = [f"n{i}.example.com" for i in range(6)]
    claimants = [who(f"app-{i}", f"2026-01-01T00:00:{i:02d}Z") for i in range(12)]
    last: dict[IntentKey, tuple[frozenset[str], dict[str, Claimant]]] = {}
    lock = threading.Lock()

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(300):
            claimant = rng.choice(claimants)
            wanted = frozenset(rng.sample(names, rng.randint(0, 3)))
            with lock:  # one thread per claimant at a time, as the work queue guarantees per intent
                result = registry.claim(claimant, wanted)
                last[claimant.key] = (wanted, dict(result.refused))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in names:
        wanting = [c for c in claimants if name in last.get(c.key, (frozenset(), {}))[0]]
        assert registry.owner(name) == (min(wanting) if wanting else None)


def test_claims_decided_concurrently_never_give_one_name_to_two_intents() -> None:
    """Every intent claims the same name at once from its own thread: after each has decided once more (as the
    re-queue makes it), exactly one keeps it, the oldest."""
    registry = ClaimRegistry()
    claimants = [who(f"app-{i}", f"2026-01-01T00:00:{i:02d}Z") for i in range(16)]
    barrier = threading.Barrier(len(claimants))
    results: dict[IntentKey, bool] = {}
    requeued: set[IntentKey] = set()

    def claim(claimant: Claimant) -> None:
        barrier.wait()
        result = registry.claim(claimant, {"shop.example.com"})
        results[claimant.key] = "shop.example.com" not in result.refused
        requeued.update(result.requeue)

    threads = [threading.Thread(target=claim, args=(c,)) for c in claimants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # whoever thought it owned the name but was overtaken was told to reconcile again
    for key in [k for k, owns in results.items() if owns and k != claimants[0].key]:
        assert key in requeued
        assert registry.claim(next(c for c in claimants if c.key == key), {"shop.example.com"}).refused
    assert results[claimants[0].key] and registry.owner("shop.example.com") == claimants[0]


# --- the Domain rules ------------------------------------------------------------------------------------

def domain(namespace: str, name: str, zone: str, selector: dict | None = None) -> Domain:
    spec: dict = {"domain": zone, **({"namespaceSelector": selector} if selector is not None else {})}
    return parse_domain({"metadata": {"namespace": namespace, "name": name}, "spec": spec})


TEAM = {"matchLabels": {"team": "shop"}}
SHOP = NamespaceLabels("shop", {"team": "shop"})
OTHER = NamespaceLabels("other", {"team": "other"})


def test_names_outside_the_intents_domain_are_refused() -> None:
    home = domain("shop", "fleet", "example.com")
    refused = judge_names({"a.example.com", "example.com", "a.example.org", "badexample.com"}, SHOP, home, [[home]])
    assert sorted(refused) == ["a.example.org", "badexample.com"]
    assert {r.reason for r in refused.values()} == {NAME_OUTSIDE_DOMAIN}
    assert refused["a.example.org"].message == "a.example.org is not under Domain shop/fleet (example.com)"


def test_the_most_specific_domain_decides_who_may_publish_under_it() -> None:
    platform = [domain("fleetdns-system", "corp", "example.com", TEAM),
                domain("fleetdns-system", "apps", "apps.example.com", {})]  # delegated to everyone
    refused = judge_names({"x.example.com", "x.apps.example.com", "x.example.org"}, OTHER, None, [[], platform])
    assert sorted(refused) == ["x.example.com"]
    assert refused["x.example.com"].reason == NAMESPACE_NOT_ALLOWED
    assert refused["x.example.com"].message == (
        "x.example.com: Domain fleetdns-system/corp (example.com) admits namespaces matching team=shop; "
        "namespace other does not match")
    assert judge_names({"x.example.com"}, SHOP, None, [[], platform]) == {}


def test_a_domain_in_the_teams_own_namespace_never_widens_the_platforms() -> None:
    platform = [domain("fleetdns-system", "corp", "example.com", TEAM)]
    own = [domain("other", "mine", "mine.example.com"), domain("other", "same", "example.com")]
    refused = judge_names({"x.mine.example.com", "x.example.com"}, OTHER, None, [own, platform])
    assert sorted(refused) == ["x.example.com", "x.mine.example.com"]


def test_selectors_with_expressions_and_unknown_or_unreadable_labels() -> None:
    zones = [domain("fleetdns-system", "prod", "prod.example.com",
                    {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["prod"]},
                                          {"key": "frozen", "operator": "DoesNotExist"}]}),
             domain("fleetdns-system", "open", "open.example.com")]
    names = {"a.prod.example.com", "a.open.example.com"}
    assert judge_names(names, NamespaceLabels("p", {"tier": "prod"}), None, [zones]) == {}
    assert list(judge_names(names, NamespaceLabels("p", {"tier": "prod", "frozen": "y"}), None, [zones])) == [
        "a.prod.example.com"]
    unknown = judge_names(names, NamespaceLabels("p", None, "host namespaces cannot be listed: 403"), None, [zones])
    assert list(unknown) == ["a.prod.example.com"]  # a Domain without a selector needs no labels
    assert "labels of namespace p are unknown (host namespaces cannot be listed: 403)" in unknown[
        "a.prod.example.com"].message
    broken = parse_domain({"metadata": {"namespace": "fleetdns-system", "name": "b"},
                           "spec": {"domain": "b.example.com", "namespaceSelector": {"matchLabels": "x"}}})
    refused = judge_names({"a.b.example.com"}, SHOP, None, [[broken]])
    assert "admits no namespace: its spec.namespaceSelector cannot be read" in refused["a.b.example.com"].message


# --- the guard between render and write --------------------------------------------------------------------

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
