"""The region's lag behind the host, and when it is repaired (pure parts, on a stepped clock)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from fleetdns.endpoint import Endpoint
from tests.support.clock import SteppedClock
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.host_lag import HostDNSEndpoint, LagTracker, expected_records, missing_records
from webhook_provider.metrics import HostMetrics

pytestmark = pytest.mark.unit
ZONE = DomainFilter.from_lists(["gslb.example.com"], [])
APP = Endpoint("app.gslb.example.com", "A", ("198.18.0.1", "198.18.1.1"), record_ttl=30)


def make_lag(stored: dict[str, list[Endpoint]], resets: list[int], clock: SteppedClock) -> LagTracker:
    def reset() -> int:
        resets.append(1)
        return 1

    return LagTracker(ZONE, lambda name: stored.get(name, []), HostMetrics.create(CollectorRegistry(), "east"),
                      repair_after=2.0, reset_watches=reset, clock=clock)


def test_records_the_webhook_would_not_store_are_not_expected():
    outside = Endpoint("app.other.org", "A", ("198.18.0.1",))
    dotted = Endpoint("www.gslb.example.com", "CNAME", ("app.gslb.example.com.",))  # ExternalDNS skips it
    expected = expected_records((APP, outside, dotted), ZONE)
    assert [key[0] for key in expected] == ["app.gslb.example.com"]


def test_a_name_is_missing_until_etcd_holds_the_same_targets_in_any_order_and_case():
    expected = expected_records((APP,), ZONE)
    assert missing_records(expected, lambda name: []) == ["app.gslb.example.com"]
    one_target = Endpoint("app.gslb.example.com", "A", ("198.18.0.1",))
    assert missing_records(expected, lambda name: [one_target]) == ["app.gslb.example.com"]
    same = Endpoint("APP.gslb.example.com", "A", ("198.18.1.1", "198.18.0.1"), record_ttl=5)
    assert missing_records(expected, lambda name: [same]) == []


def test_the_lag_grows_from_the_first_unapplied_change_and_a_repair_follows_after_two_seconds():
    clock, stored, resets = SteppedClock(100.0), {}, []
    lag = make_lag(stored, resets, clock)
    lag.changed(None, HostDNSEndpoint("shop/app", (APP,)))
    clock.now += 1.5
    assert lag.check() == 1.5 and resets == []
    clock.now += 1.0
    lag.changed(None, HostDNSEndpoint("shop/app", (APP,)))  # changed again: still behind since the first
    assert lag.check() == 2.5 and resets == [1]
    stored["app.gslb.example.com"] = [APP]
    assert lag.check() == 0.0


def test_repairs_back_off_while_the_same_change_stays_unapplied_and_restart_fast_once_in_step():
    clock, stored, resets = SteppedClock(100.0), {}, []
    lag = make_lag(stored, resets, clock)
    lag.changed(None, HostDNSEndpoint("shop/app", (APP,)))
    repaired_at = []
    for step in range(1, 401):  # 40 s in 0.1 s steps
        clock.now = 100.0 + step / 10
        before = len(resets)
        lag.check()
        if len(resets) > before:
            repaired_at.append(round(clock.now - 100.0, 1))
    assert repaired_at == [2.0, 4.0, 8.0, 16.0, 32.0]  # 2 s, then 2, 4, 8, 16 s apart
    stored["app.gslb.example.com"] = [APP]
    lag.check()
    stored.clear()
    lag.changed(None, HostDNSEndpoint("shop/app", (Endpoint("app.gslb.example.com", "A", ("198.18.2.1",)),)))
    clock.now += 2.0
    lag.check()
    assert len(resets) == 6  # a new lag is repaired after 2 s again, not after the old backoff


def test_a_deleted_dnsendpoint_no_longer_counts_as_lag():
    clock, resets = SteppedClock(100.0), []
    lag = make_lag({}, resets, clock)
    lag.changed(None, HostDNSEndpoint("shop/app", (APP,)))
    clock.now += 1.0
    lag.changed(HostDNSEndpoint("shop/app", (APP,)), None)
    assert lag.check() == 0.0
