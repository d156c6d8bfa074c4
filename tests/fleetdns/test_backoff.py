"""The gate in front of a server that does not answer (fleetdns/backoff.py), on real threads with short delays:
one caller tries, an answer lets every caller go, only failed tries double the delay."""

from __future__ import annotations

import threading
import time

import pytest

from fleetdns.backoff import BACKOFF_START, REFUSED_MAX, Backoff, ServerGate

# --- the gate (real threads, short delays) ------------------------------------------------------------


def gate(start: float = 0.02, cap: float = 0.16) -> ServerGate:
    return ServerGate("test", Backoff(start, cap, jitter=0.0))


def entered(server: ServerGate, stop: threading.Event) -> threading.Event:
    """A caller on its own thread; the event is set once ``enter`` lets it through."""
    through = threading.Event()

    def caller() -> None:
        if server.enter(stop):
            through.set()

    threading.Thread(target=caller, daemon=True).start()
    return through


@pytest.mark.unit
def test_a_closed_gate_lets_one_caller_try_and_the_first_answer_lets_every_caller_go() -> None:
    server, stop = gate(start=0.05), threading.Event()
    assert server.enter(stop) and server.retry_interval == 0.0  # open: no waiting
    closed = time.monotonic()  # the delay runs from the failure, so the clock starts before it is reported
    server.unanswered("connection refused")
    assert server.retry_interval == pytest.approx(0.05)

    assert server.enter(stop)  # the try: after the delay
    assert time.monotonic() - closed >= 0.05
    others = [entered(server, stop) for _ in range(5)]
    assert not any(o.wait(0.3) for o in others), "only the caller trying the server may send a request"

    server.answered()
    assert all(o.wait(2) for o in others), "an answer lets every waiting caller go at once"
    assert server.is_open and server.retry_interval == 0.0


@pytest.mark.unit
def test_only_failed_tries_double_the_delay_up_to_the_cap_and_an_answer_starts_it_over() -> None:
    server, stop = gate(start=0.02, cap=0.16), threading.Event()
    server.unanswered("no answer")
    seen = [server.retry_interval]
    # a request sent before the gate closed fails too: it is not a try, so the delay stays
    straggler = threading.Thread(target=lambda: server.unanswered("no answer"))
    straggler.start()
    straggler.join()
    assert server.retry_interval == seen[0]
    for _ in range(5):
        assert server.enter(stop)
        server.unanswered("no answer")
        seen.append(server.retry_interval)
    assert seen == pytest.approx([0.02, 0.04, 0.08, 0.16, 0.16, 0.16])

    server.answered()
    server.unanswered("no answer")  # a new outage starts from the shortest delay: a blip costs a blip
    assert server.retry_interval == pytest.approx(0.02)


@pytest.mark.unit
def test_a_server_that_refuses_connections_is_tried_every_2_s_at_most_so_a_restart_is_over_in_seconds() -> None:
    server, stop = ServerGate("restarting"), threading.Event()  # the shipped delays: 0.2 s doubling to 30 s
    server.unanswered("0 Refused: NewConnectionError", refused=True)
    for _ in range(10):  # long enough for the delay of a hung server to reach its 30 s cap
        server._next_try = 0.0  # no waiting in a unit test: only the chosen delays matter
        assert server.enter(stop)
        server.unanswered("0 Refused: NewConnectionError", refused=True)
        assert server.retry_interval <= REFUSED_MAX * 1.2
    # listening again, accepting before it answers (a starting API server): not hung, so the delay starts over
    # (this was up to 30 s, and the aggregator came back 15-25 s after the host's restart)
    delays = []
    for _ in range(9):
        server._next_try = 0.0
        assert server.enter(stop)
        server.unanswered("0 Unreachable: ReadTimeoutError")
        delays.append(server.retry_interval)
    assert delays[0] <= BACKOFF_START * 1.2
    assert delays[-1] > REFUSED_MAX * 1.2, "a server that keeps accepting without answering is tried less and less"


@pytest.mark.unit
def test_a_try_abandoned_by_a_stopping_caller_passes_to_another_and_waiters_stop_when_woken() -> None:
    server, stop = gate(), threading.Event()
    server.unanswered("no answer")
    assert server.enter(stop)
    other = entered(server, stop)
    assert not other.wait(0.2)
    server.leave()  # the caller trying the server stopped without an answer
    assert other.wait(2)

    stopping = threading.Event()
    waiter = threading.Thread(target=server.enter, args=(stopping,), daemon=True)
    server.unanswered("no answer")  # ``other`` holds the try, so the waiter waits for an answer
    waiter.start()
    stopping.set()
    server.wake()
    waiter.join(2)
    assert not waiter.is_alive()
