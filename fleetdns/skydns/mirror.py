"""The prefix kept in memory by an etcd watch, so that a read with nothing changed costs next to nothing.

Rules (each one is a test in tests/webhook_provider/test_mirror.py):
- never cold: the first read lists the prefix (paged, at one revision) and watches from that revision + 1;
- never behind our own writes: after a commit at revision R, reads wait (bounded) until the watch applied R;
- never broken: a watch that ends (etcd restart, compaction, lost leader), a wait that runs out, a commit
  whose outcome is unknown or a transaction conflict makes the next read list again (from etcd, or 503
  when etcd does not answer);
- other writers' changes under the prefix arrive through the watch, in milliseconds; writes elsewhere in
  etcd are not seen at all (they cost nothing);
- never silently stuck: a watch can stall without ending (a stream that stops delivering); every
  ``verify_seconds`` the mirror compares its key count and revision with etcd's, and when it is behind on two
  checks in a row without a single event arriving in between, the next read lists again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

from fleetdns.skydns.metrics import StoreMetrics
from fleetdns.skydns.records import StoredEntry
from fleetdns.skydns.store import (
    EtcdStore,
    EtcdUnavailableError,
    PrefixSnapshot,
    PrefixWatch,
    WatchEvent,
    WatchStartError,
)

log = logging.getLogger("webhook_provider.mirror")  # the name it had before the move, kept for log filters

T = TypeVar("T")


@dataclass(frozen=True)
class NameChanges:
    """What changed since the previous call: each changed name's entries now (key order; empty = gone)."""

    full: bool  # everything was read anew: ``names`` holds every name and earlier results are void
    names: dict[str, tuple[StoredEntry, ...]]
    revision: int


class EntrySource(Protocol):
    """Where the provider reads the prefix from: the mirror, or etcd on every read (``--read-mirror=false``)."""

    def entries(self) -> list[StoredEntry]:
        """Every entry under the prefix, at least as new as every commit reported."""
        ...

    def changes(self) -> NameChanges:
        """Names changed since the previous call (one consumer: the records listing)."""
        ...

    def committed(self, revision: int) -> None:
        """A transaction committed at ``revision``: later reads must include it."""
        ...

    def distrust(self, reason: str) -> None:
        """The next read must come from etcd: a commit's outcome is unknown, or a compare found a newer key."""
        ...

    def resend_all(self) -> None:
        """The next ``changes`` holds every name (full), from what is held now: a consumer that starts reading
        more of each name (a view added) renders them all again without a listing of etcd."""
        ...

    def close(self) -> None: ...


def names_of(entry: StoredEntry) -> set[str]:
    return {record.name for record in entry.records}


def group_by_name(entries: Iterable[StoredEntry]) -> dict[str, dict[str, StoredEntry]]:
    """name -> {key: entry}, in the order given (etcd's key order for a listing)."""
    grouped: dict[str, dict[str, StoredEntry]] = {}
    for entry in entries:
        for name in names_of(entry):
            grouped.setdefault(name, {})[entry.key] = entry
    return grouped


def _in_key_order(entries: dict[str, StoredEntry]) -> tuple[StoredEntry, ...]:
    return tuple(entries[key] for key in sorted(entries))


class DirectSource:
    """No mirror: every read lists the whole prefix from etcd (the cost the mirror removes; kept for comparison)."""

    def __init__(self, store: EtcdStore, prefix: str, metrics: StoreMetrics) -> None:
        self.store = store
        self.prefix = prefix
        self.metrics = metrics

    def entries(self) -> list[StoredEntry]:
        self.metrics.reads.labels("etcd").inc()
        return self.store.read_prefix(self.prefix)

    def changes(self) -> NameChanges:
        snapshot = self.store.list_prefix(self.prefix)
        self.metrics.reads.labels("etcd").inc()
        grouped = group_by_name(snapshot.entries)
        return NameChanges(True, {name: tuple(keys.values()) for name, keys in grouped.items()}, snapshot.revision)

    def committed(self, revision: int) -> None:
        pass

    def distrust(self, reason: str) -> None:
        pass

    def resend_all(self) -> None:
        pass  # every changes() is full here

    def close(self) -> None:
        pass


class PrefixMirror:
    """Every entry under the prefix, listed once and kept current by a watch; see the module rules."""

    def __init__(self, store: EtcdStore, prefix: str, metrics: StoreMetrics, wait_seconds: float,
                 verify_seconds: float = 30.0) -> None:
        self.store = store
        self.prefix = prefix
        self.metrics = metrics
        self.wait_seconds = wait_seconds
        self.verify_seconds = verify_seconds
        self._closed = threading.Event()
        self._behind = 0  # consecutive checks that found etcd ahead of a watch that delivered nothing meanwhile
        self._lock = threading.Lock()
        self._applied = threading.Condition(self._lock)  # notified when events arrive or the watch ends
        self._relist_lock = threading.Lock()  # one listing at a time; the others then use its result
        self._entries: dict[str, StoredEntry] = {}
        self._by_name: dict[str, dict[str, StoredEntry]] = {}
        self._revision = 0  # highest revision applied (listing or event)
        self._required = 0  # highest revision we committed: no read may answer from before it
        self._stale: str | None = "cold"  # why the next read must list again; None while the watch is live
        self._watch: PrefixWatch | None = None
        self._token = 0  # which watch's callbacks still count (an old watch's late events are dropped)
        self._dirty: set[str] = set()
        self._full = True
        threading.Thread(target=self._verify_loop, name="mirror-verify", daemon=True).start()

    # --- reads -------------------------------------------------------------------------------------------

    def entries(self) -> list[StoredEntry]:
        return self._read(lambda: list(self._entries.values()))

    def changes(self) -> NameChanges:
        def take() -> NameChanges:
            names = list(self._by_name) if self._full else self._dirty
            changed = {name: _in_key_order(self._by_name.get(name, {})) for name in names}
            full, self._full, self._dirty = self._full, False, set()
            return NameChanges(full, changed, self._revision)

        return self._read(take)

    def _read(self, take: Callable[[], T]) -> T:
        """``take()`` under the lock, on data at least as new as every commit; lists the prefix first if needed."""
        with self._lock:
            reason = self._wait_until_current()
            if reason is None:
                self.metrics.reads.labels("mirror").inc()
                return take()
        listed = self._relist(reason)  # EtcdUnavailableError propagates: 503, nothing stale answered
        with self._lock:
            # Fresh even if the new watch already ended: the listing ran after every commit we reported.
            self.metrics.reads.labels("etcd" if listed else "mirror").inc()
            return take()

    def _wait_until_current(self) -> str | None:
        """None once the live watch applied every commit; else why the prefix must be listed (lock held)."""
        deadline = time.monotonic() + self.wait_seconds
        while self._stale is None and self._revision < self._required:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("etcd watch is behind our last commit; listing the prefix instead", extra={
                    "applied_revision": self._revision, "committed_revision": self._required,
                    "waited_seconds": self.wait_seconds})
                self._stale = "wait_timeout"
                break
            self._applied.wait(remaining)
        return self._stale

    # --- listing and watching ----------------------------------------------------------------------------

    def _relist(self, reason: str) -> bool:
        """List the prefix and watch from there; False if another thread did it meanwhile."""
        with self._relist_lock:
            with self._lock:
                if self._stale is None and self._revision >= self._required:
                    return False
                reason = self._stale or reason
                old, self._watch = self._watch, None
                self._token += 1  # from here on, the old watch's callbacks are ignored
                self._stale = reason
            if old is not None:
                old.cancel()
            self.metrics.mirror_relists.labels(reason).inc()
            started = time.perf_counter()
            snapshot = self.store.list_prefix(self.prefix)
            token = self._install(snapshot)
            log.info("listed the prefix", extra={"reason": reason, "keys": len(snapshot.entries),
                                                 "revision": snapshot.revision,
                                                 "seconds": round(time.perf_counter() - started, 3)})
            self._start_watch(token, snapshot.revision + 1)
            return True

    def _install(self, snapshot: PrefixSnapshot) -> int:
        with self._lock:
            self._entries = {entry.key: entry for entry in snapshot.entries}
            self._by_name = group_by_name(snapshot.entries)
            if snapshot.revision < self._revision:  # etcd restored from an older backup: revisions start over
                log.warning("etcd's revision went back; forgetting the revisions seen before", extra={
                    "revision": snapshot.revision, "previous_revision": self._revision})
                self._required = min(self._required, snapshot.revision)
            self._revision = snapshot.revision
            self._full, self._dirty = True, set()
            self._stale = "starting"  # until the watch exists; a read now lists again rather than trust it
            self._token += 1
            self.metrics.mirror_revision.set(self._revision)
            return self._token

    def _start_watch(self, token: int, start_revision: int) -> None:
        try:
            watch = self.store.watch_prefix(self.prefix, start_revision, partial(self._on_events, token),
                                            partial(self._on_end, token))
        except WatchStartError as error:
            log.warning("cannot watch the prefix; the next read lists it again",
                        extra={"reason": error.reason, "error": str(error)})
            with self._lock:
                if token == self._token:
                    self._stale = "compacted" if error.reason == "compacted" else "watch_failed"
            return
        with self._lock:
            if token == self._token and self._stale == "starting":
                self._watch, self._stale = watch, None
                self._applied.notify_all()
                return
        watch.cancel()  # it ended, or a newer listing replaced it, while starting

    def _on_events(self, token: int, events: list[WatchEvent]) -> None:
        with self._lock:
            if token != self._token:
                return
            for event in events:
                old = self._entries.pop(event.key, None)
                if old is not None:
                    for name in names_of(old):
                        keys = self._by_name.get(name)
                        if keys is not None:
                            keys.pop(event.key, None)
                            if not keys:
                                del self._by_name[name]
                        self._dirty.add(name)
                if event.entry is not None:
                    self._entries[event.key] = event.entry
                    for name in names_of(event.entry):
                        self._by_name.setdefault(name, {})[event.key] = event.entry
                        self._dirty.add(name)
                self._revision = max(self._revision, event.revision)
            self._applied.notify_all()
            revision = self._revision
        self.metrics.mirror_events.inc(len(events))
        self.metrics.mirror_revision.set(revision)

    def _on_end(self, token: int, reason: str, detail: str) -> None:
        with self._lock:
            if token != self._token:
                return
            self._stale = "compacted" if reason == "compacted" else "watch_ended"
            self._watch = None
            self._applied.notify_all()
        log.warning("etcd watch ended; the next read lists the prefix again", extra={"reason": detail})

    # --- a watch that stalls without ending ---------------------------------------------------------------

    def _verify_loop(self) -> None:
        while not self._closed.wait(self.verify_seconds):
            with contextlib.suppress(EtcdUnavailableError):  # reads find out themselves (503 or a fresh listing)
                self.verify()

    def verify(self) -> bool:
        """Compare the live mirror with etcd; True when it was behind twice in a row and will be listed again."""
        with self._lock:
            if self._stale is not None:
                self._behind = 0
                return False
            revision, keys = self._revision, len(self._entries)
        state = self.store.prefix_state(self.prefix)
        with self._lock:
            if self._stale is not None or self._revision != revision:
                self._behind = 0  # events arrived meanwhile: the watch is alive
                return False
            if state.keys == keys and state.newest_mod_revision <= revision:
                self._behind = 0
                return False
            self._behind += 1
            if self._behind < 2:
                return False  # the events may be on their way; a second look decides
            self._behind = 0
            self._stale = "watch_stalled"
            self._applied.notify_all()
        log.warning("etcd watch delivers nothing while etcd moved on; the next read lists the prefix again", extra={
            "applied_revision": revision, "keys_here": keys, "keys_in_etcd": state.keys,
            "newest_mod_revision": state.newest_mod_revision})
        return True

    # --- what the provider reports -----------------------------------------------------------------------

    def committed(self, revision: int) -> None:
        with self._lock:
            self._required = max(self._required, revision)

    def distrust(self, reason: str) -> None:
        with self._lock:
            if self._stale is None:
                self._stale = reason

    def resend_all(self) -> None:
        with self._lock:
            self._full, self._dirty = True, set()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            watch, self._watch = self._watch, None
            self._token += 1
            self._stale = "closed"
        if watch is not None:
            watch.cancel()
