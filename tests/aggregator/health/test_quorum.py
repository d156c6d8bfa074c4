"""The probers' quorum, pure: which regions vote (Lease freshness on a stepped clock), the verdict on each
cluster address, and the report index that names the intents a report change touches."""

from __future__ import annotations

import pytest

from aggregator.health.quorum import Freshness, ReportIndex, Votes, judge_cluster
from aggregator.model import ClusterStatus, LoadBalancerAddress, Verdict
from fleetdns.healthreport import DownEntry, HealthReport, ProberLease
from tests.support.clock import SteppedClock

pytestmark = pytest.mark.unit
GRACE = 10.0
CHECK = "abc123abc123"
WEB = "ServiceDNSRecord/web"
EAST_VIP, EAST_VIP2 = "198.18.1.1", "198.18.1.2"


def lease(region: str, renew: str, holder: str = "prober-1", current: bool = True) -> ProberLease:
    return ProberLease(region, holder, renew, current)


def east(*ips: str, healthy: bool = True) -> ClusterStatus:
    addresses = tuple(LoadBalancerAddress(ip=ip) for ip in ips or (EAST_VIP,))
    return ClusterStatus("east", "us-east", "us-east-1a", addresses, healthy,
                         "ReadyEndpoints: 2 ready" if healthy else "NoReadyEndpoints: no ready endpoint")


def down(address: str = EAST_VIP, check: str = CHECK, message: str = "HTTP 500") -> DownEntry:
    return DownEntry(WEB, address, check, "2025-01-01T00:00:00Z", message)


def votes(fresh: set[str], listing: dict[str, tuple[DownEntry, ...]], regions: tuple[str, ...] = ()) -> Votes:
    return Votes(frozenset(fresh), regions or tuple(sorted(fresh | set(listing))),
                 {(region, "east"): entries for region, entries in listing.items()})


# --- freshness --------------------------------------------------------------------------------------

def test_every_lease_counts_as_fresh_for_one_grace_period_after_it_is_first_seen() -> None:
    """A restart moves no answer: even a Lease renewed long ago votes until the grace period has passed."""
    clock = SteppedClock()
    freshness = Freshness(GRACE, clock)
    freshness.observe(lease("a", "2020-01-01T00:00:00.000000Z"))
    assert freshness.fresh() == {"a"}
    clock.now += GRACE - 0.1
    assert freshness.fresh() == {"a"}
    clock.now += 0.2
    assert freshness.fresh() == frozenset() and freshness.regions() == ("a",)


def test_a_region_votes_while_its_renew_time_changes_and_leaves_the_vote_a_grace_period_after_it_stops() -> None:
    clock = SteppedClock()
    freshness = Freshness(GRACE, clock)
    for step in range(5):  # renewed every 2 s for 10 s
        freshness.observe(lease("a", f"t{step}"))
        clock.now += 2
    assert freshness.fresh() == {"a"}
    freshness.observe(lease("a", "t4"))  # seen again unchanged (a re-list): not a renewal
    assert freshness.next_expiry() == pytest.approx(GRACE - 2)
    clock.now += GRACE - 2 + 0.01
    assert freshness.fresh() == frozenset() and freshness.next_expiry() is None


def test_a_released_lease_stops_the_vote_at_once_and_a_deleted_one_is_forgotten() -> None:
    clock = SteppedClock()
    freshness = Freshness(GRACE, clock)
    freshness.observe(lease("a", "t1"))
    freshness.observe(lease("b", "t1"))
    freshness.observe(lease("a", "t1", holder=""))  # clean shutdown empties the holder
    assert freshness.fresh() == {"b"}
    freshness.forget("b")
    assert freshness.regions() == ("a",) and freshness.fresh() == frozenset()


def test_a_region_back_from_a_cut_votes_only_once_its_prober_says_its_reports_are_current() -> None:
    """Its reports on the host are from before the cut until its prober rewrites them: renewals that say so count
    for nothing, and a region still fresh keeps only the grace period its last current renewal gave it."""
    clock = SteppedClock()
    freshness = Freshness(GRACE, clock)
    freshness.observe(lease("a", "t1"))
    clock.now += GRACE + 1  # cut off the host: stale
    freshness.observe(lease("a", "t2", current=False))  # back, its Lease taken again, its reports not yet written
    assert freshness.fresh() == frozenset() and freshness.next_expiry() is None
    freshness.observe(lease("a", "t3"))  # rewritten: the Lease says so
    assert freshness.fresh() == {"a"}
    clock.now += GRACE - 1
    freshness.observe(lease("a", "t4", current=False))  # a write waits for a retry: no new grace period
    clock.now += 1.01
    assert freshness.fresh() == frozenset()


def test_a_lease_first_seen_with_reports_not_current_is_listed_but_does_not_vote() -> None:
    freshness = Freshness(GRACE, SteppedClock())
    freshness.observe(lease("a", "t1", current=False))
    assert freshness.regions() == ("a",) and freshness.fresh() == frozenset()
    freshness.observe(lease("a", "t2"))
    assert freshness.fresh() == {"a"}


# --- verdicts ---------------------------------------------------------------------------------------

def test_two_of_three_regions_down_take_the_cluster_out_with_a_reason_naming_the_count() -> None:
    judged = judge_cluster(east(), CHECK, votes({"a", "b", "c"}, {"a": (down(),), "b": (down(),)}))
    assert not judged.healthy and judged.reason == "HealthCheckFailed: Down from 2 of 3 regions"
    assert judged.health_check is not None and judged.health_check.verdict is Verdict.DOWN
    assert [(r.region, r.state, r.message, r.fresh) for r in judged.health_check.regions] == [
        ("a", "Down", "HTTP 500", True), ("b", "Down", "HTTP 500", True), ("c", "Up", "", True)]


def test_one_region_of_three_seeing_it_down_moves_nothing() -> None:
    """A region cut off from the VIPs reports everything Down; the other two outvote it."""
    judged = judge_cluster(east(), CHECK, votes({"a", "b", "c"}, {"a": (down(message="connect timeout after 1s"),)}))
    assert judged.healthy and judged.reason.startswith("ReadyEndpoints")
    assert judged.health_check is not None and judged.health_check.verdict is Verdict.UP
    assert judged.withdrawn == ()
    assert judged.health_check.regions[0].message == "connect timeout after 1s"


def test_half_is_not_a_majority() -> None:
    judged = judge_cluster(east(), CHECK, votes({"a", "b"}, {"a": (down(),)}))
    assert judged.healthy


def test_a_stale_region_neither_votes_nor_counts_as_a_voter() -> None:
    """c's prober stopped renewing: its Down entry is shown (fresh: false) but one fresh Down of two is no majority;
    alone, b's Down is a majority of one."""
    judged = judge_cluster(east(), CHECK, votes({"a", "b"}, {"b": (down(),), "c": (down(),)}, ("a", "b", "c")))
    assert judged.healthy
    assert judged.health_check is not None
    assert [(r.region, r.state, r.fresh) for r in judged.health_check.regions] == [
        ("a", "Up", True), ("b", "Down", True), ("c", "Down", False)]
    alone = judge_cluster(east(), CHECK, votes({"b"}, {"b": (down(),), "c": (down(),)}, ("a", "b", "c")))
    assert not alone.healthy and alone.reason == "HealthCheckFailed: Down from 1 of 1 regions"


def test_no_fresh_voter_gives_the_probe_no_say() -> None:
    judged = judge_cluster(east(), CHECK, votes(set(), {"a": (down(),), "b": (down(),)}))
    assert judged.healthy and judged.health_check is not None and judged.health_check.verdict is Verdict.UNKNOWN
    assert judged.withdrawn == ()


def test_entries_of_another_check_definition_do_not_count() -> None:
    judged = judge_cluster(east(), CHECK, votes({"a", "b"}, {"a": (down(check="old0old0old0"),),
                                                             "b": (down(check="old0old0old0"),)}))
    assert judged.healthy and judged.health_check is not None
    assert {r.state for r in judged.health_check.regions} == {"Up"}


def test_one_address_down_of_two_is_withdrawn_and_the_cluster_stays() -> None:
    judged = judge_cluster(east(EAST_VIP, EAST_VIP2), CHECK,
                           votes({"a", "b", "c"}, {"a": (down(EAST_VIP2),), "b": (down(EAST_VIP2),)}))
    assert judged.healthy and judged.withdrawn == (EAST_VIP2,)
    assert judged.health_check is not None and judged.health_check.verdict is Verdict.UP
    assert (judged.health_check.regions[0].state, judged.health_check.regions[0].message) == (
        "PartlyDown", f"{EAST_VIP2}: HTTP 500")


def test_every_address_down_takes_the_cluster_out() -> None:
    judged = judge_cluster(east(EAST_VIP, EAST_VIP2), CHECK, votes({"a", "b", "c"}, {
        "a": (down(EAST_VIP), down(EAST_VIP2)), "b": (down(EAST_VIP), down(EAST_VIP2)), "c": (down(EAST_VIP),)}))
    assert not judged.healthy and judged.withdrawn == (EAST_VIP, EAST_VIP2)
    assert judged.reason == "HealthCheckFailed: Down from 2 of 3 regions"


def test_a_cluster_not_ready_keeps_its_readiness_reason() -> None:
    judged = judge_cluster(east(healthy=False), CHECK, votes({"a"}, {"a": (down(),)}))
    assert not judged.healthy and judged.reason.startswith("NoReadyEndpoints")
    assert judged.health_check is not None and judged.health_check.verdict is Verdict.DOWN


def test_addresses_a_hostname_resolved_to_are_checked_too() -> None:
    cluster = ClusterStatus("east", "us-east", "us-east-1a", (LoadBalancerAddress(hostname="lb.example.net"),), True,
                            "ReadyEndpoints: 1 ready", resolved=(EAST_VIP,))
    judged = judge_cluster(cluster, CHECK, votes({"a"}, {"a": (down(),)}))
    assert not judged.healthy


# --- the report index --------------------------------------------------------------------------------

def report(region: str, *entries: DownEntry, cluster: str = "east") -> HealthReport:
    return HealthReport("shop", region, cluster, entries)


def test_a_report_change_names_only_the_intents_whose_entries_changed() -> None:
    index = ReportIndex()
    api = DownEntry("ServiceDNSRecord/api", EAST_VIP, CHECK, "t", "HTTP 500")
    first = report("a", down(), api)
    assert index.apply(None, first) == {("shop", WEB), ("shop", "ServiceDNSRecord/api")}
    second = report("a", down(), DownEntry("ServiceDNSRecord/api", EAST_VIP, CHECK, "t", "HTTP 502"))
    assert index.apply(first, second) == {("shop", "ServiceDNSRecord/api")}
    assert index.down(("shop", WEB)) == {("a", "east"): (down(),)}
    third = report("a", down())
    assert index.apply(second, third) == {("shop", "ServiceDNSRecord/api")}
    assert index.down(("shop", "ServiceDNSRecord/api")) == {}
    assert index.apply(third, None) == {("shop", WEB)} and index.down(("shop", WEB)) == {}


def test_reports_of_several_regions_and_clusters_are_kept_apart() -> None:
    index = ReportIndex()
    index.apply(None, report("a", down()))
    index.apply(None, report("b", down()))
    index.apply(None, report("a", down(), cluster="west"))
    assert set(index.down(("shop", WEB))) == {("a", "east"), ("b", "east"), ("a", "west")}


def test_while_the_leases_cannot_be_watched_their_age_stops_counting() -> None:
    """A host API away from the aggregator hides every renewal; that must not retire every voter at once."""
    clock = SteppedClock()
    freshness = Freshness(GRACE, clock)
    freshness.observe(lease("a", "t1"))
    clock.now += GRACE - 1
    freshness.watching(False)
    clock.now += 60
    assert freshness.fresh() == {"a"} and freshness.next_expiry() is None
    freshness.observe(lease("b", "t1"))  # the re-list on return shows a new region before the watch is up
    freshness.watching(True)
    assert freshness.fresh() == {"a", "b"}
    clock.now += 1.01  # the rest of a's grace period, counted from the watch's return
    assert freshness.fresh() == {"b"}
    clock.now += GRACE - 1
    assert freshness.fresh() == frozenset()
