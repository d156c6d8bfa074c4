"""The region's Lease ``fleetdns-prober-<region>``: the region's vote, and its single-writer lock.

The aggregator counts a region as a voter while this Lease has a holder and its renewTime keeps
changing, so the Lease says "this region's reports are current". It is therefore renewed (every 2 s,
leaseDurationSeconds 10) only while the checks are: after the first full round of checks, and while no
check is overdue by more than its period. Each renewal also says whether the reports on the host are
(annotation ``fleetdns.io/reports-current``): a replica that takes the Lease (after a start, or back
from a cut off the host) has not yet rewritten them, and the aggregator counts none of its renewals
until one says "true" (renewed at once when the writes catch up), so a region back from a cut never
votes with what it saw before the cut. A replica that cannot keep up stops renewing; its writes are
fenced 8 s later and a standby replica of the same region (one that keeps up) takes the Lease over after
10 s. A clean shutdown releases it (empty holder), so the region leaves the vote at once instead of
after the grace period. Election rules are ``fleetdns/leader.py``'s (client-go's).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from fleetdns.healthreport import REGION_LABEL, REPORTS_CURRENT_ANNOTATION, prober_lease_name
from fleetdns.kubeapi import KubeClient
from fleetdns.leader import LeaseElector

logger = logging.getLogger("prober.lease")
LEASE_DURATION = 10.0
RENEW_DEADLINE = 8.0  # shorter than the duration: this replica stops writing before a standby may take over
RETRY_PERIOD = 2.0

Current = Callable[[], tuple[bool, str]]  # (reports are current, why not)
Behind = Callable[[], str]  # why the reports on the host may lag the verdicts ("": they do not)


class RegionLease:
    def __init__(self, client: KubeClient, namespace: str, region: str, identity: str, current: Current,
                 on_change: Callable[[bool], None], retry_period: float = RETRY_PERIOD,
                 behind: Behind = lambda: "") -> None:
        self.current = current
        self.behind = behind
        self.retry_period = retry_period
        self.elector = LeaseElector(client, namespace, prober_lease_name(region), identity, LEASE_DURATION,
                                    RENEW_DEADLINE, retry_period, on_change, labels={REGION_LABEL: region},
                                    annotations=self._annotations)
        self._said_behind: str | None = None  # what the last renewal said about the reports (None: none yet)
        self._wake = threading.Event()
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

    def wake(self) -> None:
        """Renew now rather than at the next period (the reports just caught up: the Lease should say so)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop renewing and release the Lease if this replica holds it."""
        self._stopping.set()
        self._wake.set()
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
            self._wake.wait(self.retry_period)
            self._wake.clear()

    def _annotations(self) -> dict[str, str]:
        """What this renewal says about the reports on the host (logged when that changes)."""
        behind = self.behind()
        if behind != self._said_behind:
            if behind:
                logger.info("renewing the Lease with the reports not current", extra={
                    "lease": self.elector.name, "reason": behind})
            elif self._said_behind is not None:
                logger.info("reports current again; the Lease says so", extra={"lease": self.elector.name})
            self._said_behind = behind
        return {REPORTS_CURRENT_ANNOTATION: "false" if behind else "true"}
