"""Member silence: the data plane's proof outlives the control plane's silence (docs/design/faults.md §2).

Where readiness (readiness.py) and the probers' quorum (quorum.py) meet for a member that stopped answering. A
member is *silent* when its API server has not answered for longer than the grace period (``LOST``), or when a
restarted aggregator has not reached it within the grace period but the intent's status still holds an entry for
it (``UNAVAILABLE`` with ``last_known``). For an intent with ``spec.healthCheck``, each cluster of a silent member
keeps its last known entry (the member's cache, or that status entry) while a fresh quorum of regions votes Up for
every one of its addresses (``MemberUnreachableServing``); it leaves the answer when a quorum votes one Down, when
no region is fresh (no proof either way), or when the member answers again and says otherwise. Its addresses stay in
``status.dns[]`` while it is out, so the probers keep checking them and their Up brings it back. Without a health
check nothing proves the app alive: the grace rule (``readiness.unreachable``) removes it, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from aggregator.health.quorum import HEALTH_CHECK_FAILED, Votes, checked_addresses, judge_cluster
from aggregator.health.readiness import MemberView, Reachability, Reason
from aggregator.model import ClusterStatus, Verdict

# The reasons a published entry carries only when its member's objects made it ready: an entry restored from the
# status (a restarted aggregator) with one of them and an address was ready when last seen.
_READY_BEHIND = (HEALTH_CHECK_FAILED, str(Reason.MEMBER_UNREACHABLE), str(Reason.MEMBER_UNREACHABLE_SERVING))


@dataclass(frozen=True)
class SilentMember:
    """A silent member of one intent's fleet: why it is silent (said in the reason) and the entry the grace rule
    gives its cluster (None: not listed), which stands when its last known entry was not serving."""

    why: str
    otherwise: ClusterStatus | None


def why_silent(view: MemberView) -> str:
    """Why the member is silent (its view with ``last_known`` filled in), or "" when it is not."""
    if view.reachability is Reachability.LOST:
        return "API server not answering past the grace period"
    if view.reachability is Reachability.UNAVAILABLE and view.last_known is not None:
        return "not reached since the aggregator started, past the grace period"
    return ""


def last_known_view(view: MemberView) -> MemberView:
    """The view a source evaluates a silent member's last known entry from: its cache as within the grace period,
    or, not reached since start-up, the entry the intent's status last published for it."""
    if view.reachability is Reachability.LOST:
        return replace(view, reachability=Reachability.IN_GRACE)
    if view.reachability is Reachability.UNAVAILABLE:
        return replace(view, reachability=Reachability.CONNECTING)
    return view


def judge_fleet(clusters: tuple[ClusterStatus, ...], silent: Mapping[str, SilentMember], check_id: str,
                votes: Votes) -> tuple[ClusterStatus, ...]:
    """quorum.judge over every cluster, the clusters of silent members (their last known entries) by this rule."""
    judged = (judge_silent(cluster, silent[cluster.cluster], check_id, votes) if cluster.cluster in silent
              else judge_cluster(cluster, check_id, votes) for cluster in clusters)
    return tuple(cluster for cluster in judged if cluster is not None)


def judge_silent(last: ClusterStatus, member: SilentMember, check_id: str, votes: Votes) -> ClusterStatus | None:
    """A silent member's cluster: its last known entry while a fresh quorum sees every address Up, else out."""
    if not _ready_when_last_seen(last):
        return None if member.otherwise is None else judge_cluster(member.otherwise, check_id, votes)
    judged = judge_cluster(replace(last, healthy=True), check_id, votes)
    health = judged.health_check
    assert health is not None  # judge_cluster always gives its verdict
    if health.verdict is Verdict.UP and not health.down_addresses:
        return replace(judged, reason=f"{Reason.MEMBER_UNREACHABLE_SERVING}: {member.why}; its last known "
                                      f"addresses kept: every one Up for {len(votes.fresh)} fresh regions")
    out = _why_out(judged, votes)
    return replace(judged, healthy=False, reason=f"{Reason.MEMBER_UNREACHABLE}: {member.why}; {out}")


def _ready_when_last_seen(entry: ClusterStatus) -> bool:
    """Whether readiness held when the member was last seen (an entry from the status may carry a verdict since)."""
    if entry.healthy:
        return True
    return bool(checked_addresses(entry)) and entry.reason.split(":", 1)[0] in _READY_BEHIND


def _why_out(judged: ClusterStatus, votes: Votes) -> str:
    health = judged.health_check
    assert health is not None
    if health.down_addresses:
        return (f"{', '.join(health.down_addresses)} Down for a majority of {len(votes.fresh)} fresh regions: "
                "out of the answer")
    if not votes.fresh:
        return "no fresh prober region to prove its last known addresses serving: out of the answer"
    return "no last known address the probers can check: out of the answer"
