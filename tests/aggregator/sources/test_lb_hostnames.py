"""Hostname load balancers (EKS-style), each cluster's hostname resolved to its addresses: the cache's lifetimes,
refreshes, expiry and re-queues on a clock the test steps, and the entry rule (the process against a real CoreDNS:
tests/aggregator/test_hostname_load_balancers.py)."""

from __future__ import annotations

import pytest

from aggregator.model import ClusterStatus, IntentKey, IntentKind, LoadBalancerAddress
from aggregator.render.records import address_records
from aggregator.sources.lb_hostnames import (
    MAX_LIFETIME,
    MIN_LIFETIME,
    REFRESH_AT,
    RETRY_MAX,
    HostnameCache,
    Resolution,
    State,
    resolve_entry,
)

# --- the cache, on a stepped clock ---------------------------------------------------------------

WEB = IntentKey(IntentKind.SERVICE, "shop", "web")
API = IntentKey(IntentKind.SERVICE, "shop", "api")
LB = "lb-1.elb.test"


@pytest.mark.unit
def test_a_new_hostname_is_pending_and_due_at_once_and_its_answer_requeues_its_users() -> None:
    cache = HostnameCache()
    assert cache.use(WEB, {LB}, 30, now=100.0) == {LB: Resolution(LB, State.PENDING)}
    cache.use(API, {LB}, 30, now=100.0)
    assert cache.due(100.0) == [LB]
    assert cache.due(100.0) == []  # in flight: not handed out twice
    assert cache.succeeded(LB, ("192.0.2.1", "2001:db8::1"), 60, now=100.1) == [API, WEB]
    assert cache.use(WEB, {LB}, 30, now=101.0)[LB] == Resolution(LB, State.RESOLVED, ("192.0.2.1", "2001:db8::1"))


@pytest.mark.unit
def test_an_answer_lives_for_the_smallest_of_its_dns_ttl_and_its_users_record_ttls() -> None:
    cache = HostnameCache()
    cache.use(WEB, {LB}, 30, now=0.0)
    cache.due(0.0)
    cache.succeeded(LB, ["192.0.2.1"], 60, now=0.0)
    assert cache.next_event() == pytest.approx(REFRESH_AT * 30)  # recordTTL 30 < DNS TTL 60
    cache.use(API, {LB}, 8, now=1.0)  # a user with a shorter recordTTL brings the refresh forward at once
    assert cache.next_event() == pytest.approx(REFRESH_AT * 8)
    assert cache.due(REFRESH_AT * 8) == [LB]
    cache.succeeded(LB, ["192.0.2.1"], 4, now=10.0)  # DNS TTL 4 < every recordTTL
    assert cache.next_event() == pytest.approx(10.0 + REFRESH_AT * 4)
    cache.due(20.0)
    cache.succeeded(LB, ["192.0.2.1"], 0, now=20.0)  # TTL 0: never more often than the floor
    assert cache.next_event() == pytest.approx(20.0 + REFRESH_AT * MIN_LIFETIME)
    cache.use(WEB, set(), 30, now=21.0)
    cache.use(API, {LB}, 604800, now=21.0)
    cache.due(30.0)
    cache.succeeded(LB, ["192.0.2.1"], 86400, now=30.0)  # long TTLs: still re-checked within the cap
    assert cache.next_event() == pytest.approx(30.0 + REFRESH_AT * MAX_LIFETIME)


@pytest.mark.unit
def test_the_same_addresses_again_requeue_nothing_and_new_ones_requeue_the_users() -> None:
    cache = HostnameCache()
    cache.use(WEB, {LB}, 30, now=0.0)
    cache.due(0.0)
    cache.succeeded(LB, ["192.0.2.2", "192.0.2.1"], 30, now=0.0)
    assert cache.due(REFRESH_AT * 30) == [LB]
    assert cache.succeeded(LB, ["192.0.2.1", "192.0.2.2"], 30, now=REFRESH_AT * 30) == []
    cache.due(50.0)
    assert cache.succeeded(LB, ["192.0.2.3"], 30, now=50.0) == [WEB]


@pytest.mark.unit
def test_a_failing_refresh_keeps_the_last_addresses_until_they_expire_then_requeues_the_users() -> None:
    cache = HostnameCache()
    cache.use(WEB, {LB}, 20, now=0.0)
    cache.due(0.0)
    cache.succeeded(LB, ["192.0.2.1"], 300, now=0.0)  # lifetime 20 s: refresh at 15 s, expiry at 20 s
    assert cache.due(15.0) == [LB]
    assert cache.failed(LB, "no answer within 2s", now=17.0) == []  # kept: nothing changes for the intents
    assert cache.resolution(LB) == Resolution(LB, State.RESOLVED, ("192.0.2.1",), "no answer within 2s", 1)
    assert cache.next_event() == pytest.approx(18.0)  # retried after 1 s
    assert cache.due(18.0) == [LB]
    cache.failed(LB, "no answer within 2s", now=19.5)
    assert cache.next_event() == pytest.approx(20.0)  # retry (2 s later) capped at the expiry
    assert cache.expire(19.9) == []
    assert cache.expire(20.0) == [LB]
    assert cache.users(LB) == [WEB]
    expired = cache.resolution(LB)
    assert expired is not None and expired.state is State.FAILED and expired.addresses == ()
    assert expired.detail == "no answer within 2s; last addresses expired"
    assert cache.due(20.0) == [LB]  # still retried
    assert cache.succeeded(LB, ["192.0.2.1"], 300, now=20.5) == [WEB]  # back: the users are re-queued again


@pytest.mark.unit
def test_lost_addresses_keep_one_reason_whichever_of_expiry_and_failure_comes_first_and_across_retries() -> None:
    """A reason that changes wording between retries would rewrite the status of every intent using the name."""
    for failure_first in (True, False):
        cache = HostnameCache()
        cache.use(WEB, {LB}, 20, now=0.0)
        cache.due(0.0)
        cache.succeeded(LB, ["192.0.2.1"], 300, now=0.0)  # expires at 20 s
        if failure_first:  # the refresh's NXDOMAIN arrives after the expiry, before expire() ran
            assert cache.failed(LB, "NXDOMAIN", now=20.2) == [WEB]
        else:
            assert cache.expire(20.0) == [LB]
            cache.failed(LB, "NXDOMAIN", now=20.2)
        details = {cache.resolution(LB).detail}  # type: ignore[union-attr]
        for retry in (21.0, 23.0, 27.0):
            assert cache.failed(LB, "NXDOMAIN", now=retry) == []
            details.add(cache.resolution(LB).detail)  # type: ignore[union-attr]
        assert details == {"NXDOMAIN; last addresses expired"}, failure_first


@pytest.mark.unit
def test_a_hostname_that_never_resolves_fails_at_once_and_is_retried_with_a_capped_backoff() -> None:
    cache = HostnameCache()
    cache.use(WEB, {LB}, 30, now=0.0)
    now, delays = 0.0, []
    for _ in range(8):
        assert cache.due(now) == [LB]
        changed = cache.failed(LB, "NXDOMAIN (no such name)", now)
        assert changed == ([WEB] if now == 0.0 else [])  # Pending -> Failed once; the same failure again: nothing
        nxt = cache.next_event()
        assert nxt is not None
        delays.append(nxt - now)
        now = nxt
    assert delays == [1.0, 2.0, 4.0, 8.0, RETRY_MAX, RETRY_MAX, RETRY_MAX, RETRY_MAX]
    assert cache.resolution(LB) == Resolution(LB, State.FAILED, (), "NXDOMAIN (no such name)", 8)
    assert cache.succeeded(LB, [], 30, now) == []  # an answer without addresses is one more failure
    assert cache.resolution(LB).detail == "no A or AAAA record"  # type: ignore[union-attr]


@pytest.mark.unit
def test_hostnames_nobody_uses_are_forgotten() -> None:
    cache = HostnameCache()
    cache.use(WEB, {LB, "lb-2.elb.test"}, 30, now=0.0)
    cache.use(API, {LB}, 30, now=0.0)
    cache.use(WEB, {LB}, 30, now=1.0)  # WEB's Service changed its load balancer: lb-2 is unused now
    assert len(cache) == 1 and cache.users(LB) == [API, WEB]
    assert cache.forget_users(LB, [API]) is True  # API was deleted
    assert cache.forget_users(LB, [WEB]) is False  # and WEB: nothing left to refresh
    assert len(cache) == 0 and cache.next_event() is None
    assert cache.succeeded(LB, ["192.0.2.1"], 30, now=2.0) == []  # an answer in flight meanwhile is dropped


# --- the entry rule (what each cluster contributes) ----------------------------------------------

def entry(cluster: str, *addresses: LoadBalancerAddress, healthy: bool = True, resolved: tuple[str, ...] = (),
          reason: str = "ReadyEndpoints: 1 ready") -> ClusterStatus:
    return ClusterStatus(cluster, cluster, f"{cluster}-1a", addresses, healthy, reason, resolved)


HOST = LoadBalancerAddress(hostname=LB)
RESOLVED = {LB: Resolution(LB, State.RESOLVED, ("192.0.2.1", "2001:db8::1"))}


@pytest.mark.unit
def test_a_resolved_hostname_gives_its_cluster_the_addresses() -> None:
    resolved = resolve_entry(entry("east", HOST), RESOLVED, None)
    assert resolved == entry("east", HOST, resolved=("192.0.2.1", "2001:db8::1"))
    records = {(e.record_type, e.targets) for e in address_records("a.example.com", [resolved], 30)}
    assert records == {("A", ("192.0.2.1",)), ("AAAA", ("2001:db8::1",))}


@pytest.mark.unit
def test_while_a_hostname_is_first_resolved_the_last_published_addresses_stand_in() -> None:
    pending = {LB: Resolution(LB, State.PENDING)}
    published = entry("east", HOST, resolved=("192.0.2.9",))
    assert resolve_entry(entry("east", HOST), pending, published) == published
    other = entry("east", LoadBalancerAddress(hostname="lb-new.elb.test"), resolved=("192.0.2.9",))
    out = resolve_entry(entry("east", HOST), pending, other)  # a different load balancer: nothing to stand in
    assert not out.healthy and out.reason == f"HostnameNotResolved: {LB}: resolving (first lookup)"


@pytest.mark.unit
def test_a_cluster_without_any_address_leaves_the_answer_but_its_ips_still_count() -> None:
    failed = {LB: Resolution(LB, State.FAILED, (), "NXDOMAIN (no such name)")}
    out = resolve_entry(entry("east", HOST), failed, None)
    assert not out.healthy and out.reason == f"HostnameNotResolved: {LB}: NXDOMAIN (no such name)"
    mixed = resolve_entry(entry("east", LoadBalancerAddress(ip="192.0.2.7"), HOST), failed, None)
    assert mixed.healthy and mixed.reason == "ReadyEndpoints: 1 ready"
    down = resolve_entry(entry("east", HOST, healthy=False, reason="NoReadyEndpoints: none"), failed, None)
    assert down.reason == "NoReadyEndpoints: none"  # its own reason stays the one that matters
