"""The collector's pauses as a metric, and the heap frozen at the aggregator's start-up stages (fleetdns/gcpauses.py).
These change the test process's own collector, and put it back."""

from __future__ import annotations

import gc
import threading

import pytest
from prometheus_client import CollectorRegistry

from fleetdns.gcpauses import freeze_at, watch_gc_pauses
from rig.waiting import wait_for

pytestmark = pytest.mark.unit


def test_every_collection_is_timed_by_generation() -> None:
    registry, installed = CollectorRegistry(), len(gc.callbacks)
    watch_gc_pauses(registry, "test")
    try:
        gc.collect()
        assert registry.get_sample_value("test_gc_pause_seconds_count", {"generation": "2"}) >= 1
        assert registry.get_sample_value("test_gc_pause_seconds_sum", {"generation": "2"}) > 0
    finally:
        del gc.callbacks[installed:]


def test_the_collector_is_off_until_the_caches_listed_then_the_heap_is_frozen_at_each_stage() -> None:
    listed, settled, stopping = threading.Event(), threading.Event(), threading.Event()
    thread = threading.Thread(target=freeze_at, args=([("listed", listed.is_set), ("settled", settled.is_set)],
                                                      stopping), kwargs={"poll": 0.02, "pause_until_first": True})
    try:
        thread.start()
        wait_for(lambda: not gc.isenabled(), 1, "the collector off while the caches list")
        cache = [[f"svc-{n}"] for n in range(10_000)]  # what the listing keeps (lists: always tracked)
        listed.set()
        wait_for(lambda: gc.isenabled() and gc.get_freeze_count() >= len(cache), 2,
                 "the listed heap frozen, the collector back")
        first = gc.get_freeze_count()
        more = [[f"intent-{n}"] for n in range(5_000)]  # what start-up added
        settled.set()
        wait_for(lambda: gc.get_freeze_count() >= first + 0.9 * len(more), 2, "frozen again once settled")
        thread.join(2)
        assert not thread.is_alive()
    finally:
        stopping.set()
        thread.join(2)
        gc.unfreeze()
        gc.enable()
