"""Member silence, pure: a silent member's cluster keeps its last known entry while a fresh quorum of regions sees
every address Up, and leaves it on a Down quorum, with no fresh voter, or when it was not serving when last seen."""

from __future__ import annotations

from dataclasses import replace

import pytest

from aggregator.health.quorum import Votes
from aggregator.health.readiness import MemberView, Reachability, Reason
from aggregator.health.silence import SilentMember, judge_fleet, judge_silent, last_known_view, why_silent
from aggregator.model import ClusterStatus, LoadBalancerAddress, MemberCluster, SecretKeyRef, Verdict
from fleetdns.healthreport import DownEntry

pytestmark = pytest.mark.unit
CHECK = "abc123abc123"
EAST_VIP, EAST_VIP2 = "198.18.1.1", "198.18.1.2"
LOST = SilentMember("API server not answering past the grace period",
                    ClusterStatus("east", "us-east", "us-east-1a", (), False,
                                  "MemberUnreachable: API server not answering past the grace period"))
EAST = MemberCluster("east", "us-east", "us-east-1a", SecretKeyRef("fleetdns-system", "east"))


def east(*ips: str, healthy: bool = True, reason: str = "") -> ClusterStatus:
    addresses = tuple(LoadBalancerAddress(ip=ip) for ip in ips or (EAST_VIP,))
    return ClusterStatus("east", "us-east", "us-east-1a", addresses, healthy,
                         reason or ("ReadyEndpoints: 2 ready" if healthy else "NoReadyEndpoints: no ready endpoint"))


def down(address: str = EAST_VIP) -> DownEntry:
    return DownEntry("ServiceDNSRecord/web", address, CHECK, "2025-01-01T00:00:00Z", "HTTP 500")


def votes(fresh: set[str], listing: dict[str, tuple[DownEntry, ...]] | None = None) -> Votes:
    listing = listing or {}
    return Votes(frozenset(fresh), tuple(sorted(fresh | set(listing))),
                 {(region, "east"): entries for region, entries in listing.items()})


def test_a_silent_cluster_every_fresh_region_sees_up_keeps_its_last_known_addresses_and_says_why() -> None:
    kept = judge_silent(east(), LOST, CHECK, votes({"a", "b", "c"}))
    assert kept is not None and kept.healthy and kept.addresses == east().addresses
    assert kept.reason == ("MemberUnreachableServing: API server not answering past the grace period; its last known "
                           "addresses kept: every one Up for 3 fresh regions")
    assert kept.health_check is not None and kept.health_check.verdict is Verdict.UP


def test_one_region_of_three_seeing_it_down_is_no_quorum_and_moves_nothing() -> None:
    kept = judge_silent(east(), LOST, CHECK, votes({"a", "b", "c"}, {"a": (down(),)}))
    assert kept is not None and kept.healthy


def test_a_down_quorum_takes_it_out_but_keeps_its_addresses_for_the_probers_to_check() -> None:
    out = judge_silent(east(), LOST, CHECK, votes({"a", "b", "c"}, {"a": (down(),), "b": (down(),)}))
    assert out is not None and not out.healthy and out.addresses == east().addresses
    assert out.reason == (f"MemberUnreachable: API server not answering past the grace period; {EAST_VIP} Down for a "
                          "majority of 3 fresh regions: out of the answer")


def test_one_address_down_of_two_is_enough_to_leave_since_the_member_cannot_say_which_still_serves() -> None:
    """Unlike a member that answers (where one address Up keeps the cluster), every last known address must be Up."""
    out = judge_silent(east(EAST_VIP, EAST_VIP2), LOST, CHECK, votes({"a"}, {"a": (down(EAST_VIP2),)}))
    assert out is not None and not out.healthy
    assert out.health_check is not None and out.health_check.down_addresses == (EAST_VIP2,)


def test_without_a_fresh_voter_there_is_no_proof_and_the_cluster_leaves() -> None:
    out = judge_silent(east(), LOST, CHECK, votes(set(), {"a": ()}))
    assert out is not None and not out.healthy
    assert out.reason.endswith("no fresh prober region to prove its last known addresses serving: out of the answer")


def test_a_cluster_not_ready_when_last_seen_gets_the_grace_rules_entry() -> None:
    out = judge_silent(east(healthy=False), LOST, CHECK, votes({"a"}))
    assert LOST.otherwise is not None and out is not None
    assert (out.addresses, out.healthy, out.reason) == ((), False, LOST.otherwise.reason)
    assert judge_silent(east(healthy=False), replace(LOST, otherwise=None), CHECK, votes({"a"})) is None


def test_an_entry_restored_from_the_status_counts_as_ready_when_only_a_verdict_took_it_out() -> None:
    """A restarted aggregator reads what it published: a quorum's or this rule's verdict, not the member's word."""
    for reason in ("HealthCheckFailed: Down from 2 of 3 regions",
                   "MemberUnreachable: API server not answering past the grace period; no fresh prober region",
                   "MemberUnreachableServing: API server not answering past the grace period"):
        kept = judge_silent(east(healthy=False, reason=reason), LOST, CHECK, votes({"a"}))
        assert kept is not None and kept.healthy, reason


def test_the_fleet_is_judged_by_the_quorum_and_only_silent_members_by_this_rule() -> None:
    west = ClusterStatus("west", "us-west", "us-west-1a", (LoadBalancerAddress(ip="198.18.2.1"),), True, "ok")
    judged = judge_fleet((east(), west), {"east": LOST}, CHECK, votes({"a"}))
    assert [(c.cluster, c.healthy, c.reason.split(":")[0]) for c in judged] == [
        ("east", True, Reason.MEMBER_UNREACHABLE_SERVING), ("west", True, "ok")]


def test_which_members_are_silent_and_what_their_last_known_entry_is_read_from() -> None:
    published = east()
    assert why_silent(MemberView(EAST, Reachability.LOST)) == "API server not answering past the grace period"
    assert why_silent(MemberView(EAST, Reachability.UNAVAILABLE, last_known=published)).startswith("not reached since")
    for quiet in (MemberView(EAST, Reachability.UNAVAILABLE), MemberView(EAST, Reachability.IN_GRACE),
                  MemberView(EAST, Reachability.CONNECTING, last_known=published),
                  MemberView(EAST, Reachability.CONNECTED)):
        assert why_silent(quiet) == "", quiet
    assert last_known_view(MemberView(EAST, Reachability.LOST)).reachability is Reachability.IN_GRACE  # its cache
    restored = last_known_view(MemberView(EAST, Reachability.UNAVAILABLE, last_known=published))
    assert restored.reachability is Reachability.CONNECTING and restored.last_known == published  # the status
