"""Intent statuses, written after the answers.

A reconcile writes the intent's DNSEndpoint itself (that is what clients get) and hands the status it decided to a
``StatusSink``. ``DeferredStatuses`` (what the running aggregator uses) writes it on threads of its own, and waits
while the work queue still holds reconciles, at most ``MAX_DEFER`` seconds for the oldest status: when a member goes
and thousands of answers must move, the host API server spends its capacity on DNSEndpoints first, and an intent
decided three times in a row costs one status write. A write that fails is tried again, with backoff, until it
succeeds, a newer status replaces it, the intent is gone (404) or this replica stops leading (``clear``; a write
refused because the lease was renewed late is tried again like any other): the reconciler's record of what it
decided stays true, so it never needs to decide again to get the status out.
``ImmediateStatuses`` writes in the reconcile's own thread and raises what the write raises (tests of the decisions
read the status as soon as the reconcile returns).

The cost (docs/design/scale.md): for up to ``MAX_DEFER`` seconds under a burst, an intent's status may lag its
DNSEndpoint. At shutdown the pending statuses are written while this replica still leads (``flush``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aggregator.metrics import AggregatorMetrics
from aggregator.model import IntentKey, IntentStatus
from aggregator.sources.base import Source
from fleetdns.kubeapi import KubeError

logger = logging.getLogger("aggregator.statuses")
MAX_DEFER = 5.0  # seconds the oldest status may wait for a busy work queue
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # after the 1st, 2nd, ... failed write of the same status
BUSY_POLL = 0.05  # how often a waiting writer looks at the work queue again
THREADS = 2

Write = Callable[[IntentKey, Source[Any], IntentStatus], None]


class StatusSink(Protocol):
    def submit(self, key: IntentKey, source: Source[Any], status: IntentStatus) -> None:
        """Write ``status`` as the intent's (replacing one not written yet)."""
        ...

    def forget(self, key: IntentKey) -> None:
        """The intent is gone: its status, if still waiting, is not written."""
        ...

    def clear(self) -> None:
        """Leadership changed: nothing waiting is written."""
        ...


class ImmediateStatuses:
    """Each status written at once, in the caller's thread; a failed write raises."""

    def __init__(self, write: Write) -> None:
        self._write = write

    def submit(self, key: IntentKey, source: Source[Any], status: IntentStatus) -> None:
        self._write(key, source, status)

    def forget(self, key: IntentKey) -> None:
        pass

    def clear(self) -> None:
        pass


@dataclass
class _Pending:
    source: Source[Any]
    status: IntentStatus
    since: float  # when the oldest status of this intent not written yet was handed over
    failures: int = 0
    not_before: float = 0.0


class DeferredStatuses:
    """Statuses written by ``threads`` threads once ``busy`` says the work queue is empty, or ``max_defer`` after
    they were handed over; oldest first, one write per intent for however many statuses it was handed."""

    def __init__(self, write: Write, busy: Callable[[], bool], metrics: AggregatorMetrics,
                 threads: int = THREADS, max_defer: float = MAX_DEFER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._write = write
        self._busy = busy
        self._metrics = metrics
        self._max_defer = max_defer
        self._clock = clock
        self._pending: OrderedDict[IntentKey, _Pending] = OrderedDict()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._flushing = False
        self._writing = 0
        self._threads = [threading.Thread(target=self._run, name=f"status-writer-{n}", daemon=True)
                         for n in range(threads)]
        metrics.statuses_pending.set_function(self.pending)

    def start(self) -> DeferredStatuses:
        for thread in self._threads:
            thread.start()
        return self

    # --- the reconcile side ---------------------------------------------------------------------

    def submit(self, key: IntentKey, source: Source[Any], status: IntentStatus) -> None:
        with self._cond:
            waiting = self._pending.get(key)
            if waiting is None:
                self._pending[key] = _Pending(source, status, self._clock())
            else:  # the newer one replaces it and keeps its place (and its deadline): one write
                waiting.source, waiting.status, waiting.failures, waiting.not_before = source, status, 0, 0.0
            self._cond.notify()

    def forget(self, key: IntentKey) -> None:
        with self._cond:
            self._pending.pop(key, None)

    def clear(self) -> None:
        with self._cond:
            self._pending.clear()

    def pending(self) -> int:
        with self._cond:
            return len(self._pending) + self._writing

    # --- shutdown -------------------------------------------------------------------------------

    def flush(self, seconds: float) -> None:
        """Write what is waiting now, busy or not, for at most ``seconds`` (shutdown: still leading)."""
        deadline = self._clock() + seconds
        with self._cond:
            self._flushing = True
            for waiting in self._pending.values():
                waiting.not_before = 0.0
            self._cond.notify_all()
            while (self._pending or self._writing) and self._clock() < deadline:
                self._cond.wait(min(0.05, max(0.0, deadline - self._clock())))
            left = len(self._pending)
        if left:
            logger.warning("statuses not written at shutdown", extra={"intents": left})

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)

    # --- the writers ----------------------------------------------------------------------------

    def _next(self) -> tuple[IntentKey, _Pending] | None:
        """The oldest status due now, taken out of the waiting ones; None to look again (after a wait)."""
        with self._cond:
            now = self._clock()
            # oldest first; only a status being retried (put back at the end) is ever not due, so this stops at
            # the first entry but after failures: a wake costs O(1) however many statuses wait
            due = next(((key, waiting) for key, waiting in self._pending.items() if waiting.not_before <= now), None)
            if due is None:
                soonest = min((w.not_before for w in self._pending.values()), default=None)
                self._cond.wait(None if soonest is None else max(0.0, soonest - now))
                return None
            key, waiting = due
            if not self._flushing and now - waiting.since < self._max_defer and self._busy():
                self._cond.wait(min(BUSY_POLL, self._max_defer - (now - waiting.since)))
                return None
            del self._pending[key]
            self._writing += 1
            return key, waiting

    def _run(self) -> None:
        while not self._stopping.is_set():
            taken = self._next()
            if taken is None:
                continue
            key, waiting = taken
            try:
                self._write(key, waiting.source, waiting.status)
            except KubeError as error:  # a refused write too: a lease renewed late refuses writes for a moment,
                self._failed(key, waiting, error)  # and a replica that lost the lease is cleared (``clear``)
            except Exception as error:  # noqa: BLE001 - a writer thread must not die; tried again like a refusal
                self._failed(key, waiting, error)
            finally:
                with self._cond:
                    self._writing -= 1
                    self._cond.notify_all()

    def _failed(self, key: IntentKey, waiting: _Pending, error: Exception) -> None:
        self._metrics.status_write_errors.labels(str(key.kind)).inc()
        delay = RETRY_DELAYS[min(waiting.failures, len(RETRY_DELAYS) - 1)]
        with self._cond:
            if key in self._pending:
                return  # a newer status came meanwhile: that one is written instead
            waiting.failures += 1
            waiting.not_before = self._clock() + delay
            self._pending[key] = waiting
        logger.warning("status write failed; retrying", extra={"intent": str(key), "error": str(error),
                                                               "retry_in_seconds": delay,
                                                               "failures": waiting.failures})
