"""The thresholded state of one (intent, address) as this region sees it: pure, driven by an explicit clock.

| state   | on success                                   | on failure                                   |
|---------|----------------------------------------------|----------------------------------------------|
| Unknown | → Up                                         | → Down (the first result settles it)         |
| Up      | reset failures                               | ``failureThreshold`` consecutive → Down       |
| Down    | ``successThreshold`` consecutive → Up        | reset successes                              |

Only a flip (and the first settling) can change what the region reports, so reports are written per
change, not per period. Identical checks of several intents run once (``targets.py``) at the shortest
period and the longest timeout among them; each intent still judges every result with its own timeout
and counts results at its own period (``counts``), so sharing never changes an intent's thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from prober.checks import Outcome


class State(StrEnum):
    UNKNOWN = "Unknown"
    UP = "Up"
    DOWN = "Down"


def judge(outcome: Outcome, timeout: float) -> tuple[bool, str]:
    """Whether ``outcome`` is a success for a check whose own timeout is ``timeout``, and its message."""
    if outcome.elapsed <= timeout:
        return outcome.up, outcome.message
    if outcome.connected is None or outcome.connected > timeout:
        return False, f"connect timeout after {timeout:g}s"
    return False, f"response timeout after {timeout:g}s"


@dataclass
class Threshold:
    """Consecutive results of one check for one intent; ``observe`` returns True when the state changes."""

    failure_threshold: int
    success_threshold: int
    period: float
    state: State = State.UNKNOWN
    failures: int = 0
    successes: int = 0
    message: str = ""
    changed_at: float = 0.0  # the clock's time of the last change of state
    last_counted: float | None = None

    def counts(self, now: float, probe_period: float) -> bool:
        """Whether a result of a check run every ``probe_period`` counts for this intent (period ≥ probe's):
        at most one result per own period, with half the shared check's period of slack for jitter."""
        if self.last_counted is None or self.period <= probe_period:
            return True
        return now - self.last_counted >= self.period - probe_period / 2

    def observe(self, success: bool, message: str, now: float) -> bool:
        self.last_counted = now
        if success:
            self.failures = 0
            self.successes += 1
            flip = self.state is State.UNKNOWN or (self.state is State.DOWN and
                                                    self.successes >= self.success_threshold)
            new = State.UP
        else:
            self.successes = 0
            self.failures += 1
            flip = self.state is State.UNKNOWN or (self.state is State.UP and
                                                    self.failures >= self.failure_threshold)
            new = State.DOWN
        if flip:
            self.state, self.message, self.changed_at = new, message, now
            self.failures = self.successes = 0
        return flip
