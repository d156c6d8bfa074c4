"""Kubernetes Events, posted off the reconcile path: a reconcile hands an event to the recorder and goes
on; one background thread posts them. A slow or forbidden events API therefore never slows a reconcile.

As client-go's recorder: a repeat of the same event (same object, type, reason and message) bumps
``count`` and ``lastTimestamp`` of the existing Event instead of adding another (repeats still waiting
are merged before they are posted). The queue is bounded (an event is informative; memory is not
spent on a backlog the API will not take): a full queue, an API that refuses (403, 422) or keeps
failing, and what is still waiting at shutdown past the flush deadline are dropped and counted.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from aggregator.metrics import AggregatorMetrics
from aggregator.render.events import InvolvedObject
from aggregator.render.status import now_rfc3339
from fleetdns.apipaths import EVENTS
from fleetdns.kubeapi import KubeClient, KubeError

logger = logging.getLogger("aggregator.events")
COMPONENT = "fleetdns-aggregator"
QUEUE_CAPACITY = 1000  # distinct events waiting; more are dropped (counted)
RETRIES = (0.5, 1.0, 2.0)  # waits before retrying an event the API did not answer (or answered 429/5xx)
FLUSH_SECONDS = 2.0  # SIGTERM: how long waiting events may still be posted
MESSAGE_LIMIT = 1024


def event_suffix(uid: str, kind: str, reason: str, message: str) -> str:
    """Same object, type, reason and message -> same Event name, so repeats are counted on one Event."""
    return hashlib.sha256("\0".join((uid, kind, reason, message)).encode()).hexdigest()[:16]


@dataclass
class _Pending:
    involved: InvolvedObject
    kind: str  # Normal or Warning
    reason: str
    message: str
    first: str
    last: str
    count: int = 1


class EventRecorder:
    """A bounded queue of events and the one thread that posts them."""

    def __init__(self, client: KubeClient, metrics: AggregatorMetrics, identity: str,
                 capacity: int = QUEUE_CAPACITY) -> None:
        self.client = client
        self.metrics = metrics
        self.identity = identity
        self.capacity = capacity
        self._pending: OrderedDict[str, _Pending] = OrderedDict()  # Event name -> what to post, oldest first
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = threading.Event()
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="event-recorder", daemon=True)
        metrics.events_pending.set_function(lambda: len(self._pending))

    # --- the reconcile side -------------------------------------------------------------------

    def record(self, involved: InvolvedObject, kind: str, reason: str, message: str) -> None:
        message = message[:MESSAGE_LIMIT]
        name = f"{involved.name}.{event_suffix(involved.uid, kind, reason, message)}"
        stamp = now_rfc3339()
        with self._cond:
            waiting = self._pending.get(name)
            if waiting is not None:
                waiting.count += 1
                waiting.last = stamp
                return
            if self._stopping.is_set() or len(self._pending) >= self.capacity:
                self._dropped(reason, "queue_full" if not self._stopping.is_set() else "shutdown", involved)
                return
            self._pending[name] = _Pending(involved, kind, reason, message, stamp, stamp)
            self._cond.notify()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> EventRecorder:
        self._thread.start()
        return self

    def flush(self, timeout: float) -> bool:
        """Wait until every event handed in so far was posted (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self, flush_seconds: float = FLUSH_SECONDS) -> None:
        """Stop taking events; post what waits for at most ``flush_seconds``, drop (and count) the rest."""
        with self._cond:
            self._deadline = time.monotonic() + flush_seconds
            self._stopping.set()
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(flush_seconds + 0.5)
        with self._cond:
            for waiting in self._pending.values():
                self._dropped(waiting.reason, "shutdown", waiting.involved)
            self._pending.clear()

    # --- the posting thread -------------------------------------------------------------------

    def _next(self) -> tuple[str, _Pending] | None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()
            while not self._pending:
                if self._stopping.is_set():
                    return None
                self._cond.wait()
            if time.monotonic() >= self._deadline:
                return None
            self._busy = True
            return self._pending.popitem(last=False)

    def _run(self) -> None:
        while (item := self._next()) is not None:
            name, event = item
            try:
                self._post(name, event)
            except Exception:  # noqa: BLE001 - a bug here must not end event posting for good
                logger.exception("event recorder failed", extra={"event": name})
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def _post(self, name: str, event: _Pending) -> None:
        for wait in (*RETRIES, None):
            try:
                self._create_or_count(name, event)
            except KubeError as error:
                transient = error.status in (0, 429) or error.status >= 500
                if transient and wait is not None and self._wait_before_retry(wait):
                    continue
                cause = "failed" if transient else "refused"
                self._dropped(event.reason, cause, event.involved, error)
                return
            self.metrics.events.labels(event.reason).inc()
            return

    def _wait_before_retry(self, seconds: float) -> bool:
        """Sleep before a retry unless shutting down past the flush deadline."""
        if time.monotonic() + seconds >= self._deadline:
            return False
        self._stopping.wait(seconds)  # a shutdown cuts the wait short; the retry then runs at once
        return True

    def _create_or_count(self, name: str, event: _Pending) -> None:
        namespace = event.involved.namespace or "default"
        body = EVENTS.manifest(name, namespace) | {
            "involvedObject": event.involved.to_json(), "type": event.kind, "reason": event.reason,
            "message": event.message, "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
            "reportingInstance": self.identity, "firstTimestamp": event.first, "lastTimestamp": event.last,
            "count": event.count,
        }
        try:
            self.client.create(EVENTS.path(namespace), body)
            return
        except KubeError as error:
            if error.status != 409:
                raise
        existing: dict[str, Any] = self.client.get(EVENTS.path(namespace, name))
        existing["count"] = int(existing.get("count") or 1) + event.count
        existing["lastTimestamp"] = event.last
        existing["reportingInstance"] = self.identity
        self.client.replace(EVENTS.path(namespace, name), existing)

    def _dropped(self, reason: str, cause: str, involved: InvolvedObject, error: KubeError | None = None) -> None:
        self.metrics.events_dropped.labels(reason, cause).inc()
        logger.warning("event not recorded", extra={
            "object": f"{involved.kind}/{involved.namespace}/{involved.name}", "reason": reason, "cause": cause,
            "error": str(error) if error is not None else ""})
