"""A clock the test steps by hand, for code that takes ``clock=`` (thresholds, leases, retries, lag)."""

from __future__ import annotations


class SteppedClock:
    """Returns ``now`` until the test moves it (``clock.now += seconds``): no sleeping, no flakes."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
