"""Policy selection, the one home of ``spec.loadBalancing``: which healthy clusters answer each name of an
intent, and with which weight. Pure; the reconciler builds one Selector per reconcile and every name a
source renders (global, region, zone, Ingress host) asks it over its own candidates.

- RoundRobin: every healthy candidate.
- Weighted: those with weight > 0: a cluster named directly takes its weight; a region's weight is split
  equally over its healthy clusters not named directly; unlisted clusters weigh 0.
- Failover: the healthy candidates of the first target in failoverOrder that has one.

A policy never empties an answer: when it leaves nothing while a candidate is healthy, every healthy
candidate answers (``LoadBalancing=False NoEligibleTarget``). Fail open: when no cluster of the intent is
healthy, the last healthy set (``status.answers``, so it survives restarts) answers instead, minus clusters
whose member or object is gone. A target names a MemberCluster, else a region (a name that is both: the
cluster). Client-location views (issue 9) will ask the same Selector once per view.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from aggregator.model import (
    Answer,
    AnswerCluster,
    ClusterStatus,
    Condition,
    LoadBalancerAddress,
    LoadBalancing,
    Policy,
)
from aggregator.quorum import checked_addresses
from fleetdns.weights import MAX_WEIGHT, MIN_WEIGHT

LOAD_BALANCING = "LoadBalancing"  # the condition
NO_ELIGIBLE_TARGET = "NoEligibleTarget"
UNKNOWN_TARGETS = "UnknownTargets"
DEFAULT_VIEW = ""
Fleet = Mapping[str, str]  # MemberCluster name -> its region


@dataclass(frozen=True)
class Pick:
    """Who answers one name: the clusters, in name order, and their weights under Weighted."""

    clusters: tuple[ClusterStatus, ...] = ()
    weights: Mapping[str, float] | None = field(default=None, compare=False)  # cluster -> weight (Weighted)
    eligible: bool = True  # False: the policy left nothing, so every healthy candidate answers
    reason: str = ""


@dataclass(frozen=True)
class Selection:
    """The intent's default-view answer (for its status), whether fail-open is in force, and the
    LoadBalancing condition (not yet stamped)."""

    answer: Answer
    fail_open: bool
    condition: Condition


def published_ips(cluster: ClusterStatus) -> tuple[str, ...]:
    """The IPs a cluster contributes to an answer: its load balancer's and its resolved hostnames', without
    those the probers' quorum sees Down."""
    withdrawn = set(cluster.withdrawn)
    return tuple(ip for ip in checked_addresses(cluster) if ip not in withdrawn)


def scaled(weights: Mapping[str, float]) -> dict[str, int]:
    """Weights scaled so the largest is 255, rounded half up, each at least 1 (80/20 -> 255/64)."""
    top = max(weights.values(), default=0.0)
    if top <= 0:
        return {}
    return {key: max(MIN_WEIGHT, math.floor(value * MAX_WEIGHT / top + 0.5)) for key, value in weights.items()}


def address_weights(weights: Mapping[str, float], addresses: Mapping[str, Sequence[str]],
                    version: int) -> dict[str, int]:
    """Per address of one IP family: each cluster's weight split equally over its addresses of that
    family, then scaled (AAAA answers get their own weights)."""
    raw: dict[str, float] = {}
    for cluster, weight in weights.items():
        mine = [a for a in addresses.get(cluster, ()) if ipaddress.ip_address(a).version == version]
        for address in mine:
            raw[address] = raw.get(address, 0.0) + weight / len(mine)
    return scaled(raw)


class Selector:
    """One intent's policy over one reconcile's clusters (after readiness and quorum)."""

    def __init__(self, load_balancing: LoadBalancing | None = None, clusters: Iterable[ClusterStatus] = (),
                 fleet: Fleet | None = None, last: Answer | None = None) -> None:
        clusters = tuple(clusters)
        self.load_balancing = load_balancing or LoadBalancing()
        self.fleet: dict[str, str] = dict(fleet) if fleet is not None else {c.cluster: c.region for c in clusters}
        self._regions = set(self.fleet.values())
        self._stand_ins: dict[str, ClusterStatus] = {}
        if last is not None and not any(c.healthy for c in clusters):
            present = {c.cluster: c for c in clusters}  # a cluster whose member or object is gone is not listed
            for kept in last.clusters:
                if kept.cluster in present and kept.addresses:
                    self._stand_ins[kept.cluster] = _stand_in(present[kept.cluster], kept.addresses)
        self.selection = self._select(clusters)

    @property
    def fail_open(self) -> bool:
        return bool(self._stand_ins)

    def pick(self, candidates: Iterable[ClusterStatus]) -> Pick:
        """Who answers a name whose candidates (the clusters it may contain) are these."""
        if self._stand_ins:
            eligible = [self._stand_ins[c.cluster] for c in candidates if c.cluster in self._stand_ins]
        else:
            eligible = [c for c in candidates if c.healthy]
        eligible.sort(key=lambda c: c.cluster)
        if not eligible:
            return Pick(reason="no healthy cluster")
        policy = self.load_balancing.policy
        if policy is Policy.WEIGHTED:
            return self._weighted(eligible)
        if policy is Policy.FAILOVER:
            return self._failover(eligible)
        return Pick(tuple(eligible), reason="every healthy cluster answers")

    def _weighted(self, eligible: list[ClusterStatus]) -> Pick:
        weights = self.load_balancing.weights
        direct = {w.target: w.weight for w in weights if w.target in self.fleet}
        shares = {c.cluster: float(direct[c.cluster]) for c in eligible if c.cluster in direct}
        for item in weights:
            if item.target in direct or item.target not in self._regions:
                continue
            members = [c for c in eligible if c.region == item.target and c.cluster not in direct]
            for cluster in members:
                shares[cluster.cluster] = item.weight / len(members)
        chosen = tuple(c for c in eligible if shares.get(c.cluster, 0) > 0)
        if not chosen:
            return _fallback(eligible, "no target with weight above 0 has a healthy cluster")
        return Pick(chosen, {c.cluster: shares[c.cluster] for c in chosen},
                    reason="clusters with weight above 0 answer in proportion to their weights")

    def _failover(self, eligible: list[ClusterStatus]) -> Pick:
        skipped: list[str] = []
        for target in self.load_balancing.failover_order:
            group = tuple(c for c in eligible if self._names(target, c))
            if group:
                before = f"; before it: {', '.join(skipped)} (no healthy cluster)" if skipped else ""
                return Pick(group, reason=f"{target}: first target in failoverOrder with a healthy cluster{before}")
            skipped.append(target)
        return _fallback(eligible, "no target in failoverOrder has a healthy cluster")

    def _names(self, target: str, cluster: ClusterStatus) -> bool:
        """Whether a target names the cluster: by name (a cluster wins over a region of that name), or by region."""
        return cluster.cluster == target if target in self.fleet else cluster.region == target

    def _targets(self) -> tuple[str, ...]:
        lb = self.load_balancing
        if lb.policy is Policy.WEIGHTED:
            return tuple(w.target for w in lb.weights)
        if lb.policy is Policy.FAILOVER:
            return lb.failover_order
        return ()

    def _select(self, clusters: tuple[ClusterStatus, ...]) -> Selection:
        pick = self.pick(clusters)
        cluster_weights = scaled(pick.weights) if pick.weights is not None else {}
        members = tuple(AnswerCluster(c.cluster, published_ips(c) or _hostnames(c), cluster_weights.get(c.cluster, 0))
                        for c in pick.clusters)
        reason = "no cluster is healthy: the last healthy set answers (fail open)" if self.fail_open else pick.reason
        answer = Answer(DEFAULT_VIEW, self.load_balancing.policy, members, reason)
        return Selection(answer, self.fail_open, self._condition(pick))

    def _condition(self, pick: Pick) -> Condition:
        targets = self._targets()
        unknown = [t for t in targets if t not in self.fleet and t not in self._regions]
        unknown_note = f"targets naming no MemberCluster and no region: {', '.join(unknown)}" if unknown else ""
        if not pick.eligible:
            message = f"{pick.reason}; every healthy cluster answers: {', '.join(c.cluster for c in pick.clusters)}"
            return Condition(LOAD_BALANCING, "False", NO_ELIGIBLE_TARGET,
                             f"{message}; {unknown_note}" if unknown else message)
        if unknown:
            return Condition(LOAD_BALANCING, "False", UNKNOWN_TARGETS, unknown_note)
        message = self._describe()
        both = [t for t in targets if t in self.fleet and t in self._regions]
        if both:
            message += f"; {', '.join(both)} names both a MemberCluster and a region: the MemberCluster is meant"
        return Condition(LOAD_BALANCING, "True", "Applied", message)

    def _describe(self) -> str:
        lb = self.load_balancing
        if lb.policy is Policy.WEIGHTED:
            return "Weighted: " + ", ".join(f"{w.target}={w.weight}" for w in lb.weights)
        if lb.policy is Policy.FAILOVER:
            return "Failover: " + ", then ".join(lb.failover_order)
        return "RoundRobin: every healthy cluster answers"


def _fallback(eligible: list[ClusterStatus], why: str) -> Pick:
    """A policy never empties an answer: every healthy candidate answers."""
    return Pick(tuple(eligible), eligible=False, reason=why)


def _hostnames(cluster: ClusterStatus) -> tuple[str, ...]:
    return tuple(a.hostname for a in cluster.addresses if a.hostname)


def _stand_in(entry: ClusterStatus, addresses: tuple[str, ...]) -> ClusterStatus:
    """A kept cluster as it answered last (fail open): its published addresses, healthy for the records only
    (its status entry stays as it is)."""
    kept = []
    for address in addresses:
        try:
            kept.append(LoadBalancerAddress(ip=str(ipaddress.ip_address(address))))
        except ValueError:
            kept.append(LoadBalancerAddress(hostname=address))
    return replace(entry, addresses=tuple(kept), resolved=(), healthy=True, health_check=None)
