"""Intent status (per-cluster entries, the answer, Ready/Degraded/FailOpen/LoadBalancing conditions), a
MemberCluster's status (its reachability) and a DNSView's (Accepted); the events a status change makes are
aggregator/render/events.py.

Pure: the reconciler hands in the old status and the clock; a condition keeps its
lastTransitionTime while its status stays the same, so an unchanged answer writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from aggregator.health.readiness import KindProblem, MemberView, Reachability
from aggregator.model import (
    Answer,
    ClusterStatus,
    Condition,
    DNSViewObject,
    IntentStatus,
    MemberClusterStatus,
    UnavailableKind,
)
from aggregator.policy.loadbalancing import LOAD_BALANCING, Selection
from fleetdns.conditions import ACCEPTED, DEGRADED, FAIL_OPEN, REACHABLE, READY

OVERLAPPING_CIDRS = "OverlappingCIDRs"  # Accepted=False: its clientCIDRs overlap an earlier view's
NAME_CONFLICT = "NameConflict"  # Ready=False: the DNSEndpoint's name is held by an object that is not ours
INVALID_SPEC = "InvalidSpec"  # Ready=False: the intent's spec cannot be read; its records are left as they are
DOMAIN_NOT_FOUND = "DomainNotFound"  # Ready=False: the intent's domainRef names no Domain
INVALID_NAME = "InvalidName"  # Ready=False: a name the intent would publish cannot be served (too long, bad label)
# The guard rails' conditions (aggregator/registry/guardrails.py): names refused by the Domains, names claimed first by
# another intent; each False condition also makes a Warning event when it appears or changes
HOSTNAMES_ALLOWED = "HostnamesAllowed"
HOSTNAMES_CLAIMED = "HostnamesClaimed"
GUARD_CONDITIONS = (HOSTNAMES_ALLOWED, HOSTNAMES_CLAIMED)


CARRIED = (FAIL_OPEN, LOAD_BALANCING)  # conditions kept as they were when nothing could be decided


@dataclass(frozen=True)
class Outcome:
    """What one reconcile decided, before it becomes a status."""

    domain: str
    fqdn: str
    clusters: tuple[ClusterStatus, ...]
    published_records: int
    problem: str = ""  # a reason that stops publishing altogether (DomainNotFound, InvalidName)
    problem_message: str = ""
    selection: Selection | None = None  # the policy's answer (None: nothing decided, e.g. InvalidSpec)
    guard: tuple[Condition, ...] = ()  # the guard rails' conditions (none: not judged, the old ones stay)


def build_status(outcome: Outcome, generation: int, old: IntentStatus, now: str,
                 sources_agree: Condition | None = None) -> IntentStatus:
    """``sources_agree``: the SourcesAgree condition of a generated intent (aggregator/selfservice/generator.py)."""
    healthy = [c for c in outcome.clusters if c.healthy]
    unhealthy = [c for c in outcome.clusters if not c.healthy]
    selection = outcome.selection
    fail_open = (selection is not None and selection.fail_open and outcome.published_records > 0
                 and not outcome.problem)
    if outcome.problem:
        ready = Condition(READY, "False", outcome.problem, outcome.problem_message)
    elif healthy and outcome.published_records:
        ready = Condition(READY, "True", "Published",
                          f"{len(healthy)} of {len(outcome.clusters)} clusters healthy: "
                          + ", ".join(c.cluster for c in healthy))
    elif fail_open and selection is not None:
        ready = Condition(READY, "False", "NoHealthyClusters",
                          f"no healthy cluster among {len(outcome.clusters)} listed; failing open: the last healthy "
                          f"set answers: {_names(selection.answer)}")
    else:
        ready = Condition(READY, "False", "NoHealthyClusters",
                          f"no healthy cluster among {len(outcome.clusters)} listed; no records published")
    if unhealthy:
        degraded = Condition(DEGRADED, "True", "ClustersUnhealthy",
                             "; ".join(f"{c.cluster}: {c.reason}" for c in unhealthy))
    else:
        degraded = Condition(DEGRADED, "False", "AllClustersHealthy", "every listed cluster is healthy")
    conditions = [ready, degraded]
    answers = old.answers
    if selection is not None and not outcome.problem:
        answers = selection.answers
        conditions += [_fail_open_condition(fail_open, selection, bool(healthy)), selection.condition]
    else:  # nothing decided about the answer: its conditions and the last healthy set stay as they were
        conditions += [c for c in old.conditions if c.type in CARRIED]
    conditions += outcome.guard or [c for c in old.conditions if c.type in GUARD_CONDITIONS]
    conditions += [sources_agree] if sources_agree is not None else []
    stamped = stamp_all(conditions, generation, old.conditions, now)
    return IntentStatus(outcome.domain, outcome.fqdn, len(healthy), outcome.clusters, stamped, generation, answers)


def _fail_open_condition(fail_open: bool, selection: Selection, any_healthy: bool) -> Condition:
    if fail_open:
        return Condition(FAIL_OPEN, "True", "LastHealthySetKept",
                         f"no cluster is healthy; the last healthy set still answers: {_names(selection.answer)}")
    if any_healthy:
        return Condition(FAIL_OPEN, "False", "NotNeeded", "the answer holds healthy clusters")
    return Condition(FAIL_OPEN, "False", "NoLastHealthySet",
                     "no cluster is healthy and none of the last healthy set is left: nothing is published")


def _names(answer: Answer | None) -> str:
    return ", ".join(c.cluster for c in answer.clusters) if answer is not None and answer.clusters else "none"


def now_rfc3339() -> str:
    """The clock ``stamp`` is handed (and events' timestamps): UTC, to the second, as the API server writes times."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(condition: Condition, generation: int, old: tuple[Condition, ...], now: str) -> Condition:
    """The condition with its generation and lastTransitionTime, kept from ``old`` while its status stays the same
    (so an unchanged status writes nothing): the one rule for every status the aggregator writes."""
    previous = next((c for c in old if c.type == condition.type), None)
    since = previous.last_transition_time if previous and previous.status == condition.status else now
    return Condition(condition.type, condition.status, condition.reason, condition.message, since or now, generation)


def stamp_all(conditions: Iterable[Condition], generation: int, old: tuple[Condition, ...],
              now: str) -> tuple[Condition, ...]:
    """``stamp`` for each condition."""
    return tuple(stamp(c, generation, old, now) for c in conditions)


def condition_of(status: IntentStatus, kind: str) -> Condition | None:
    """The status's condition of type ``kind`` (None: it has none)."""
    return next((c for c in status.conditions if c.type == kind), None)


_REACHABLE: dict[Reachability, tuple[str, str]] = {
    Reachability.CONNECTED: ("True", "every watch and the /readyz probe answer"),
    Reachability.CONNECTING: ("Unknown", "not reached since the aggregator started; its clusters keep the "
                                         "entries last published for them for the grace period"),
    Reachability.IN_GRACE: ("False", "API server not answering; its clusters keep their last known answer "
                                     "for the grace period"),
    Reachability.LOST: ("False", "API server not answering past the grace period; its clusters left the answer, "
                                 "except where the probers' quorum proves them serving (MemberUnreachableServing)"),
    Reachability.UNAVAILABLE: ("False", "no usable connection; its clusters are not in the answer, "
                                        "except where the probers' quorum proves their last published addresses "
                                        "serving (MemberUnreachableServing)"),
}


def member_status(view: MemberView, problems: tuple[KindProblem, ...], generation: int,
                  old: MemberClusterStatus, now: str, optional: tuple[str, ...] = ()) -> MemberClusterStatus:
    """A MemberCluster's status: its state and a Reachable condition (one write per change of state), the
    optional kinds it does not let us list, and those of ``optional`` it serves (known once it was reached)."""
    status, message = _REACHABLE[view.reachability]
    if view.detail and view.reachability is not Reachability.CONNECTED:
        message = f"{message}: {view.detail}"
    stamped = stamp(Condition(REACHABLE, status, str(view.reachability), message), generation, old.conditions, now)
    kinds = tuple(UnavailableKind(p.kind, p.status, p.detail) for p in sorted(problems, key=lambda p: p.kind))
    refused = {p.kind for p in problems}
    reached = view.reachability in (Reachability.CONNECTED, Reachability.IN_GRACE, Reachability.LOST)
    served = tuple(sorted(kind for kind in set(optional) - refused)) if reached else ()
    return MemberClusterStatus(str(view.reachability), (stamped,), kinds, generation, served)


def dns_view_conditions(obj: DNSViewObject, refused: Mapping[str, str], regions: Iterable[str],
                        old: tuple[Condition, ...], now: str) -> tuple[Condition, ...]:
    """A DNSView's status: Accepted (served) or why not (InvalidSpec, OverlappingCIDRs naming the other view);
    an accepted view's message also says what its location policies will lack."""
    view = obj.view
    if view is None:
        condition = Condition(ACCEPTED, "False", INVALID_SPEC, f"{obj.problem}; this view is not served")
    elif view.name in refused:
        condition = Condition(ACCEPTED, "False", OVERLAPPING_CIDRS, refused[view.name])
    else:
        who = [f"clients from {', '.join(map(str, view.client_cidrs))}"] if view.client_cidrs else []
        who += [f"countries {', '.join(view.countries)}"] if view.countries else []
        who += [f"continents {', '.join(view.continents)}"] if view.continents else []
        notes = []
        if view.location is None:
            notes.append("no spec.location: GeoProximity answers this view with every healthy cluster")
        known = sorted(set(regions))
        if not view.latency_from:
            notes.append("no spec.latencyFrom: LowestLatency answers this view by distance")
        elif view.latency_from not in known:
            notes.append(f"spec.latencyFrom {view.latency_from!r} is not the region of any MemberCluster "
                         f"({', '.join(known) or 'none'}): LowestLatency answers this view by distance")
        message = "served: " + "; ".join(who) + "".join(f"; {note}" for note in notes)
        condition = Condition(ACCEPTED, "True", ACCEPTED, message)
    return (stamp(condition, obj.generation, old, now),)
