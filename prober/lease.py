"""The region's Lease ``fleetdns-prober-<region>``: the region's vote, and its single-writer lock.

The aggregator counts a region as a voter while this Lease has a holder and its renewTime keeps
changing, so the Lease says "this region's reports are current". It is therefore renewed (every 2 s,
leaseDurationSeconds 10) only while that is true: after the first full round of checks, and while no
check is overdue by more than its period. A replica that cannot keep up stops renewing; its writes are
fenced 8 s later and a standby replica of the same region (one that keeps up) takes the Lease over after
10 s. A clean shutdown releases it (empty holder), so the region leaves the vote at once instead of
after the grace period. Election rules are ``fleetdns/leader.py``'s (client-go's).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from fleetdns.healthreport import REGION_LABEL, prober_lease_name
from fleetdns.kubeapi import KubeClient
from fleetdns.leader import LeaseElector

logger = logging.getLogger("prober.lease")
LEASE_DURATION = 10.0
RENEW_DEADLINE = 8.0  # shorter than the duration: this replica stops writing before a standby may take over
RETRY_PERIOD = 2.0

Current = Callable[[], tuple[bool, str]]  # (reports are current, why not)


class RegionLease:
    def __init__(self, client: KubeClient, namespace: str, region: str, identity: str, current: Current,
                 on_change: Callable[[bool], None], retry_period: float = RETRY_PERIOD) -> None:
        self.current = current
        self.retry_period = retry_period
        self.elector = LeaseElector(client, namespace, prober_lease_name(region), identity, LEASE_DURATION,
                                    RENEW_DEADLINE, retry_period, on_change, labels={REGION_LABEL: region})
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="region-lease", daemon=True)
        self._held_back: str | None = None

    @property
    def held_back(self) -> str | None:
        """Why the loop last declined to renew (None while it renews); set only after any renewal under way ended."""
        return self._held_back

    def holds(self) -> bool:
        """Whether reports may be written now (leading and renewed within the renew deadline)."""
        return self.elector.holds_fresh_lease()

    def start(self) -> RegionLease:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing and release the Lease if this replica holds it."""
        self._stopping.set()
        self._thread.join(timeout=self.retry_period + 5)
        self.elector.stop()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                ok, why = self.current()
            except Exception as error:  # noqa: BLE001 - unsure means not current; the loop must go on
                ok, why = False, f"cannot tell whether reports are current ({error!r})"
            if ok:
                if self._held_back is not None:
                    logger.info("reports current again; renewing the Lease", extra={"lease": self.elector.name})
                self._held_back = None
                self.elector.tick()
            elif why != self._held_back:
                logger.warning("not renewing the Lease", extra={"lease": self.elector.name, "reason": why})
                self._held_back = why
            self._stopping.wait(self.retry_period)
