"""The work queue: a key handed to one worker at a time, delayed adds, per-key rate limits on a capped
exponential backoff, shutdown."""

from __future__ import annotations

import threading
import time

import pytest

from aggregator.model import IntentKey, IntentKind
from fleetdns.workqueue import RETRY_BASE_DELAY, RETRY_MAX_DELAY, WorkQueue, backoff_delay

pytestmark = pytest.mark.unit


def test_queue_deduplicates_and_never_hands_a_key_to_two_workers() -> None:
    queue: WorkQueue[IntentKey] = WorkQueue()
    key = IntentKey(IntentKind.SERVICE, "shop", "web")
    queue.add(key)
    queue.add(key)
    assert len(queue) == 1
    got = queue.get(timeout=1)
    assert got is not None and got[0] == key
    queue.add(key)  # changed while processing: waits until done
    assert queue.get(timeout=0.05) is None
    queue.done(key)
    assert queue.get(timeout=1) is not None


def test_queue_add_after_delivers_later() -> None:
    queue: WorkQueue[str] = WorkQueue()
    started = time.monotonic()
    queue.add_after("later", 0.2)
    assert queue.get(timeout=1) is not None
    assert time.monotonic() - started >= 0.19


def test_backoff_doubles_from_half_a_second_and_holds_its_cap() -> None:
    assert [backoff_delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert (RETRY_BASE_DELAY, RETRY_MAX_DELAY) == (0.5, 300.0)
    assert backoff_delay(9) == 256.0 and backoff_delay(10) == 300.0
    assert backoff_delay(10_000) == 300.0  # no overflow however long an intent keeps failing


def test_rate_limited_delays_grow_per_key_and_forget_resets() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=10, max_delay=35)
    assert [queue.add_rate_limited("broken") for _ in range(4)] == [10, 20, 35, 35]
    assert queue.failures("broken") == 4
    assert queue.add_rate_limited("other") == 10  # per key: one failing intent does not slow the others
    queue.forget("broken")
    assert queue.failures("broken") == 0
    assert queue.add_rate_limited("broken") == 10


def test_rate_limited_key_is_delivered_after_its_delay_and_only_once() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=0.1, max_delay=1.0)
    started = time.monotonic()
    queue.add_rate_limited("k")
    got = queue.get(timeout=2)
    assert got is not None and got[0] == "k" and time.monotonic() - started >= 0.09
    queue.done("k")
    # a retry pending and a change meanwhile: the change is handed out at once ...
    queue.add_rate_limited("k")
    queue.add("k")
    got = queue.get(timeout=0.05)
    assert got is not None and got[0] == "k"
    # ... the retry comes due while it is processed: no second worker gets the key
    assert queue.get(timeout=0.4) is None
    queue.done("k")
    assert queue.get(timeout=1) is not None  # the retry, once, after done
    queue.done("k")
    assert queue.get(timeout=0.4) is None


def test_queue_shutdown_wakes_waiting_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    results: list[object] = []
    worker = threading.Thread(target=lambda: results.append(queue.get()))
    worker.start()
    queue.shutdown()
    worker.join(2)
    assert results == [None]
