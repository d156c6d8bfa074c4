"""How long CPython's cyclic garbage collector stops the process, as a Prometheus histogram.

A collection of the oldest generation walks every container object the process holds: with a large cache (an
aggregator watching 100,000 member objects) one pause can take longer than a reconcile, and every thread waits
for it. ``watch_gc_pauses`` times each collection through ``gc.callbacks``, so a latency tail can be matched
against the collector's pauses instead of guessed."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

logger = logging.getLogger("fleetdns.gc")
PAUSE_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def watch_gc_pauses(registry: CollectorRegistry, namespace: str) -> Histogram:
    """``<namespace>_gc_pause_seconds{generation}``: every collection from now on (the process's, any thread's)."""
    pauses = Histogram(f"{namespace}_gc_pause_seconds", "Garbage-collector pauses by generation collected "
                       "(every thread stops for them)", ["generation"], buckets=PAUSE_BUCKETS, registry=registry)
    for generation in range(3):
        pauses.labels(str(generation))
    started: list[float] = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.labels(str(info.get("generation", 0))).observe(time.perf_counter() - started[0])

    gc.callbacks.append(callback)
    return pauses


PAUSED_AT_MOST = 120.0  # seconds the collector may stay off waiting for the first stage (a cache that never lists)


def freeze_at(stages: Sequence[tuple[str, Callable[[], bool]]], stopping: threading.Event, poll: float = 0.5,
              pause_until_first: bool = False) -> None:
    """At each stage in turn (a name and a condition that must hold twice in a row), move everything alive into the
    collector's permanent generation (``gc.freeze``): what is alive then is never walked again, so a full
    collection's pause scales with what changed since, not with the fleet. An aggregator freezes once its caches
    have listed (the bulk of its heap: the start-up's own collections then skip it) and once start-up has settled.
    Objects frozen are still freed when their last reference goes (caches hold no reference cycles). No collection
    first: on a heap that size one stops every thread for seconds (2.4 s measured at 2,000 intents), and the few
    cycles frozen with the rest cost less. ``pause_until_first``: the collector is off until the first stage (at most
    ``PAUSED_AT_MOST`` seconds): listing 100,000 objects otherwise pays a dozen full collections of a growing heap,
    and what a list allocates (parsed JSON) is freed by reference counting anyway. Run on a thread."""
    if pause_until_first:
        gc.disable()
    deadline = time.monotonic() + PAUSED_AT_MOST
    for index, (stage, condition) in enumerate(stages):
        before = False
        while not stopping.wait(poll):
            now = condition()
            if index == 0 and pause_until_first and not now and time.monotonic() > deadline and not gc.isenabled():
                gc.enable()
                logger.warning("garbage collector back on before the caches listed", extra={"stage": stage})
            if now and before:
                started = time.perf_counter()
                gc.freeze()  # before the collector is back: its first run must find the listed heap frozen
                if index == 0 and pause_until_first:
                    gc.enable()
                logger.info("heap frozen for the garbage collector", extra={
                    "stage": stage, "objects": gc.get_freeze_count(),
                    "seconds": round(time.perf_counter() - started, 3)})
                break
            before = now
