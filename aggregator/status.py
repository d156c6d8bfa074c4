"""Intent status (per-cluster entries, Ready/Degraded conditions), the joins/leaves that make events,
and a MemberCluster's status (its reachability).

Pure: the reconciler hands in the old status and the clock; a condition keeps its
lastTransitionTime while its status stays the same, so an unchanged answer writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from aggregator.model import ClusterStatus, Condition, IntentStatus, MemberClusterStatus, UnavailableKind
from aggregator.policy import KindProblem, MemberView, Reachability, Reason

READY = "Ready"
DEGRADED = "Degraded"
REACHABLE = "Reachable"  # the MemberCluster's condition
NAME_CONFLICT = "NameConflict"  # Ready=False: the DNSEndpoint's name is held by an object that is not ours
INVALID_SPEC = "InvalidSpec"  # Ready=False: the intent's spec cannot be read; its records are left as they are
PROBLEM_EVENTS = (NAME_CONFLICT, INVALID_SPEC)  # Ready reasons that also make a Warning event


@dataclass(frozen=True)
class Outcome:
    """What one reconcile decided, before it becomes a status."""

    domain: str
    fqdn: str
    clusters: tuple[ClusterStatus, ...]
    published_records: int
    problem: str = ""  # a reason that stops publishing altogether (DomainNotFound, InvalidName)
    problem_message: str = ""


@dataclass(frozen=True)
class ClusterChange:
    cluster: str
    reason: str


def build_status(outcome: Outcome, generation: int, old: IntentStatus, now: str) -> IntentStatus:
    healthy = [c for c in outcome.clusters if c.healthy]
    unhealthy = [c for c in outcome.clusters if not c.healthy]
    if outcome.problem:
        ready = Condition(READY, "False", outcome.problem, outcome.problem_message)
    elif healthy and outcome.published_records:
        ready = Condition(READY, "True", "Published",
                          f"{len(healthy)} of {len(outcome.clusters)} clusters healthy: "
                          + ", ".join(c.cluster for c in healthy))
    else:
        ready = Condition(READY, "False", "NoHealthyClusters",
                          f"no healthy cluster among {len(outcome.clusters)} listed; no records published")
    if unhealthy:
        degraded = Condition(DEGRADED, "True", "ClustersUnhealthy",
                             "; ".join(f"{c.cluster}: {c.reason}" for c in unhealthy))
    else:
        degraded = Condition(DEGRADED, "False", "AllClustersHealthy", "every listed cluster is healthy")
    conditions = tuple(_stamp(c, generation, old.conditions, now) for c in (ready, degraded))
    return IntentStatus(outcome.domain, outcome.fqdn, len(healthy), outcome.clusters, conditions, generation)


def _stamp(condition: Condition, generation: int, old: tuple[Condition, ...], now: str) -> Condition:
    """The condition with its generation and lastTransitionTime (kept while its status stays the same)."""
    previous = next((c for c in old if c.type == condition.type), None)
    since = previous.last_transition_time if previous and previous.status == condition.status else now
    return Condition(condition.type, condition.status, condition.reason, condition.message, since or now, generation)


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
    ready = next((c for c in new.conditions if c.type == READY), None)
    if ready is None or ready.reason not in PROBLEM_EVENTS:
        return None
    before = next((c for c in old.conditions if c.type == READY), None)
    if before is not None and (before.reason, before.message) == (ready.reason, ready.message):
        return None
    return ready


_REACHABLE: dict[Reachability, tuple[str, str]] = {
    Reachability.CONNECTED: ("True", "every watch and the /readyz probe answer"),
    Reachability.CONNECTING: ("Unknown", "not reached since the aggregator started; its clusters keep the "
                                         "entries last published for them for the grace period"),
    Reachability.IN_GRACE: ("False", "API server not answering; its clusters keep their last known answer "
                                     "for the grace period"),
    Reachability.LOST: ("False", "API server not answering past the grace period; its clusters left the answer"),
    Reachability.UNAVAILABLE: ("False", "no usable connection; its clusters are not in the answer"),
}


def member_status(view: MemberView, problems: tuple[KindProblem, ...], generation: int,
                  old: MemberClusterStatus, now: str) -> MemberClusterStatus:
    """A MemberCluster's status: its state and a Reachable condition (one write per change of state),
    and the optional kinds it does not let us list."""
    status, message = _REACHABLE[view.reachability]
    if view.detail and view.reachability is not Reachability.CONNECTED:
        message = f"{message}: {view.detail}"
    stamped = _stamp(Condition(REACHABLE, status, str(view.reachability), message), generation, old.conditions, now)
    kinds = tuple(UnavailableKind(p.kind, p.status, p.detail) for p in sorted(problems, key=lambda p: p.kind))
    return MemberClusterStatus(str(view.reachability), (stamped,), kinds, generation)
