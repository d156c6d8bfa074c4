"""Policy selection, the one home of ``spec.loadBalancing``: which healthy clusters answer each name of an
intent, and with which weight. Pure; plan.py builds one Selector per reconcile and asks it once for every name
the source laid out (global, region, zone, Ingress host, each a ``Slot`` with its own candidates): ``answer_all``.

- RoundRobin: every healthy candidate.
- Weighted: those with weight > 0: a cluster named directly takes its weight; a region's weight is split
  equally over its healthy clusters not named directly; unlisted clusters weigh 0.
- Failover: the healthy candidates of the first target in failoverOrder that has one.
- GeoProximity, LowestLatency: one answer per client view (``pick_views``, ranked by aggregator/policy/proximity.py);
  the default answer (clients of no view) is every healthy candidate. Only these policies have views; the
  others answer the same everywhere.

A policy never empties an answer: when it leaves nothing while a candidate is healthy, every healthy candidate
answers (``LoadBalancing=False NoEligibleTarget``). Nor a family of it: a pick whose cluster has every address of
one family seen Down (IPv4 Down, IPv6 Up) while another eligible cluster answers that family in full is made again
without it, so A never turns NODATA while AAAA answers (``_whole_families``). Fail open: when no cluster of the
intent is healthy, the last healthy set (``status.answers``, so it survives restarts) answers instead, minus
clusters whose member or object is gone; and per address family: when the quorum withdrew every address of a family
from the healthy clusters (only their IPv4 addresses seen Down), that family's last addresses answer still. A target
names a MemberCluster, else a region (a name that is both: the cluster).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from aggregator.health.quorum import checked_addresses
from aggregator.model import (
    Answer,
    AnswerCluster,
    ClusterStatus,
    Condition,
    LoadBalancerAddress,
    LoadBalancing,
    Policy,
)
from aggregator.policy.proximity import NO_LATENCY_DATA, NO_LOCATION, Locality, View, fastest, nearest
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
    fallback: str = ""  # a view the location policy could not rank (NoLocation, NoLatencyData)


@dataclass(frozen=True)
class ViewPick:
    """Who answers one name in one client view (location policies only)."""

    view: str
    pick: Pick


@dataclass(frozen=True)
class Slot:
    """One name the policy answers (laid out by a source): the clusters that may answer it, and whether it is
    answered per client view too (location policies; a region or zone name already says where to go)."""

    name: str
    candidates: tuple[ClusterStatus, ...]
    per_view: bool = True


@dataclass(frozen=True)
class NameAnswer:
    """Who answers one name: in the default view, and in each client view (location policies only)."""

    pick: Pick
    views: tuple[ViewPick, ...] = ()


Answers = Mapping[str, NameAnswer]  # by name: what render turns into records


@dataclass(frozen=True)
class Selection:
    """The intent's default-view answer (for its status), whether fail-open is in force, and the
    LoadBalancing condition (not yet stamped)."""

    answer: Answer
    fail_open: bool
    condition: Condition
    views: tuple[Answer, ...] = ()  # one per client view (location policies only)

    @property
    def answers(self) -> tuple[Answer, ...]:
        """``status.answers``: the default view first, then the client views in serving order."""
        return (self.answer, *self.views)


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
                 fleet: Fleet | None = None, last: Answer | None = None, locality: Locality | None = None,
                 last_views: Iterable[Answer] = ()) -> None:
        """``last``: the default view's last answer (fail open); ``last_views``: the client views' last answers
        (LowestLatency's hysteresis); ``locality``: the views, the clusters' locations and the fresh RTTs."""
        clusters = tuple(clusters)
        self.load_balancing = load_balancing or LoadBalancing()
        self.locality = locality or Locality()
        self._current = {a.view: frozenset(c.cluster for c in a.clusters) for a in last_views
                         if a.view and a.policy is Policy.LOWEST_LATENCY and not a.fallback}
        self.fleet: dict[str, str] = dict(fleet) if fleet is not None else {c.cluster: c.region for c in clusters}
        self._regions = set(self.fleet.values())
        self._stand_ins: dict[str, ClusterStatus] = {}
        self._family_stand_ins: dict[str, ClusterStatus] = {}
        self.kept_families: tuple[int, ...] = ()  # IP versions answered by the last addresses (fail open per family)
        if last is not None and not any(c.healthy for c in clusters):
            present = {c.cluster: c for c in clusters}  # a cluster whose member or object is gone is not listed
            for kept in last.clusters:
                if kept.cluster in present and kept.addresses:
                    self._stand_ins[kept.cluster] = _stand_in(present[kept.cluster], kept.addresses)
        elif last is not None:
            self._family_stand_ins, self.kept_families = _family_stand_ins(clusters, last)
        self.selection = self._select(clusters)

    @property
    def fail_open(self) -> bool:
        return bool(self._stand_ins)

    def answer_all(self, slots: Iterable[Slot]) -> dict[str, NameAnswer]:
        """Every name's answer, decided in one call before anything is rendered: render only reads them."""
        return {slot.name: NameAnswer(self.pick(slot.candidates), self.pick_views(slot.candidates) if slot.per_view
                                      else ()) for slot in slots}

    def pick(self, candidates: Iterable[ClusterStatus]) -> Pick:
        """Who answers a name whose candidates (the clusters it may contain) are these: in the default view."""
        eligible = self._eligible(candidates)
        if not eligible:
            return Pick(reason="no healthy cluster")
        return _whole_families(self._policy_pick, eligible)

    def _policy_pick(self, eligible: list[ClusterStatus]) -> Pick:
        policy = self.load_balancing.policy
        if policy is Policy.WEIGHTED:
            return self._weighted(eligible)
        if policy is Policy.FAILOVER:
            return self._failover(eligible)
        if policy.per_view:
            return Pick(tuple(eligible), reason="the default answer (clients of no view): every healthy cluster")
        return Pick(tuple(eligible), reason="every healthy cluster answers")

    def pick_views(self, candidates: Iterable[ClusterStatus]) -> tuple[ViewPick, ...]:
        """Who answers the name in each client view (nothing for policies without views, or with no healthy
        candidate: the default answer is then empty too)."""
        candidates = tuple(candidates)
        eligible = self._eligible(candidates)
        if not self.load_balancing.policy.per_view or not eligible:
            return ()
        return tuple(ViewPick(view.name, _whole_families(partial(self._view_pick, view, candidates=candidates),
                                                         eligible)) for view in self.locality.views)

    def _eligible(self, candidates: Iterable[ClusterStatus]) -> list[ClusterStatus]:
        """The healthy candidates, or during fail-open the kept ones, in name order."""
        if self._stand_ins:
            eligible = [self._stand_ins[c.cluster] for c in candidates if c.cluster in self._stand_ins]
        else:
            kept = self._family_stand_ins
            eligible = [kept.get(c.cluster, c) for c in candidates if c.healthy or c.cluster in kept]
        return sorted(eligible, key=lambda c: c.cluster)

    def _view_pick(self, view: View, eligible: list[ClusterStatus], *, candidates: tuple[ClusterStatus, ...]) -> Pick:
        """The location policy for one view, with the documented fallbacks (never empty)."""
        locations = self.locality.locations
        if self.load_balancing.policy is Policy.LOWEST_LATENCY:
            ranked = fastest(view, eligible, candidates, self.locality.rtts, self._current.get(view.name, frozenset()))
            if ranked is not None:
                return Pick(ranked.clusters, reason=ranked.reason)
            why = (f"no fresh RTT from region {view.latency_from} to any healthy cluster" if view.latency_from
                   else "the view has no latencyFrom region")
            geo = nearest(view, eligible, candidates, locations)
            if geo is not None:
                return Pick(geo.clusters, reason=f"{why}; by distance instead: {geo.reason}", fallback=NO_LATENCY_DATA)
            return Pick(tuple(eligible), reason=f"{why}, and no location to go by: every healthy cluster answers",
                        fallback=NO_LATENCY_DATA)
        geo = nearest(view, eligible, candidates, locations)
        if geo is not None:
            return Pick(geo.clusters, reason=geo.reason)
        why = ("the view has no location" if view.location is None
               else "no healthy cluster has a location (MemberCluster spec.location)")
        return Pick(tuple(eligible), reason=f"{why}: every healthy cluster answers", fallback=NO_LOCATION)

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
        reason = "no cluster is healthy: the last healthy set answers (fail open)" if self.fail_open else pick.reason
        if self.kept_families:
            families = " and ".join(f"IPv{version}" for version in self.kept_families)
            reason += f"; no healthy cluster has an {families} address: the last ones still answer (fail open)"
        answer = _answer(DEFAULT_VIEW, self.load_balancing.policy, pick, reason)
        views = self.pick_views(clusters)
        policy = self.load_balancing.policy
        fail_open = "fail open (no cluster is healthy): among the last healthy set, " if self.fail_open else ""
        answers = tuple(_answer(v.view, policy, v.pick, fail_open + v.pick.reason) for v in views)
        condition = self._view_condition(views) if policy.per_view else self._condition(pick)
        return Selection(answer, self.fail_open, condition, answers)

    def _view_condition(self, views: tuple[ViewPick, ...]) -> Condition:
        """Applied, or False naming the views that fell back (NoLatencyData before NoLocation)."""
        policy = self.load_balancing.policy
        fell = {code: [v.view for v in views if v.pick.fallback == code] for code in (NO_LATENCY_DATA, NO_LOCATION)}
        notes = []
        if fell[NO_LATENCY_DATA]:
            notes.append(f"views without a fresh RTT from their region to any healthy cluster: "
                         f"{', '.join(fell[NO_LATENCY_DATA])} (answered by distance, else by every healthy cluster; "
                         "LowestLatency needs a prober in the view's latencyFrom region and a health check on the "
                         "clusters' addresses)")
        if fell[NO_LOCATION]:
            notes.append(f"views that cannot be ranked by distance: {', '.join(fell[NO_LOCATION])} (every healthy "
                         "cluster answers; give the DNSView a spec.location and the MemberClusters theirs)")
        if notes:
            reason = NO_LATENCY_DATA if fell[NO_LATENCY_DATA] else NO_LOCATION
            return Condition(LOAD_BALANCING, "False", reason, f"{policy}: " + "; ".join(notes))
        return Condition(LOAD_BALANCING, "True", "Applied", self._describe() + (
            f" ({len(views)} views: {', '.join(v.view for v in views)})" if views else ""))

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
        if lb.policy is Policy.GEO_PROXIMITY:
            return "GeoProximity: each view gets its nearest healthy clusters"
        if lb.policy is Policy.LOWEST_LATENCY:
            return "LowestLatency: each view gets the healthy clusters with the lowest RTT from its region"
        return "RoundRobin: every healthy cluster answers"


def _answer(view: str, policy: Policy, pick: Pick, reason: str) -> Answer:
    """A ``status.answers[]`` entry: the clusters with the addresses they answer with (and weights)."""
    weights = scaled(pick.weights) if pick.weights is not None else {}
    members = tuple(AnswerCluster(c.cluster, published_ips(c) or _hostnames(c), weights.get(c.cluster, 0))
                    for c in pick.clusters)
    return Answer(view, policy, members, reason, pick.fallback)


def _fallback(eligible: list[ClusterStatus], why: str) -> Pick:
    """A policy never empties an answer: every healthy candidate answers."""
    return Pick(tuple(eligible), eligible=False, reason=why)


def _families(clusters: Iterable[ClusterStatus]) -> set[int]:
    """The IP versions the clusters publish (their addresses the quorum does not see Down)."""
    return {version for c in clusters for ip in published_ips(c) if (version := _ip_version(ip)) is not None}


def _withdrawn_families(cluster: ClusterStatus) -> set[int]:
    """The IP versions of which the quorum sees every address of the cluster Down (IPv4 Down, IPv6 Up)."""
    return {version for ip in cluster.withdrawn if (version := _ip_version(ip)) is not None} - _families((cluster,))


def _whole_families(choose: Callable[[list[ClusterStatus]], Pick], eligible: list[ClusterStatus]) -> Pick:
    """``choose``'s pick among ``eligible``, unless it leaves a family the eligible clusters publish unanswered
    because a chosen cluster has every address of that family seen Down (its IPv4 Down, its IPv6 still Up: the
    moment between a dual-stack app's two checks, or a broken family). The name would then answer NODATA for that
    family, which resolvers cache as "no such record"; instead the policy chooses again among the clusters that
    still answer that family in full, so A and AAAA both answer. Without such a cluster the pick stands (and fail
    open per family keeps the family's last addresses)."""
    chosen = choose(eligible)
    missing = _families(eligible) - _families(chosen.clusters)
    partial_clusters = [c.cluster for c in chosen.clusters if missing & _withdrawn_families(c)]
    whole = [c for c in eligible if not missing & _withdrawn_families(c)]
    if not partial_clusters or not whole:
        return chosen
    again = choose(whole)
    families = " and ".join(f"IPv{version}" for version in sorted(missing))
    return replace(again, reason=f"{again.reason}; left out: {', '.join(partial_clusters)} (every {families} "
                                 "address seen Down)")


def _hostnames(cluster: ClusterStatus) -> tuple[str, ...]:
    return tuple(a.hostname for a in cluster.addresses if a.hostname)


def _family_stand_ins(clusters: tuple[ClusterStatus, ...], last: Answer) -> tuple[dict[str, ClusterStatus],
                                                                                  tuple[int, ...]]:
    """Fail open per address family: when the probers' quorum withdrew every address of a family from the healthy
    clusters (their IPv4 addresses seen Down while IPv6 still answers, or the reverse), that family's last
    addresses answer still, so an A (or AAAA) query never turns empty while the name answers the other family.
    A family no healthy cluster has at all (an IPv6-only cluster, a load balancer with a hostname) is not kept:
    the unhealthy clusters that had it are out, as always. Returns the kept clusters (a healthy one with those
    addresses added back, another with only them) and the kept IP versions."""
    healthy = [c for c in clusters if c.healthy]
    published = {ipaddress.ip_address(ip).version for c in healthy for ip in published_ips(c)}
    withdrawn = {ipaddress.ip_address(ip).version for c in healthy for ip in c.withdrawn} - published
    present = {c.cluster: c for c in clusters}
    extra: dict[str, list[str]] = {}
    versions = set()
    for kept in last.clusters:
        if kept.cluster not in present:
            continue
        for address in kept.addresses:
            version = _ip_version(address)
            if version is not None and version in withdrawn:
                extra.setdefault(kept.cluster, []).append(address)
                versions.add(version)
    stand_ins = {}
    for name, addresses in extra.items():
        entry = present[name]
        current = published_ips(entry) if entry.healthy else ()
        stand_ins[name] = _stand_in(entry, tuple(dict.fromkeys((*current, *addresses))))
    return stand_ins, tuple(sorted(versions))


def _ip_version(address: str) -> int | None:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return None  # a hostname (the CNAME form)


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
