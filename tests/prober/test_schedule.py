"""The scheduler: phases spread over the period, due times that skip missed runs, keeping up (the Lease is renewed
only while it does), and catching up after a stall at a bounded rate."""

from __future__ import annotations

import pytest

from fleetdns.healthcheck import HealthCheck, TcpSocket
from prober.checks import Outcome, check_target
from prober.schedule import first_due, following_due, phase
from prober.targets import ProbeKey
from rig.waiting import wait_for

pytestmark = pytest.mark.unit


# --- schedule -------------------------------------------------------------------------------------

def test_phases_spread_probes_over_the_period_and_differ_between_regions():
    keys = [ProbeKey(f"198.18.0.{i}", "abc") for i in range(1000)]
    east = [phase("east", key, 5.0) for key in keys]
    assert all(0 <= p < 5.0 for p in east)
    per_second = [sum(1 for p in east if s <= p < s + 1) for s in range(5)]
    assert min(per_second) > 150  # about 200 each: no second carries the whole load
    west = [phase("west", key, 5.0) for key in keys]
    assert sum(1 for e, w in zip(east, west, strict=True) if abs(e - w) < 0.05) < 50


def test_due_times_keep_their_phase_and_skip_missed_runs():
    due = first_due(offset=1.5, period=5.0, now=100.0, wall=1_000_002.0)  # wall 2.0 into the period: 4.5 to go
    assert due == pytest.approx(104.5)
    assert following_due(104.5, 5.0, now=104.6) == pytest.approx(109.5)
    assert following_due(104.5, 5.0, now=121.0) == pytest.approx(124.5)  # behind: runs in between are skipped


# --- keeping up (the Lease is renewed only while it does) ------------------------------------------

def test_a_scheduler_that_falls_more_than_a_period_behind_is_not_keeping_up_until_it_catches_up():
    from prober.schedule import OVERDUE_HOLD, Scheduler
    from rig.ports import free_port

    now = [100.0]
    outcomes: list[Outcome] = []
    scheduler = Scheduler("east", lambda key, outcome, corroborated: outcomes.append(outcome), max_in_flight=10,
                          clock=lambda: now[0], wall=lambda: 1_000_000.0, max_poll=0.01)
    target = check_target("127.0.0.1", HealthCheck(tcp_socket=TcpSocket(free_port())))  # closed: refused at once
    scheduler.add(ProbeKey("127.0.0.1", "tcp"), target, period=1.0, timeout=1.0)

    def turn(step: float) -> None:
        now[0] += step
        scheduler.run_once()

    for _ in range(20):
        turn(0.1)
    assert scheduler.keeping_up() == (True, "keeping up") and outcomes
    now[0] += 5.0  # the loop did not turn for five periods (a stall, a stopped process)
    assert scheduler.keeping_up()[0] is False and "stalled" in scheduler.keeping_up()[1]
    turn(0.0)  # the check due 4 s ago starts now: more than a period late
    assert scheduler.keeping_up() == (False, "checks started more than a period late")
    for _ in range(int(OVERDUE_HOLD / 0.1) + 2):
        turn(0.1)  # on time again, for longer than the hold
    assert scheduler.keeping_up() == (True, "keeping up")
    assert scheduler.configured_rate == 1.0 and scheduler.achieved_rate() > 0


def test_a_loop_with_a_full_batch_of_io_waiting_starts_only_a_few_due_checks_per_turn():
    from prober.schedule import BUSY_STARTS, Scheduler
    from rig.ports import free_port

    now = [100.0]
    scheduler = Scheduler("east", lambda key, outcome, corroborated: None, max_in_flight=1000,
                          clock=lambda: now[0], wall=lambda: 1_000_000.0, max_poll=0.0)
    port = free_port()
    for i in range(40):
        scheduler.add(ProbeKey(f"127.0.0.{i + 1}", "tcp"),
                      check_target(f"127.0.0.{i + 1}", HealthCheck(tcp_socket=TcpSocket(port))), 5.0, 1.0)
    now[0] += 5.0  # every probe is due
    scheduler._busy = True  # the previous turn handled a whole batch of ready I/O
    scheduler.run_once()
    assert scheduler.started == BUSY_STARTS
    scheduler.run_once()  # that turn found no I/O waiting: the rest start (32 = MIN_STARTS, the least a turn may)
    assert scheduler.started == 40


def test_a_loop_that_fell_behind_catches_up_at_twice_the_configured_rate_instead_of_starting_every_check_at_once():
    """After a stall every probe is overdue; opening all of them in one turn (thousands of TLS handshakes on one
    thread) made each miss its timeout, round after round (docs/benchmarks-prober.md). The overdue checks start
    over the next turns, at most CATCH_UP × the configured rate, and every one of them runs."""
    from prober.schedule import CATCH_UP, CATCH_UP_WINDOW, Scheduler
    from rig.ports import free_port

    now = [100.0]
    ran: set[ProbeKey] = set()
    scheduler = Scheduler("east", lambda key, outcome, corroborated: ran.add(key), max_in_flight=1000,
                          clock=lambda: now[0], wall=lambda: 1_000_000.0, max_poll=0.0)
    target = check_target("127.0.0.1", HealthCheck(tcp_socket=TcpSocket(free_port())))  # closed: refused at once
    keys = [ProbeKey("127.0.0.1", f"check-{i}") for i in range(600)]
    for key in keys:
        scheduler.add(key, target, period=1.0, timeout=1.0)  # 600 checks a second
    now[0] += 5.0  # the loop did not turn for five periods: every probe is overdue
    starts = []
    for _ in range(40):  # two seconds of 50 ms turns
        before = scheduler.started
        scheduler.run_once()
        starts.append(scheduler.started - before)
        now[0] += 0.05
    assert starts[0] <= 600 * CATCH_UP * CATCH_UP_WINDOW  # the stall earned no burst
    assert max(starts[1:]) <= 600 * CATCH_UP * 0.05 + 1
    assert wait_for(lambda: scheduler.run_once() or ran == set(keys), what="every overdue probe checked")
