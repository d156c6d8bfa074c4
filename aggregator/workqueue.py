"""A de-duplicating work queue keyed by intent, as client-go's: a key waits at most once, and
is never handed to two workers at the same time (a change during processing re-queues it)."""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from typing import Generic, TypeVar

K = TypeVar("K")


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._dirty: dict[K, float] = {}  # waiting keys -> when first added (for latency metrics)
        self._processing: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []
        self._seq = 0
        self._shutdown = False

    def add(self, key: K) -> None:
        with self._cond:
            self._add_locked(key, time.monotonic())

    def _add_locked(self, key: K, added: float) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty[key] = added
        if key not in self._processing:
            self._queue.append(key)
            self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` once ``delay`` seconds have passed (grace-period expiry, retries)."""
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            self._seq += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay, self._seq, key))
            self._cond.notify()

    def get(self, timeout: float | None = None) -> tuple[K, float] | None:
        """The next key and when it was first queued; None on shutdown or timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, key = heapq.heappop(self._delayed)
                    self._add_locked(key, now)
                if self._shutdown:
                    return None
                if self._queue:
                    key = self._queue.popleft()
                    self._processing.add(key)
                    return key, self._dirty.pop(key)
                waits = [w for w in (
                    self._delayed[0][0] - now if self._delayed else None,
                    deadline - now if deadline is not None else None) if w is not None]
                if deadline is not None and now >= deadline:
                    return None
                self._cond.wait(min(waits) if waits else None)

    def done(self, key: K) -> None:
        """Processing finished: a key changed meanwhile goes back in line."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
