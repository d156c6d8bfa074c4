"""Waiting for a condition instead of sleeping: what every test, benchmark and the demo poll with."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "", *, interval: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy and return that; AssertionError on timeout.

    An exception from ``check`` counts as "not yet" (the server may not answer yet); the last one is named in
    the timeout's message, so a broken check still fails with its own error.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    error: Exception | None = None
    while True:
        try:
            last, error = check(), None
            if last:
                return last
        except Exception as failure:  # noqa: BLE001 - see the docstring
            error = failure
        if time.monotonic() >= deadline:
            because = f"; last error: {type(error).__name__}: {error}" if error else f"; last={last!r}"
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or check}{because}")
        time.sleep(interval)


def holds_for(check: Callable[[], Any], seconds: float, what: str = "", *, interval: float = 0.1) -> None:
    """Check ``check`` every ``interval`` for ``seconds``: what must stay true for a while (a cache that must not be
    emptied, an old configuration that must keep answering), where ``wait_for`` waits for what must become true.
    ``check`` fails by raising (its own assertion) or returning something falsy."""
    deadline = time.monotonic() + seconds
    while True:
        if not check():
            raise AssertionError(f"{what or check} stopped holding within {seconds:g}s")
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


@contextmanager
def in_background(loop: Callable[[], None], stop: threading.Event, name: str) -> Iterator[None]:
    """``loop`` (which returns once ``stop`` is set) in a daemon thread for the block; then ``stop`` set and the
    thread joined, 5 s at most, so a stuck loop never hangs the test that used it."""
    stop.clear()
    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
