"""Statuses written after the answers (aggregator/controller/statuses.py): what waits, for how long, and what is
written when a write fails. The write here records what it was given (the real one, a merge patch of the status
subresource, runs in every test of the aggregator process and the whole chain)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aggregator.controller.statuses import DeferredStatuses
from aggregator.metrics import AggregatorMetrics
from aggregator.model import IntentKey, IntentKind, IntentStatus
from aggregator.sources import SOURCES
from fleetdns.kubeapi import KubeError, NotLeaderError
from rig.waiting import holds_for, wait_for

pytestmark = pytest.mark.unit

SOURCE: Any = SOURCES.for_kind(IntentKind.SERVICE)


def key(name: str) -> IntentKey:
    return IntentKey(IntentKind.SERVICE, "shop", name)


def status(healthy: int) -> IntentStatus:
    return IntentStatus(fqdn="web.example.com", healthy_clusters=healthy)


class Writes:
    """The statuses written, in order; ``fail`` raises the next ones given."""

    def __init__(self) -> None:
        self.written: list[tuple[str, int]] = []
        self.fail: list[Exception] = []
        self.lock = threading.Lock()

    def __call__(self, key: IntentKey, source: Any, status: IntentStatus) -> None:
        with self.lock:
            if self.fail:
                raise self.fail.pop(0)
            self.written.append((key.name, status.healthy_clusters))


@pytest.fixture
def world() -> Iterator[tuple[DeferredStatuses, Writes, threading.Event]]:
    writes, busy = Writes(), threading.Event()
    statuses = DeferredStatuses(writes, busy.is_set, AggregatorMetrics(), max_defer=1.0).start()
    try:
        yield statuses, writes, busy
    finally:
        statuses.stop()


def test_a_status_is_written_at_once_while_no_answer_waits(world) -> None:
    statuses, writes, _ = world
    statuses.submit(key("web"), SOURCE, status(2))
    wait_for(lambda: writes.written == [("web", 2)], 1, "the status written")
    assert statuses.pending() == 0


def test_statuses_wait_behind_a_busy_queue_and_three_decisions_cost_one_write(world) -> None:
    statuses, writes, busy = world
    busy.set()
    for healthy in (3, 2, 1):
        statuses.submit(key("web"), SOURCE, status(healthy))
    holds_for(lambda: writes.written == [], 0.3, "nothing written while the queue is busy")
    assert statuses.pending() == 1
    busy.clear()
    wait_for(lambda: writes.written == [("web", 1)], 1, "the last status written, once")
    holds_for(lambda: writes.written == [("web", 1)], 0.2, "one write only")


def test_a_status_waits_at_most_the_longest_deferral_however_busy_the_queue_stays(world) -> None:
    statuses, writes, busy = world
    busy.set()
    started = time.monotonic()
    statuses.submit(key("web"), SOURCE, status(2))
    wait_for(lambda: writes.written == [("web", 2)], 3, "the status written while the queue stays busy")
    assert 0.9 <= time.monotonic() - started < 2.5


def test_a_failed_write_is_tried_again_unless_a_newer_status_replaced_it(world) -> None:
    statuses, writes, _ = world
    writes.fail = [KubeError(500, "InternalError", "etcd timeout")]
    statuses.submit(key("web"), SOURCE, status(2))
    wait_for(lambda: writes.written == [("web", 2)], 3, "the status written on the second try")
    writes.fail = [KubeError(429, "TooManyRequests")]
    statuses.submit(key("api"), SOURCE, status(1))
    wait_for(lambda: statuses.pending() == 1 and not writes.fail, 1, "the first try failed")
    statuses.submit(key("api"), SOURCE, status(0))  # decided again meanwhile: the newer one is what is written
    wait_for(lambda: ("api", 0) in writes.written, 3, "the newer status written")
    assert ("api", 1) not in writes.written


def test_a_write_refused_for_a_late_renewal_is_tried_again_and_clear_drops_every_waiting_status(world) -> None:
    statuses, writes, busy = world
    writes.fail = [NotLeaderError()]  # the lease renewed late: still leading a moment later
    statuses.submit(key("web"), SOURCE, status(2))
    wait_for(lambda: writes.written == [("web", 2)], 3, "the status written once writes are allowed again")
    busy.set()
    statuses.submit(key("gone"), SOURCE, status(1))
    statuses.forget(key("gone"))  # the intent was deleted: nothing to write
    for name in ("a", "b"):
        statuses.submit(key(name), SOURCE, status(1))
    statuses.clear()  # the lease is lost: whoever leads next writes every status again
    busy.clear()
    holds_for(lambda: statuses.pending() == 0 and writes.written == [("web", 2)], 0.3, "nothing more written")


def test_flush_writes_what_waits_even_while_the_queue_is_busy(world) -> None:
    statuses, writes, busy = world
    busy.set()
    for name in ("a", "b", "c"):
        statuses.submit(key(name), SOURCE, status(1))
    statuses.flush(2.0)
    assert sorted(writes.written) == [("a", 1), ("b", 1), ("c", 1)]
