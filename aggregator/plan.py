"""What one reconcile of an intent wants, decided stage by stage over what the reconciler read (``Observed``):
evaluate every member through the intent's source, the probers' verdicts (aggregator/health/quorum.py; for a silent
member's clusters, aggregator/health/silence.py), the source
lays out the intent's names, the policy answers every one of them at once (aggregator/policy/loadbalancing.py), then
the records are rendered from those answers (aggregator/render/records.py). No writes and no calls back into the
controller: the reconciler gathers the inputs before and writes the result after (aggregator/controller/reconciler.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aggregator.health.quorum import Votes
from aggregator.health.readiness import MemberView
from aggregator.health.silence import SilentMember, judge_fleet, last_known_view, why_silent
from aggregator.model import ClusterStatus, IntentStatus
from aggregator.policy.loadbalancing import Selector
from aggregator.policy.proximity import Locality
from aggregator.render.records import render_records
from aggregator.render.status import INVALID_SPEC, Outcome
from aggregator.sources.base import Desired, Domains, MemberObjects, Source, desired
from aggregator.sources.intent import Intent, InvalidIntent


@dataclass(frozen=True)
class Member:
    """One member cluster as this reconcile saw it: its reachability (read once) and its objects."""

    view: MemberView
    objects: MemberObjects  # its name is the MemberCluster's


@dataclass(frozen=True)
class Observed:
    """What the reconciler read for one intent: the inputs of ``plan``."""

    members: tuple[Member, ...]  # every member cluster, in name order
    domains: Domains  # the intent's domainRef Domain (aggregator/registry/domains.py DomainLookup)
    votes: Votes = field(default_factory=Votes)  # the probers' (read only for an intent with spec.healthCheck)
    locality: Locality | None = None  # views, locations and RTTs (read only for location policies)


def plan(source: Source[Any], intent: Intent, previous: IntentStatus, observed: Observed) -> Desired:
    """The records and the outcome for the status. ``previous`` (the last published status) stands in for members
    not reached since start-up, and holds the last healthy set (fail open) and the views' last answers."""
    entries, silent = evaluate(source, intent, previous, observed.members, checked=intent.health_check is not None)
    if intent.health_check is not None:
        check_id = intent.health_check.resolved(source.check_host(intent, observed.domains)).check_id
        entries = judge_fleet(entries, silent, check_id, observed.votes)
    layout = source.layout(intent, entries, observed.domains)
    fleet = {member.objects.name: member.view.cluster.region for member in observed.members}
    selector = Selector(intent.load_balancing, entries, fleet, previous.answer(), observed.locality, previous.answers)
    answers = selector.answer_all(layout.slots)
    records = render_records(layout, answers, intent.record_ttl)
    return desired(layout, entries, records, selector.selection)


def evaluate(source: Source[Any], intent: Intent, previous: IntentStatus, members: Sequence[Member],
             checked: bool = False) -> tuple[tuple[ClusterStatus, ...], dict[str, SilentMember]]:
    """Each member's entry by its source's readiness rule (members without the object are not listed), then the
    load balancers' hostnames resolved. ``checked`` (the intent has a health check): a silent member's entry is its
    last known one, and it is returned among the silent members for the probers' quorum to keep or take out
    (aggregator/health/silence.py)."""
    last = {entry.cluster: entry for entry in previous.dns}
    entries: list[ClusterStatus] = []
    silent: dict[str, SilentMember] = {}
    for member in members:
        view = replace(member.view, last_known=last.get(member.objects.name))
        entry = source.evaluate(intent, view, member.objects)
        why = why_silent(view) if checked else ""
        kept = source.evaluate(intent, last_known_view(view), member.objects) if why else None
        if kept is not None:
            silent[member.objects.name] = SilentMember(why, entry)
            entry = kept
        if entry is not None:
            entries.append(entry)
    return source.resolve_hostnames(intent, tuple(entries)), silent


def unreadable(intent: InvalidIntent, previous: IntentStatus) -> Outcome:
    """Nothing can be decided for a spec that cannot be read: the records stay as last published (never deleted
    for a parse error), and Ready says why."""
    return Outcome(previous.domain, previous.fqdn, previous.dns, 0, INVALID_SPEC,
                   f"{intent.problem}; the records published before stay as they are until the spec is fixed")
