"""Pacing requests to an API server that does not answer: one shared gate per server, not one backoff per watch.

A member runs an informer per kind (a dozen with the Gateway API and OpenShift sources) and a ``/readyz``
probe. When its API server stops answering (connection refused, or accepted and never answered), each
informer retrying on its own multiplies the connection rate by the number of kinds, forever. The
informers (and the probe) of one server therefore share a ``ServerGate``: while the server answers it is
open and costs nothing; once a request gets no answer it closes, and from then on one request at a time
tries the server, after a delay that doubles from 0.2 s to 30 s with ±20 % jitter (client-go's reflector
backs off to the same cap); the others wait. The first answer opens the gate, resets the delay and wakes
every waiter at once, so all the informers resume together and a short blip costs about a second.

A server that refuses connections (nothing listens: it is restarting) costs nothing to try, so its delay stops
at 2 s instead: after a host or member API server restart every informer is back within about 2 s of it
listening again, whatever the outage's length. Only a server that accepts and does not answer, or a network
that drops the connection attempt, is tried at the 30 s cap; that delay starts over after refusals (a server
that listens again after refusing is starting up, and accepts before it answers: it is not hung).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from collections.abc import Callable

from fleetdns.kubeapi import KubeClient

logger = logging.getLogger("fleetdns.backoff")
BACKOFF_START, BACKOFF_MAX, BACKOFF_JITTER = 0.2, 30.0, 0.2
REFUSED_MAX = 2.0  # the cap while the server refuses connections: no server resources spent, fast recovery


class Backoff:
    """Exponential delays with jitter: ``start``, doubling per ``next()``, capped at ``cap``; ``reset`` starts over."""

    def __init__(self, start: float = BACKOFF_START, cap: float = BACKOFF_MAX, jitter: float = BACKOFF_JITTER) -> None:
        self.start, self.cap, self.jitter = start, cap, jitter
        self._base = start

    def next(self) -> float:
        """The delay to wait now (jittered so that many clients do not retry in step); the next one doubles."""
        base, self._base = self._base, min(self._base * 2, self.cap)
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        self._base = self.start

    @property
    def at_cap(self) -> bool:
        return self._base >= self.cap


class ServerGate:
    """Whether one API server answers, shared by every informer and probe on it (thread-safe).

    Callers ``enter`` before each request and report its outcome: ``answered`` (any HTTP answer, even an
    error: the server is there) or ``unanswered`` (no answer). ``retry_interval`` is 0 while the server
    answers, else the current delay between tries (for a metric).
    """

    def __init__(self, name: str, backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._backoff = backoff or Backoff()
        self._refused_backoff = Backoff(self._backoff.start, min(REFUSED_MAX, self._backoff.cap), self._backoff.jitter)
        self._clock = clock
        self._cond = threading.Condition()
        self._open = True
        self._trial: int | None = None  # the thread whose request is trying the closed server
        self._next_try = 0.0
        self._interval = 0.0
        self._closed_at = 0.0
        self._failed_tries = 0
        self._capped = False  # the delay reached its cap during this outage (logged once)

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def retry_interval(self) -> float:
        """Seconds between tries while the server does not answer; 0 while it answers."""
        return 0.0 if self._open else self._interval

    def enter(self, stopping: threading.Event) -> bool:
        """Wait until the caller may send a request: at once while the server answers; while it does not,
        only one caller at a time, once the delay has passed (the others wait for the answer). False when
        ``stopping`` is set meanwhile (``wake`` makes a waiter see it at once)."""
        me = threading.get_ident()
        with self._cond:
            while not stopping.is_set():
                if self._open or self._trial == me:
                    return True
                wait = self._next_try - self._clock()
                if self._trial is None and wait <= 0:
                    self._trial = me
                    return True
                self._cond.wait(wait if self._trial is None else None)
            return False

    def answered(self) -> None:
        """The server answered: open the gate, start the delay over and let every waiter go."""
        if self._open:  # the common case, without the lock: a stale read only delays the same call by nothing
            return
        with self._cond:
            if self._open:
                return
            self._open, self._trial = True, None
            self._backoff.reset()
            self._refused_backoff.reset()
            self._cond.notify_all()
            logger.info("API server answering again; every request resumes", extra={
                "server": self.name, "unanswered_seconds": round(self._clock() - self._closed_at, 1),
                "failed_tries": self._failed_tries})

    def unanswered(self, detail: str, refused: bool = False) -> float:
        """A request got no answer (``refused``: nothing listens); returns the delay before the next try.
        Failures of requests sent before the gate closed do not count again: only the one trying the closed
        server doubles the delay."""
        me = threading.get_ident()
        with self._cond:
            now = self._clock()
            if self._open:
                self._open, self._closed_at, self._failed_tries, self._capped = False, now, 0, False
                self._backoff.reset()
                self._refused_backoff.reset()
                self._schedule(now, refused)
                logger.warning("API server not answering; trying one request at a time with backoff", extra={
                    "server": self.name, "detail": detail, "retry_in_seconds": round(self._interval, 2)})
            elif self._trial == me:
                self._trial = None
                self._failed_tries += 1
                self._schedule(now, refused)
                if not self._capped:  # one line per longer delay; at the cap the metric says the rest
                    self._capped = self._backoff.at_cap
                    logger.info("API server still not answering; next try later", extra={
                        "server": self.name, "detail": detail, "retry_in_seconds": round(self._interval, 2),
                        "unanswered_seconds": round(now - self._closed_at, 1), "failed_tries": self._failed_tries})
            return max(0.0, self._next_try - now)

    def leave(self) -> None:
        """The caller's request ended without saying whether the server answered (it is stopping): a try it
        held goes to another caller now."""
        me = threading.get_ident()
        with self._cond:
            if self._trial == me:
                self._trial = None
                self._cond.notify_all()

    def wake(self) -> None:
        """Let every waiter look at its stop event again."""
        with self._cond:
            self._cond.notify_all()

    def _schedule(self, now: float, refused: bool) -> None:
        if refused:  # the delay for a server that accepts and does not answer starts over once it listens again
            self._interval = self._refused_backoff.next()
            self._backoff.reset()
        else:
            self._interval = self._backoff.next()
        self._next_try = now + self._interval
        self._cond.notify_all()


_gates: weakref.WeakKeyDictionary[KubeClient, ServerGate] = weakref.WeakKeyDictionary()
_gates_lock = threading.Lock()


def gate_for(client: KubeClient) -> ServerGate:
    """The gate of the API server ``client`` talks to: every informer and probe on one client shares it,
    so a member's kinds cannot multiply the requests to a server that does not answer."""
    with _gates_lock:
        gate = _gates.get(client)
        if gate is None:
            gate = _gates[client] = ServerGate(str(client.host))
        return gate
