"""What a region's report should hold: standing Down entries kept, gone and Up ones dropped, new Downs added."""

from __future__ import annotations

import pytest

from fleetdns.healthreport import DownEntry
from prober.reports import Verdict, desired_down
from prober.thresholds import State

pytestmark = pytest.mark.unit


def test_desired_down_keeps_standing_entries_drops_gone_and_up_ones_and_adds_new_downs():
    standing = DownEntry("ServiceDNSRecord/a", "198.18.1.1", "c1", "2026-01-01T00:00:00Z", "HTTP 500")
    recovered = DownEntry("ServiceDNSRecord/b", "198.18.1.1", "c1", "2026-01-01T00:00:00Z", "HTTP 500")
    gone = DownEntry("ServiceDNSRecord/deleted", "198.18.1.1", "c1", "2026-01-01T00:00:00Z", "HTTP 500")
    unchecked = DownEntry("ServiceDNSRecord/c", "198.18.1.1", "c1", "2026-01-01T00:00:00Z", "HTTP 503")
    redefined = DownEntry("ServiceDNSRecord/d", "198.18.1.1", "old", "2026-01-01T00:00:00Z", "HTTP 500")
    verdicts = {
        ("ServiceDNSRecord/a", "198.18.1.1"): Verdict(State.DOWN, "c1", "2026-02-02T00:00:00Z", "HTTP 502"),
        ("ServiceDNSRecord/b", "198.18.1.1"): Verdict(State.UP, "c1"),
        ("ServiceDNSRecord/c", "198.18.1.1"): Verdict(State.UNKNOWN, "c1"),
        ("ServiceDNSRecord/d", "198.18.1.1"): Verdict(State.UNKNOWN, "new"),
        ("ServiceDNSRecord/e", "198.18.1.1"): Verdict(State.DOWN, "c1", "2026-02-02T00:00:00Z", "connection refused"),
    }
    down = desired_down([standing, recovered, gone, unchecked, redefined], verdicts)
    assert down == (standing, unchecked,
                    DownEntry("ServiceDNSRecord/e", "198.18.1.1", "c1", "2026-02-02T00:00:00Z", "connection refused"))
