"""Leader election on a coordination.k8s.io/v1 Lease in the host cluster: one replica writes.

The rule is client-go's: a standby takes the lease only after it has seen the same holder and
renewTime unchanged for a whole lease duration (local clock; no clock sync between replicas needed);
the leader stops writing when it could not renew for the renew deadline; a clean shutdown releases
the lease (empty holder) so a standby takes over at its next retry instead of waiting it out.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fleetdns.apipaths import LEASES
from fleetdns.kubeapi import KubeClient, KubeError

logger = logging.getLogger("fleetdns.leader")


def micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    def __init__(self, client: KubeClient, namespace: str, name: str, identity: str, lease_duration: float,
                 renew_deadline: float, retry_period: float, on_change: Callable[[bool], None],
                 clock: Callable[[], float] = time.monotonic, labels: dict[str, str] | None = None,
                 annotations: Callable[[], dict[str, str]] | None = None) -> None:
        """``annotations``: what the holder says on the Lease with each renewal (read at every write)."""
        self.client = client
        self.path = LEASES.path(namespace, name)
        self.collection = LEASES.path(namespace)
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_change = on_change
        self.clock = clock  # monotonic; injectable so tests step it instead of sleeping
        self.labels = dict(labels or {})  # on the Lease (created with them, added if missing when renewed)
        self.annotations = annotations or dict
        self.leading = False
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._last_renew = 0.0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)

    def holds_fresh_lease(self) -> bool:
        """True only while leading AND renewed within the renew deadline (monotonic clock).

        Fences writes: a replica frozen (GC pause, SIGSTOP, VM stall) past its deadline may resume with
        ``leading`` still set before its election loop notices; its writes are refused until renewal.
        """
        return self.leading and self.clock() - self._last_renew < self.renew_deadline

    def start(self) -> LeaseElector:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop campaigning and release the lease if held."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.retry_period + 5)
        if self.leading:
            self._set_leading(False)
            self._release()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.tick()
            self._stopping.wait(self.retry_period)

    def tick(self) -> bool:
        """One round: acquire or renew, or stand down past the renew deadline; returns whether leading."""
        try:
            acquired = self._try_acquire_or_renew()
        except KubeError as error:
            logger.warning("lease request failed", extra={"lease": self.name, "error": str(error)})
            acquired = False
        now = self.clock()
        if acquired:
            self._last_renew = now
            self._set_leading(True)
        elif self.leading and now - self._last_renew >= self.renew_deadline:
            logger.error("lease not renewed within the renew deadline; standing down",
                         extra={"lease": self.name})
            self._set_leading(False)
        return self.leading

    def _set_leading(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            logger.info("leadership " + ("acquired" if leading else "lost"),
                        extra={"lease": self.name, "identity": self.identity})
            self.on_change(leading)

    def _spec(self, previous: dict[str, Any]) -> dict[str, Any]:
        now = micro_time()
        taking_over = previous.get("holderIdentity") != self.identity
        spec = dict(previous)
        spec.update({"holderIdentity": self.identity, "leaseDurationSeconds": math.ceil(self.lease_duration),
                     "renewTime": now})
        if taking_over:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(previous.get("leaseTransitions") or 0) + (1 if previous else 0)
        return spec

    def _try_acquire_or_renew(self) -> bool:
        try:
            lease = self.client.get(self.path, timeout=max(1.0, self.retry_period))
        except KubeError as error:
            if error.status != 404:
                raise
            body = LEASES.manifest(self.name, spec=self._spec({}))
            if self.labels:
                body["metadata"]["labels"] = dict(self.labels)
            if annotations := self.annotations():
                body["metadata"]["annotations"] = annotations
            try:
                self.client.create(self.collection, body)
            except KubeError as create_error:
                if create_error.status == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self.clock() < self._observed_at + duration:
            return False
        lease["spec"] = self._spec(spec)
        metadata = lease.setdefault("metadata", {})
        if self.labels:
            metadata["labels"] = {**(metadata.get("labels") or {}), **self.labels}
        if annotations := self.annotations():
            metadata["annotations"] = {**(metadata.get("annotations") or {}), **annotations}
        try:
            self.client.replace(self.path, lease)  # resourceVersion in metadata: optimistic concurrency
        except KubeError as error:
            if error.status == 409:
                return False
            raise
        return True

    def _release(self) -> None:
        try:
            lease = self.client.get(self.path, timeout=3)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            spec.update({"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": micro_time()})
            lease["spec"] = spec
            self.client.replace(self.path, lease)
            logger.info("lease released", extra={"lease": self.name, "identity": self.identity})
        except KubeError as error:
            logger.warning("lease not released", extra={"lease": self.name, "error": str(error)})
