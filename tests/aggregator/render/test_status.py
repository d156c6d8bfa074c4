"""What the status says: conditions that keep their transition time, the clusters that joined and left, fail open
and a moved answer with the events they are due, a status (and the views' last answers) that reads back as written,
a DNSView's Accepted condition, and a member's served kinds."""

from __future__ import annotations

import pytest

from aggregator.health.readiness import KindProblem, MemberView, Reachability
from aggregator.model import (
    Answer,
    AnswerCluster,
    ClusterHealth,
    ClusterStatus,
    DNSViewObject,
    IntentStatus,
    LoadBalancerAddress,
    LoadBalancing,
    MemberClusterStatus,
    Policy,
    RegionHealth,
    Verdict,
    parse_dns_view_object,
    parse_member_cluster_status,
    parse_status,
)
from aggregator.policy.loadbalancing import Selector
from aggregator.policy.proximity import NO_LATENCY_DATA
from aggregator.render.events import answer_moved, cluster_changes, fail_open_event
from aggregator.render.records import address_records
from aggregator.render.status import Outcome, build_status, dns_view_conditions, member_status
from fleetdns.dnsview import accept_views
from tests.support.model import EAST, V4, WEST, cluster, dns_view, entry, failover, ip, weighted

pytestmark = pytest.mark.unit


# --- conditions and the clusters that joined and left ------------------------------------------

def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    outcome = Outcome("example.com", "web.example.com", (entry(EAST, ip("192.0.2.1")),), 1)
    first = build_status(outcome, 1, build_status(outcome, 0, build_status(outcome, 0, _empty(), "t0"), "t0"), "t1")
    assert [c.last_transition_time for c in first.conditions] == ["t0", "t0"]
    degraded = Outcome("example.com", "web.example.com", (entry(EAST, ip("192.0.2.1")), entry(WEST, (), False)), 1)
    second = build_status(degraded, 1, first, "t2")
    assert [(c.type, c.status, c.last_transition_time) for c in second.conditions] == [
        ("Ready", "True", "t0"), ("Degraded", "True", "t2")]


def test_cluster_changes_name_joins_and_leaves_with_reasons() -> None:
    before = build_status(Outcome("", "", (entry(EAST, ip("192.0.2.1")),), 1), 1, _empty(), "t")
    after = build_status(Outcome("", "", (entry(EAST, ip("192.0.2.1"), False), entry(WEST, ip("192.0.2.9"))), 1),
                         1, before, "t")
    joined, left = cluster_changes(before, after)
    assert [c.cluster for c in joined] == ["west"] and [c.cluster for c in left] == ["east"]


def _empty() -> IntentStatus:
    return IntentStatus()


# --- what a policy's outcome says: fail open, a moved answer --------------------------------------

def status_after(clusters: tuple[ClusterStatus, ...], old: IntentStatus,
                 lb: LoadBalancing | None = None) -> IntentStatus:
    selector = Selector(lb or LoadBalancing(), clusters, last=old.answer())
    published = len(address_records("a.example.com", selector.pick(clusters), 30))
    return build_status(Outcome("example.com", "a.example.com", clusters, published, selection=selector.selection),
                        1, old, "t")


def conditions(status: IntentStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_status_says_when_fail_open_is_in_force_and_an_event_is_due_once() -> None:
    healthy = status_after((cluster("east"), cluster("west")), IntentStatus())
    assert conditions(healthy)["FailOpen"] == ("False", "NotNeeded")
    assert conditions(healthy)["LoadBalancing"] == ("True", "Applied")
    down = status_after((cluster("east", False), cluster("west", False)), healthy)
    assert conditions(down)["FailOpen"] == ("True", "LastHealthySetKept")
    assert conditions(down)["Ready"] == ("False", "NoHealthyClusters")
    assert "failing open" in next(c.message for c in down.conditions if c.type == "Ready")
    assert down.answer() is not None and [c.cluster for c in down.answer().clusters] == ["east", "west"]
    assert fail_open_event(healthy, down) is not None
    assert fail_open_event(down, status_after((cluster("east", False), cluster("west", False)), down)) is None


def test_a_failover_answer_that_moved_makes_a_warning_and_its_return_a_normal_event() -> None:
    lb = failover("east", "west")
    first = status_after((cluster("east"), cluster("west")), IntentStatus(), lb)
    moved = status_after((cluster("east", False), cluster("west")), first, lb)
    kind, message = answer_moved(first, moved) or ("", "")
    assert kind == "Warning" and message.startswith("answer moved from east to west")
    back = status_after((cluster("east"), cluster("west")), moved, lb)
    assert (answer_moved(moved, back) or ("",))[0] == "Normal"
    assert answer_moved(back, status_after((cluster("east"), cluster("west")), back, lb)) is None


def test_status_with_health_checks_and_answers_reads_back_as_written() -> None:
    """What is compared with the last written status must survive the API's JSON, or every reconcile writes."""
    entry = ClusterStatus("east", "us-east", "us-east-1a", (LoadBalancerAddress(ip=V4["east"]),), False,
                          "HealthCheckFailed: Down from 2 of 3 regions",
                          health_check=ClusterHealth(Verdict.DOWN, (V4["east"],), (
                              RegionHealth("a", "Down", "HTTP 500", "2025-01-01T00:00:00Z", True),
                              RegionHealth("b", "Up", fresh=False))))
    status = status_after((entry, cluster("west")), IntentStatus(), weighted(("east", 10), ("west", 20)))
    assert parse_status(status.to_json()) == status


# --- DNSViews and each view's answer ---------------------------------------------------------------

def test_a_view_overlapping_an_earlier_one_is_not_served_and_the_message_names_it() -> None:
    views = [dns_view("beta", "10.1.0.0/16"), dns_view("alpha", "10.0.0.0/8"), dns_view("gamma", "10.1.2.0/24"),
             dns_view("delta", "2001:db8::/32", "192.0.2.0/24")]
    accepted, refused = accept_views(views)
    assert [v.name for v in accepted] == ["alpha", "delta"]
    assert refused["beta"].startswith("clientCIDRs 10.1.0.0/16 overlaps 10.0.0.0/8 of DNSView alpha")
    assert "alpha" in refused["gamma"]
    obj = DNSViewObject("beta", views[0], generation=3)
    (condition,) = dns_view_conditions(obj, refused, ["us-east"], (), "t0")
    assert (condition.status, condition.reason, condition.observed_generation) == ("False", "OverlappingCIDRs", 3)


def test_an_accepted_views_status_says_what_its_policies_will_lack() -> None:
    obj = parse_dns_view_object({"metadata": {"name": "europe", "generation": 2},
                                 "spec": {"countries": ["DE"], "latencyFrom": "eu"}})
    (condition,) = dns_view_conditions(obj, {}, ["us-east", "us-west"], (), "t0")
    assert (condition.status, condition.reason) == ("True", "Accepted")
    assert condition.message == ("served: countries DE; no spec.location: GeoProximity answers this view with every "
                                 "healthy cluster; spec.latencyFrom 'eu' is not the region of any MemberCluster "
                                 "(us-east, us-west): LowestLatency answers this view by distance")
    bad = parse_dns_view_object({"metadata": {"name": "region-x"}, "spec": {"countries": ["DE"]}})
    (condition,) = dns_view_conditions(bad, {}, [], (), "t0")
    assert (condition.status, condition.reason) == ("False", "InvalidSpec")


def test_last_answers_survive_a_round_trip_through_the_status() -> None:
    answer = Answer("europe", Policy.LOWEST_LATENCY, (AnswerCluster("east", (V4["east"],)),), "why", NO_LATENCY_DATA)
    assert parse_status({"answers": [answer.to_json()]}).answers == (answer,)

# --- the member's status -------------------------------------------------------------------------


NOW = "2026-01-02T03:04:05Z"


def test_a_members_status_lists_the_optional_kinds_it_serves_once_it_was_reached() -> None:
    optional = ("gateways", "httproutes", "ingresses")
    missing = (KindProblem("gateways", 404, "the server could not find the requested resource"),
               KindProblem("httproutes", 404, "the server could not find the requested resource"))
    connected = member_status(MemberView(EAST, Reachability.CONNECTED), missing, 1, MemberClusterStatus(), NOW,
                              optional)
    assert connected.served_kinds == ("ingresses",)
    assert [k.kind for k in connected.unavailable_kinds] == ["gateways", "httproutes"]
    assert connected.to_json()["servedKinds"] == ["ingresses"]
    assert parse_member_cluster_status(connected.to_json()) == connected
    everything = member_status(MemberView(EAST, Reachability.LOST), (), 1, connected, NOW, optional)
    assert everything.served_kinds == optional  # what it served when last reached
    connecting = member_status(MemberView(EAST, Reachability.CONNECTING), (), 1, MemberClusterStatus(), NOW, optional)
    assert connecting.served_kinds == ()  # not known yet
