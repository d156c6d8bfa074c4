"""A de-duplicating work queue, as client-go's, the partner of the informer (informer.py): change handlers add
keys, workers take them. A key waits at most once, and is never handed to two workers at the same time (a change
during processing re-queues it).

Failed keys come back with a per-key exponential delay (client-go's rate-limited queue): 0.5 s after
the first failure, doubling, capped at 5 minutes; a success ``forget``s the key. A key that fails
for good (a 403 or 422 from the host API) then costs one request every few minutes, not one a second.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from typing import Generic, TypeVar

K = TypeVar("K")
RETRY_BASE_DELAY = 0.5
RETRY_MAX_DELAY = 300.0


def backoff_delay(failures: int, base: float = RETRY_BASE_DELAY, cap: float = RETRY_MAX_DELAY) -> float:
    """Delay before the retry that follows ``failures`` earlier failures: base, 2*base, 4*base, ... <= cap."""
    if failures >= 64:  # 2**64 * base is past any cap; avoids float overflow for absurd counts
        return cap
    return min(cap, base * 2 ** max(failures, 0))


class WorkQueue(Generic[K]):
    def __init__(self, base_delay: float = RETRY_BASE_DELAY, max_delay: float = RETRY_MAX_DELAY) -> None:
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._failures: dict[K, int] = {}
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

    def add_rate_limited(self, key: K) -> float:
        """Retry ``key`` after its next backoff delay (which doubles per failure until ``forget``);
        returns the delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = backoff_delay(failures, self._base_delay, self._max_delay)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """``key`` succeeded: its next failure starts again from the base delay."""
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        """Failures of ``key`` since it last succeeded."""
        with self._cond:
            return self._failures.get(key, 0)

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
