"""One claim per name: which intent may publish each DNS name (docs/design/sources.md §4).

A name belongs to the oldest intent that wants it: ``metadata.creationTimestamp``, then kind, namespace and
name. The order depends on nothing this process remembers, so every replica, before and after a restart,
decides alike. What an intent wants is what its last reconcile rendered (names of member objects included);
until an intent has been reconciled by this leader, the names its own DNSEndpoint publishes stand in for it
(``seed``). So after a restart or a leader change, a newer intent that happens to be reconciled first finds
the established owner's names already claimed and never publishes them, not even for a moment.

Pure and thread-safe: every decision is made under one lock; the caller re-queues the intents whose
share changed (``Claimed.requeue``) outside it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aggregator.model import IntentKey


@dataclass(frozen=True, order=True)
class Claimant:
    """An intent's place in the order of claims: older first; an unknown creation time after every known one."""

    unknown_age: bool
    created: str  # RFC 3339 at second precision, as the API server writes it: compares as a string
    key: IntentKey

    @staticmethod
    def of(key: IntentKey, created: str) -> Claimant:
        return Claimant(not created, created, key)

    def __str__(self) -> str:
        kind, namespace, name = self.key.kind, self.key.namespace, self.key.name
        return f"{kind} {namespace}/{name}" + (f" (created {self.created})" if self.created else "")


@dataclass(frozen=True)
class Claimed:
    """The outcome of one claim: the names that belong to another intent (name → its owner), and the intents
    whose share changed with this claim (a name they now own, or lost): they must be reconciled again."""

    refused: Mapping[str, Claimant] = field(default_factory=dict)
    requeue: frozenset[IntentKey] = frozenset()


@dataclass(frozen=True)
class _Claim:
    claimant: Claimant
    names: frozenset[str]


Seed = Iterable[tuple[Claimant, Iterable[str]]]


class ClaimRegistry:
    """Every intent's wanted names, and the owner of each name: the oldest intent that wants it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[IntentKey, _Claim] = {}
        self._wanted_by: dict[str, set[IntentKey]] = {}
        self._seeded = False

    def seed(self, load: Callable[[], Seed]) -> None:
        """Once per leadership, before the first claim: what each intent publishes now (its own DNSEndpoint).
        ``load`` runs under the lock, so no claim can be decided from a registry half filled."""
        with self._lock:
            if self._seeded:
                return
            for claimant, names in load():
                if claimant.key not in self._claims:
                    self._set(claimant.key, _Claim(claimant, frozenset(names)))
            self._seeded = True

    def claim(self, claimant: Claimant, names: Iterable[str], load: Callable[[], Seed] = tuple) -> Claimed:
        """Record the names the intent wants now (replacing what it wanted before) and decide them."""
        self.seed(load)
        wanted = frozenset(names)
        key = claimant.key
        with self._lock:
            old = self._claims.get(key)
            touched = wanted | (old.names if old is not None else frozenset())
            before = {name: self._owner(name) for name in touched}
            if wanted:
                self._set(key, _Claim(claimant, wanted))
            else:
                self._drop(key)
            after = {name: self._owner(name) for name in touched}
            refused = {name: owner for name in sorted(wanted)
                       if (owner := after[name]) is not None and owner.key != key}
        requeue = {owner.key for name in touched if before[name] != after[name]
                   for owner in (before[name], after[name]) if owner is not None and owner.key != key}
        return Claimed(refused, frozenset(requeue))

    def release(self, key: IntentKey) -> frozenset[IntentKey]:
        """The intent is gone (or publishes nothing): the intents that now own one of its names."""
        with self._lock:
            old = self._claims.get(key)
            if old is None:
                return frozenset()
            before = {name: self._owner(name) for name in old.names}
            self._drop(key)
            return frozenset(owner.key for name in old.names
                             if (owner := self._owner(name)) is not None and owner != before[name])

    def reset(self) -> None:
        """Leadership gained: another replica decided meanwhile; start again from what is published."""
        with self._lock:
            self._claims.clear()
            self._wanted_by.clear()
            self._seeded = False

    def owner(self, name: str) -> Claimant | None:
        with self._lock:
            return self._owner(name)

    def _owner(self, name: str) -> Claimant | None:
        keys = self._wanted_by.get(name)
        return min((self._claims[key].claimant for key in keys), default=None) if keys else None

    def _set(self, key: IntentKey, claim: _Claim) -> None:
        self._drop(key)
        self._claims[key] = claim
        for name in claim.names:
            self._wanted_by.setdefault(name, set()).add(key)

    def _drop(self, key: IntentKey) -> None:
        old = self._claims.pop(key, None)
        if old is None:
            return
        for name in old.names:
            keys = self._wanted_by.get(name)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._wanted_by[name]
