"""The claim registry of the guard rails: the oldest intent owns a name whatever the order of claims, across a
restart (seeds), and from many threads at once; an intent waiting for a name is requeued when it is let go."""

from __future__ import annotations

import random
import threading

import pytest

from aggregator.model import IntentKey, IntentKind
from aggregator.registry.claims import Claimant, ClaimRegistry, Seed

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

