"""This region's round-trip time to each cluster address, from the checks' own connects (pure: no I/O, no clock).

Every check opens a fresh TCP connection to a cluster address; the round trip of its handshake as the kernel timed
it (``Outcome.rtt``, ``checks.kernel_rtt``) is one sample of this region's RTT to that address, whatever the app or
port.
Per address, the median of the last ``WINDOW`` samples is the figure; it is *published* (what the reports hold)
once ``MIN_SAMPLES`` are in, and published again only when it moves by more than max(10 %, 1 ms) from the value
published last, so a stable path costs no report writes. A failed connect is no sample. When the newest sample
is older than ``STALE_PERIODS`` × the longest period of the checks on the address, the address is stale: its
samples are dropped and it leaves the reports until ``MIN_SAMPLES`` new ones are in. Until an address's first
figure (a new check, a restarted prober), a report keeps the entry it has. See prober/README.md.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from fleetdns.healthreport import LatencyEntry

WINDOW = 5  # samples per address the median is taken over
MIN_SAMPLES = 3  # a majority of the window: one slow connect never makes a figure on its own
STALE_PERIODS = 3.0  # × the longest check period on the address: no sample for that long, no figure
MOVE_FRACTION = 0.10  # a published median is replaced when the new one differs by more than this fraction of it,
MOVE_FLOOR_MICROS = 1000  # or by more than 1 ms, whichever is larger


class Change(StrEnum):
    """What a sample or a sweep did to an address's published figure (the reports holding it are rewritten)."""

    APPEARED = "appeared"
    MOVED = "moved"
    STALE = "stale"


def median_micros(samples: Iterable[int]) -> int:
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("the median of no samples")
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) // 2


def moved(published: int, median: int) -> bool:
    """Whether ``median`` differs from the published figure enough to be written: > max(10 %, 1 ms)."""
    return abs(median - published) > max(published * MOVE_FRACTION, MOVE_FLOOR_MICROS)


@dataclass
class AddressRtt:
    """The samples of one address and the figure last published for it.

    Three states: *measuring* (tracked, no figure yet: a report keeps the entry it has, so a restarted prober
    rewrites nothing while it takes its first samples), *published*, and *stale* (no sample for ``stale_after``:
    the entry leaves the reports until a new figure is published)."""

    stale_after: float  # seconds without a sample after which the address is stale
    last: float  # when the newest sample was taken, or measuring began (the caller's monotonic clock)
    samples: collections.deque[int] = field(default_factory=lambda: collections.deque(maxlen=WINDOW))
    median: int | None = None  # of the samples now (None: fewer than MIN_SAMPLES)
    published: LatencyEntry | None = None
    stale: bool = False


class LatencyTable:
    """Samples → medians → published figures, per address. Used by one thread at a time (the caller locks).
    ``stamp`` turns the wall-clock time of a sample into the entry's ``measured`` (only when one is published)."""

    def __init__(self, stamp: Callable[[float], str]) -> None:
        self.stamp = stamp
        self.addresses: dict[str, AddressRtt] = {}

    def track(self, address: str, stale_after: float, now: float) -> None:
        """Start (or keep) measuring ``address``; ``stale_after``: STALE_PERIODS × its longest check period."""
        known = self.addresses.get(address)
        if known is None:
            self.addresses[address] = AddressRtt(stale_after, now)
        else:
            known.stale_after = stale_after

    def forget(self, address: str) -> None:
        """No check uses ``address`` any more."""
        self.addresses.pop(address, None)

    def sample(self, address: str, rtt: float, now: float, wall: float) -> Change | None:
        """Add one connect time (seconds); what changed in the published figure, if anything."""
        state = self.addresses.get(address)
        if state is None:
            return None  # its checks are gone: a late result
        change = None
        if not state.stale and now - state.last > state.stale_after:  # before any sweep saw it
            change = self._go_stale(state)
        state.samples.append(max(0, round(rtt * 1_000_000)))
        state.last = now
        if len(state.samples) < MIN_SAMPLES:
            return change
        state.median = median = median_micros(state.samples)
        published = state.published
        if published is not None and not moved(published.rtt_micros, median):
            return change
        state.published, state.stale = LatencyEntry(address, median, self.stamp(wall)), False
        return Change.APPEARED if published is None else Change.MOVED

    def expire(self, now: float) -> list[str]:
        """Addresses that went stale now (their reports lose the entry)."""
        gone = []
        for address, state in self.addresses.items():
            if not state.stale and now - state.last > state.stale_after:
                self._go_stale(state)
                gone.append(address)
        return gone

    def published(self, address: str) -> LatencyEntry | None:
        state = self.addresses.get(address)
        return state.published if state is not None else None

    def figures(self, addresses: Iterable[str]) -> dict[str, LatencyEntry | None]:
        """What a report should say of each of ``addresses``: the published figure, or None while the first
        one is being measured (keep the entry the report has); stale and untracked addresses are left out."""
        figures = {}
        for address in addresses:
            state = self.addresses.get(address)
            if state is not None and not state.stale:
                figures[address] = state.published
        return figures

    def medians(self) -> dict[str, int]:
        """The current median of every address with enough fresh samples (µs), for the metrics."""
        return {address: state.median for address, state in self.addresses.items() if state.median is not None}

    @staticmethod
    def _go_stale(state: AddressRtt) -> Change:
        state.samples.clear()
        state.median, state.published, state.stale = None, None, True
        return Change.STALE
