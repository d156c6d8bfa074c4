"""The Kubernetes Events of an intent, as a pure function of its old and new status (``status_events``): clusters
that joined or left the answer, a problem an operator must fix, names the guard rails refuse, fail-open, an answer
that moved. And what an event is handed over with (``InvolvedObject``, ``EventSink``); the recorder that posts
them off the reconcile path is aggregator/controller/events.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aggregator.health.readiness import Reason
from aggregator.model import Condition, IntentStatus, Policy
from aggregator.render.status import GUARD_CONDITIONS, INVALID_SPEC, NAME_CONFLICT, condition_of
from fleetdns.conditions import FAIL_OPEN, READY

NORMAL, WARNING = "Normal", "Warning"
PROBLEM_EVENTS = (NAME_CONFLICT, INVALID_SPEC)  # Ready reasons that also make a Warning event
CLUSTER_JOINED, CLUSTER_LEFT = "ClusterJoined", "ClusterLeft"
ANSWER_MOVED = "AnswerMoved"  # the event of a Failover answer, or a view's answer, that moved to other clusters


@dataclass(frozen=True)
class Event:
    """One event about an intent, before it is handed to the recorder."""

    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class InvolvedObject:
    """The object an event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str

    def to_json(self) -> dict[str, str]:
        return {"apiVersion": self.api_version, "kind": self.kind, "namespace": self.namespace,
                "name": self.name, "uid": self.uid}


class EventSink(Protocol):
    """What a reconcile hands events to; never blocks on the API."""

    def record(self, involved: InvolvedObject, kind: str, reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class ClusterChange:
    cluster: str
    reason: str


def status_events(old: IntentStatus, new: IntentStatus) -> list[Event]:
    """What changed between the two statuses that an operator should hear of, in the order they are recorded."""
    joined, left = cluster_changes(old, new)
    events = []
    if joined:
        events.append(Event(NORMAL, CLUSTER_JOINED, "joined the answer: " + _changes(joined)))
    if left:
        events.append(Event(WARNING, CLUSTER_LEFT, "left the answer: " + _changes(left)))
    if (problem := problem_event(old, new)) is not None:
        events.append(Event(WARNING, problem.reason, problem.message))
    events += [Event(WARNING, refusal.reason, refusal.message) for refusal in refusal_events(old, new)]
    if (fail_open := fail_open_event(old, new)) is not None:
        events.append(Event(WARNING, FAIL_OPEN, fail_open.message))
    if (moved := answer_moved(old, new)) is not None:
        events.append(Event(moved[0], ANSWER_MOVED, moved[1]))
    return events


def _changes(changes: list[ClusterChange]) -> str:
    return "; ".join(f"{c.cluster} ({c.reason})" for c in changes)


def cluster_changes(old: IntentStatus, new: IntentStatus) -> tuple[list[ClusterChange], list[ClusterChange]]:
    """Clusters that joined and left the answer (healthy set), each with the reason now reported."""
    was = {c.cluster for c in old.dns if c.healthy}
    now = {c.cluster: c for c in new.dns}
    joined = [ClusterChange(name, c.reason) for name, c in sorted(now.items()) if c.healthy and name not in was]
    left = [ClusterChange(name, now[name].reason if name in now else f"{Reason.NOT_FOUND}: no longer present")
            for name in sorted(was) if name not in now or not now[name].healthy]
    return joined, left


def problem_event(old: IntentStatus, new: IntentStatus) -> Condition | None:
    """The Ready condition when it newly reports a problem an operator must fix (NameConflict, InvalidSpec)."""
    ready = condition_of(new, READY)
    if ready is None or ready.reason not in PROBLEM_EVENTS:
        return None
    before = condition_of(old, READY)
    if before is not None and (before.reason, before.message) == (ready.reason, ready.message):
        return None
    return ready


def refusal_events(old: IntentStatus, new: IntentStatus) -> list[Condition]:
    """The guard rails' conditions that newly refuse names (or refuse others than before): Warning events."""
    events = []
    for kind in GUARD_CONDITIONS:
        now, before = condition_of(new, kind), condition_of(old, kind)
        if now is not None and now.status == "False" and (
                before is None or (before.status, before.message) != (now.status, now.message)):
            events.append(now)
    return events


def fail_open_event(old: IntentStatus, new: IntentStatus) -> Condition | None:
    """The FailOpen condition when fail-open starts (or keeps another set): a Warning event."""
    now = condition_of(new, FAIL_OPEN)
    if now is None or now.status != "True":
        return None
    before = condition_of(old, FAIL_OPEN)
    if before is not None and (before.status, before.message) == (now.status, now.message):
        return None
    return now


def answer_moved(old: IntentStatus, new: IntentStatus) -> tuple[str, str] | None:
    """(event type, message) when a Failover answer, or the answer of one or more client views (location
    policies), moved to other clusters: Warning when one left clusters that are no longer healthy, Normal
    when it moved for another reason (a target recovered, a path became faster). Not under fail-open."""
    default = new.answer()
    if default is None or any(_is_true(s, FAIL_OPEN) for s in (old, new)):
        return None
    views = [""] if default.policy is Policy.FAILOVER else [a.view for a in new.answers if a.view] \
        if default.policy.per_view else []
    healthy = {c.cluster for c in new.dns if c.healthy}
    moves, warning = [], False
    for view in views:
        before, after = old.answer(view), new.answer(view)
        if before is None or after is None or before.policy is not after.policy or not before.clusters \
                or not after.clusters:
            continue
        was, now = [c.cluster for c in before.clusters], [c.cluster for c in after.clusters]
        if set(was) == set(now):
            continue
        warning = warning or not set(was) & healthy
        where = f"view {view}: " if view else ""
        moves.append(f"{where}answer moved from {', '.join(was)} to {', '.join(now)}: {after.reason}")
    if not moves:
        return None
    return WARNING if warning else NORMAL, "; ".join(moves)


def _is_true(status: IntentStatus, kind: str) -> bool:
    condition = condition_of(status, kind)
    return condition is not None and condition.status == "True"
