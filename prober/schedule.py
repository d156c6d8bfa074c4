"""When each check runs: one thread, one epoll (``checks.CheckRunner``), one timer heap.

Every probe runs once per period at a fixed phase: a hash of (region, address, check) places it in the
period, so 6,000 checks of a 5 s period are spread evenly instead of bursting together, and two regions
do not check the same address in lock-step. A new probe (at start-up, or a new intent) runs first within
``FIRST_RUN_SPREAD`` seconds at the same hashed phase, so a long period never delays the first verdict.
A probe still in flight when it is due again skips that run.
While the loop has more I/O ready than one turn handles, it starts only a few due checks per turn:
checks already open finish first, instead of every check timing out behind new ones (at 1,200 HTTPS
checks a second a saturated loop otherwise never recovers). Otherwise a turn starts due checks at most at
``CATCH_UP`` × the configured rate over the time since the previous turn (at most ``CATCH_UP_WINDOW``), and at
least ``MIN_STARTS``: a loop that fell behind (a stall, a busy spell) catches up over the next turns instead
of opening every overdue check at once. Such a burst (thousands of TLS handshakes sharing one thread) made
every one of them miss its timeout, so the checks never kept a TLS session, the next round was as costly,
and an HTTPS prober near its CPU limit stayed collapsed (docs/benchmarks-prober.md).
A prober that falls behind (a check started more than its period after it was due, or waiting for a free
slot that long, or an event loop stalled that long) is *overdue*: ``keeping_up`` says so, and the Lease is
not renewed while it is (lease.py), so a region that cannot keep up leaves the vote.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import heapq
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prober.checks import CheckRunner, CheckTarget, Outcome
from prober.targets import ProbeKey

logger = logging.getLogger("prober.schedule")
OVERDUE_HOLD = 2.0  # seconds a late start keeps the prober "overdue" (so one renewal cannot slip between)
MAX_POLL = 0.25  # the loop wakes at least this often (heartbeat, inbox)
RATE_WINDOW = 10.0  # seconds over which the achieved check rate is measured
BUSY_STARTS = 8  # checks started per turn while the loop has a full batch of I/O to handle
CATCH_UP = 2.0  # otherwise due checks start at most at this multiple of the configured rate (catching up),
CATCH_UP_WINDOW = 0.1  # over the seconds since the previous turn, counted up to this (a stall earns no burst),
MIN_STARTS = 32  # and at least this many a turn
FIRST_RUN_SPREAD = 10.0  # a new probe's first run comes within this many seconds, whatever its period
TICK = 1.0  # seconds between two calls of ``on_tick`` (housekeeping on the loop's thread: stale RTT figures)

OnOutcome = Callable[[ProbeKey, Outcome, bool], None]  # key, outcome, corroboration run


def phase(region: str, key: ProbeKey, period: float) -> float:
    """Where in its period a probe runs, in [0, period): stable for a (region, probe), uniform over probes."""
    digest = hashlib.blake2b(f"{region}\0{key.address}\0{key.check_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * period


def first_due(offset: float, period: float, now: float, wall: float) -> float:
    """The next time (on the ``now`` clock) at which wall-clock time is ``offset`` past a multiple of ``period``."""
    into = (wall - offset) % period
    return now + (period - into if into > 0 else 0.0)


def following_due(due: float, period: float, now: float) -> float:
    """The run after ``due``; runs missed while the prober was behind are skipped, the phase is kept."""
    following = due + period
    if following <= now:
        following += ((now - following) // period + 1) * period
    return following


@dataclass
class _Run:
    key: ProbeKey
    target: CheckTarget
    period: float
    timeout: float
    offset: float
    due: float = 0.0
    generation: int = 0
    in_flight: bool = False
    queued: bool = False  # waiting in the backlog for a free connection slot


class Scheduler:
    """Owns the probes' timers and the CheckRunner; everything but ``call_soon_threadsafe``, ``keeping_up``
    and the counters runs on the thread that called ``run``."""

    def __init__(self, region: str, on_outcome: OnOutcome, max_in_flight: int,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 max_poll: float = MAX_POLL) -> None:
        self.region = region
        self.max_poll = max_poll
        self.on_outcome = on_outcome
        self.max_in_flight = max_in_flight
        self.clock = clock
        self.wall = wall
        self.runner = CheckRunner(clock)
        self.runs: dict[ProbeKey, _Run] = {}
        self._timers: list[tuple[float, int, ProbeKey, int]] = []
        self._seq = itertools.count()
        self._backlog: collections.deque[tuple[ProbeKey, int, float]] = collections.deque()
        self._inbox: collections.deque[Callable[[], None]] = collections.deque()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._round: set[ProbeKey] | None = None  # probes of the first round not yet checked
        self.round_done = False
        self.configured_rate = 0.0  # checks a second the probes need
        self.started = 0  # checks started (counter, read by metrics)
        self.skipped = 0  # runs skipped: the previous check of the probe was still in flight
        self.heartbeat = clock()
        self.overdue_until = 0.0
        self.worst_lateness = 0.0  # seconds, since the last read of take_worst_lateness()
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._samples_lock = threading.Lock()
        self._periods: collections.Counter[float] = collections.Counter()  # period → probes (for keeping_up)
        self._thread_id: int | None = None
        self._busy = False  # the last poll had a whole batch of I/O ready
        self.on_tick: Callable[[float], None] = lambda now: None
        self._next_tick = clock() + TICK

    # --- from any thread -----------------------------------------------------------------------------

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        self._inbox.append(callback)
        with contextlib.suppress(OSError):  # full: the loop is awake already; closed: the loop has ended
            os.write(self._wake_w, b"\0")

    def keeping_up(self) -> tuple[bool, str]:
        """False while some check is overdue by more than its period (see the module's docstring)."""
        now = self.clock()
        shortest = min(list(self._periods), default=1.0)  # a copy: the loop thread changes it
        if now - self.heartbeat > max(shortest, 1.0):
            return False, f"check loop stalled for {now - self.heartbeat:.1f}s"
        if now < self.overdue_until:
            return False, "checks started more than a period late"
        backlog = self._backlog
        if backlog:
            key, _, due = backlog[0]
            run = self.runs.get(key)
            if run is not None and now - due > run.period:
                return False, f"{len(backlog)} checks waiting for a free connection slot"
        return True, "keeping up"

    def achieved_rate(self) -> float:
        with self._samples_lock:
            samples = list(self._samples)
        if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
            return 0.0
        return (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])

    def take_worst_lateness(self) -> float:
        worst, self.worst_lateness = self.worst_lateness, 0.0
        return worst

    # --- on the loop thread --------------------------------------------------------------------------

    def begin_round(self) -> None:
        """Start counting the first full round: every probe known now must finish one check."""
        self._round = set(self.runs)
        self._check_round()

    def add(self, key: ProbeKey, target: CheckTarget, period: float, timeout: float) -> None:
        run = _Run(key, target, period, timeout, phase(self.region, key, period))
        self.runs[key] = run
        self._periods[period] += 1
        self.configured_rate += 1.0 / period
        self._arm(run, self._first(run))

    def retime(self, key: ProbeKey, period: float, timeout: float) -> None:
        run = self.runs[key]
        self.configured_rate += 1.0 / period - 1.0 / run.period
        run.timeout = timeout
        if period != run.period:
            self._forget_period(run.period)
            self._periods[period] += 1
            run.period, run.offset = period, phase(self.region, key, period)
            run.generation += 1
            self._arm(run, self._first(run))

    def remove(self, key: ProbeKey) -> None:
        run = self.runs.pop(key, None)
        if run is None:
            return
        self.configured_rate -= 1.0 / run.period
        self._forget_period(run.period)
        run.generation += 1
        self.runner.forget_session(run.target)
        if self._round is not None:
            self._round.discard(key)
            self._check_round()

    def _forget_period(self, period: float) -> None:
        self._periods[period] -= 1
        if self._periods[period] <= 0:
            del self._periods[period]

    def run_now(self, key: ProbeKey) -> bool:
        """Run a probe at once, outside its schedule (corroboration); False when unknown or in flight."""
        run = self.runs.get(key)
        if run is None or run.in_flight or run.queued:
            return False
        self._start(run, self.clock(), corroboration=True)
        return True

    def run(self, stop: threading.Event) -> None:
        self._thread_id = threading.get_ident()
        self.runner.epoll.register(self._wake_r, 1)  # EPOLLIN
        try:
            while not stop.is_set():
                self.run_once()
        finally:
            self.runner.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def run_once(self) -> None:
        """One turn of the loop: fire due timers, run queued calls, wait for I/O (at most ``max_poll``)."""
        now = self.clock()
        since, self.heartbeat = now - self.heartbeat, now
        timers = self._timers
        budget = self._start_budget(since)
        while timers and timers[0][0] <= now and budget > 0:
            due, _, key, generation = heapq.heappop(timers)
            run = self.runs.get(key)
            if run is not None and run.generation == generation:
                self._due(run, due, now)
                budget -= 1
        self._drain_inbox()
        self._sample(now)
        if now >= self._next_tick:
            self._next_tick = now + TICK
            try:
                self.on_tick(now)
            except Exception:  # noqa: BLE001 - housekeeping must not stop the checks
                logger.exception("tick failed on the check loop")
        wake = timers[0][0] if timers else now + self.max_poll
        deadline = self.runner.next_deadline()
        if deadline is not None:
            wake = min(wake, deadline)
        self._busy = self.runner.poll(min(max(0.0, wake - self.clock()), self.max_poll) if not self._inbox else 0.0)

    def _start_budget(self, since: float) -> int:
        """How many due checks this turn may start, ``since`` seconds after the previous turn."""
        if self._busy:
            return BUSY_STARTS
        return max(MIN_STARTS, math.ceil(self.configured_rate * CATCH_UP * min(since, CATCH_UP_WINDOW)))

    def _drain_inbox(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        inbox = self._inbox
        while inbox:
            callback = inbox.popleft()
            try:
                callback()
            except Exception:  # noqa: BLE001 - one bad update must not stop the checks
                logger.exception("update failed on the check loop")

    def _sample(self, now: float) -> None:
        samples = self._samples
        if not samples or now - samples[-1][0] >= 1.0:
            with self._samples_lock:
                samples.append((now, self.started))
                while samples and now - samples[0][0] > RATE_WINDOW:
                    samples.popleft()

    def _first(self, run: _Run) -> float:
        spread = min(run.period, FIRST_RUN_SPREAD)
        return first_due(run.offset % spread, spread, self.clock(), self.wall())

    def _arm(self, run: _Run, due: float) -> None:
        run.due = due
        heapq.heappush(self._timers, (due, next(self._seq), run.key, run.generation))

    def _due(self, run: _Run, due: float, now: float) -> None:
        self._arm(run, following_due(due, run.period, now))
        if run.in_flight or run.queued:
            self.skipped += 1
            return
        if self.runner.in_flight >= self.max_in_flight:
            run.queued = True
            self._backlog.append((run.key, run.generation, due))
            return
        self._start(run, due)

    def _start(self, run: _Run, due: float, corroboration: bool = False) -> None:
        now = self.clock()
        lateness = now - due
        if lateness > self.worst_lateness:
            self.worst_lateness = lateness
        if lateness > run.period:
            self.overdue_until = now + OVERDUE_HOLD
        run.in_flight = True
        self.started += 1
        self.runner.start(run.target, run.timeout, lambda outcome: self._done(run, outcome, corroboration))

    def _done(self, run: _Run, outcome: Outcome, corroboration: bool) -> None:
        run.in_flight = False
        if self.runs.get(run.key) is run:
            try:
                self.on_outcome(run.key, outcome, corroboration)
            except Exception:  # noqa: BLE001 - one bad result must not stop every other check
                logger.exception("handling a check's outcome failed", extra={"address": run.key.address})
            if self._round is not None and run.key in self._round:
                self._round.discard(run.key)
                self._check_round()
        backlog = self._backlog
        while backlog and self.runner.in_flight < self.max_in_flight:
            key, _, due = backlog.popleft()
            waiting = self.runs.get(key)
            if waiting is not None and waiting.queued:
                waiting.queued = False
                self._start(waiting, due)

    def _check_round(self) -> None:
        if self._round is not None and not self._round and not self.round_done:
            self.round_done = True
            logger.info("first full round of checks done", extra={"probes": len(self.runs)})
