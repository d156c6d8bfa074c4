"""Thresholds on a stepped clock: a check flips Down or Up only after its consecutive failures or successes, one
result per period, per intent (its own period and timeout)."""

from __future__ import annotations

import pytest

from prober.checks import Outcome, Result
from prober.thresholds import State, Threshold, judge

pytestmark = pytest.mark.unit


# --- thresholds: a stepped clock, one result per period -------------------------------------------

def feed(threshold: Threshold, results: str, period: float = 1.0, start: float = 0.0) -> list[State]:
    """'+' success, '-' failure, one per period; the state after each."""
    states = []
    for i, mark in enumerate(results):
        threshold.observe(mark == "+", "ok" if mark == "+" else "HTTP 500", start + i * period)
        states.append(threshold.state)
    return states


def test_the_first_result_settles_an_unknown_check_either_way():
    assert feed(Threshold(3, 2, 1.0), "-") == [State.DOWN]
    assert feed(Threshold(3, 2, 1.0), "+") == [State.UP]


def test_down_only_after_failure_threshold_consecutive_failures_and_a_success_resets_the_count():
    threshold = Threshold(3, 1, 1.0)
    assert feed(threshold, "+--+--") == [State.UP] * 6
    assert feed(threshold, "-", start=6) == [State.DOWN]
    assert threshold.message == "HTTP 500"
    assert threshold.changed_at == 6


def test_up_again_only_after_success_threshold_consecutive_successes_separately_from_failures():
    threshold = Threshold(failure_threshold=1, success_threshold=3, period=1.0)
    assert feed(threshold, "+-") == [State.UP, State.DOWN]
    assert feed(threshold, "++-++", start=2) == [State.DOWN] * 5  # a failure resets the successes
    assert feed(threshold, "+", start=7) == [State.UP]


def test_observe_reports_exactly_the_flips():
    threshold = Threshold(2, 2, 1.0)
    flips = [threshold.observe(mark == "+", "", float(i)) for i, mark in enumerate("++--+-++")]
    assert flips == [True, False, False, True, False, False, False, True]


def test_an_intent_with_a_longer_period_counts_one_result_of_a_shared_check_per_own_period():
    threshold = Threshold(2, 1, period=10.0)  # this intent: every 10 s; the shared check runs every 5 s
    counted = []
    for second in range(0, 41, 5):
        if threshold.counts(float(second), probe_period=5.0):
            threshold.observe(False, "HTTP 500", float(second))
            counted.append(second)
    assert counted == [0, 10, 20, 30, 40]
    same_period = Threshold(2, 1, period=5.0)
    same_period.observe(True, "", 0.0)
    assert same_period.counts(4.0, probe_period=5.0)  # an equal period counts every result, late or early


def test_a_result_slower_than_an_intents_own_timeout_is_a_failure_for_that_intent():
    late = Outcome(Result.UP, "HTTP 200", elapsed=1.5, connected=0.2)
    assert judge(late, 2.0) == (True, "HTTP 200")
    assert judge(late, 1.0) == (False, "response timeout after 1s")
    assert judge(Outcome(Result.TIMEOUT, "connect timeout after 3s", 3.0), 1.0) == (False, "connect timeout after 1s")
