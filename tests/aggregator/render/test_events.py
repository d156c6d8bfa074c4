"""An intent's events as a pure function of its old and new status: what is announced, in which order, and that an
unchanged status announces nothing."""

from __future__ import annotations

import pytest

from aggregator.model import ClusterStatus, IntentStatus, LoadBalancerAddress, LoadBalancing, Policy
from aggregator.policy.loadbalancing import Selector
from aggregator.render.events import Event, status_events
from aggregator.render.status import INVALID_SPEC, Outcome, build_status

pytestmark = pytest.mark.unit
IPS = {"east": "198.18.1.1", "west": "198.18.2.1"}


def cluster(name: str, healthy: bool = True) -> ClusterStatus:
    reason = "ReadyEndpoints: 1 ready" if healthy else "NoReadyEndpoints: no ready endpoint in EndpointSlices"
    return ClusterStatus(name, f"us-{name}", f"us-{name}-1a", (LoadBalancerAddress(ip=IPS[name]),), healthy, reason)


def status(old: IntentStatus, *clusters: ClusterStatus, lb: LoadBalancing | None = None,
           problem: str = "", message: str = "") -> IntentStatus:
    selector = Selector(lb or LoadBalancing(), clusters, last=old.answer())
    published = len(selector.pick(clusters).clusters)  # one record per answering cluster here
    outcome = Outcome("example.com", "web.example.com", clusters, published, problem, message,
                      selection=None if problem else selector.selection)
    return build_status(outcome, 1, old, "2025-01-01T00:00:00Z")


def test_a_cluster_that_joins_and_one_that_leaves_are_announced_with_their_reasons() -> None:
    before = status(IntentStatus(), cluster("east"))
    after = status(before, cluster("east", False), cluster("west"))
    assert status_events(before, after) == [
        Event("Normal", "ClusterJoined", "joined the answer: west (ReadyEndpoints: 1 ready)"),
        Event("Warning", "ClusterLeft",
              "left the answer: east (NoReadyEndpoints: no ready endpoint in EndpointSlices)"),
    ]


def test_an_unchanged_status_announces_nothing() -> None:
    first = status(IntentStatus(), cluster("east"), cluster("west"))
    again = status(first, cluster("east"), cluster("west"))
    assert again == first and status_events(first, again) == []


def test_a_spec_that_cannot_be_read_is_a_warning_once_not_on_every_reconcile() -> None:
    published = status(IntentStatus(), cluster("east"))
    broken = status(published, cluster("east"), problem=INVALID_SPEC, message="spec.domainRef is required")
    assert status_events(published, broken) == [Event("Warning", INVALID_SPEC, "spec.domainRef is required")]
    assert status_events(broken, status(broken, cluster("east"), problem=INVALID_SPEC,
                                        message="spec.domainRef is required")) == []


def test_fail_open_is_announced_after_the_clusters_that_left() -> None:
    healthy = status(IntentStatus(), cluster("east"))
    down = status(healthy, cluster("east", False))
    assert [(e.type, e.reason) for e in status_events(healthy, down)] == [("Warning", "ClusterLeft"),
                                                                         ("Warning", "FailOpen")]
    assert status_events(healthy, down)[1].message.endswith("the last healthy set still answers: east")


def test_a_failover_answer_that_moved_is_the_last_event_of_its_change() -> None:
    lb = LoadBalancing(Policy.FAILOVER, failover_order=("east", "west"))
    first = status(IntentStatus(), cluster("east"), cluster("west"), lb=lb)
    moved = status(first, cluster("east", False), cluster("west"), lb=lb)
    events = status_events(first, moved)
    assert [(e.type, e.reason) for e in events] == [("Warning", "ClusterLeft"), ("Warning", "AnswerMoved")]
    assert events[-1].message.startswith("answer moved from east to west: ")
