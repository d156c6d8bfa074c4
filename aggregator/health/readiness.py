"""The readiness rules: every verdict a source gives on a cluster is one of these functions, so the
``status.dns[]`` entries, their ``healthy`` flag and their reasons are made in one place (pure functions over
typed views; the probers' verdicts are quorum.py's).

Grace-period rule: a member API server that stops answering keeps its last known answer for the
grace period, then leaves the answer (for an intent with ``spec.healthCheck``, unless the probers' quorum still
proves its app serving: silence.py); a member not reached since start-up keeps the entry the
intent's status last published for it. Within the grace period an intent's entry stays exactly as
it was (a control-plane blip changes no answer, so it must not rewrite thousands of statuses); the
member's reachability is reported once, on its MemberCluster (status.py ``member_status``). Each
source (aggregator/sources/) decides which rule applies to a member that answers (or answered within the
grace period) from its own objects: ``cannot_serve``, ``no_address``, ``endpoints_ready`` (a Service's),
``backends_ready`` (Ingress, Route, Gateway API route), ``kind_unavailable`` and ``kind_not_served``.
After it, ``judge_resolved`` takes out a cluster whose load balancer's hostnames give no address.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from aggregator.model import ClusterStatus, LoadBalancerAddress, MemberCluster


class Reachability(StrEnum):
    CONNECTED = "Connected"
    CONNECTING = "Connecting"  # not reached since start-up, within the grace period: last published answer kept
    IN_GRACE = "UnreachableInGrace"  # stopped answering less than the grace period ago: last answer kept
    LOST = "Unreachable"  # stopped answering longer than the grace period ago
    UNAVAILABLE = "Unavailable"  # never connected (no kubeconfig, bad credentials, not yet synced)

    @property
    def has_cache(self) -> bool:
        """The member's objects (live, or last known within the grace period) are what counts."""
        return self in (Reachability.CONNECTED, Reachability.IN_GRACE)


class Reason(StrEnum):
    READY_ENDPOINTS = "ReadyEndpoints"
    ENDPOINTS_NOT_REQUIRED = "EndpointsNotRequired"
    NO_READY_ENDPOINTS = "NoReadyEndpoints"
    NO_LOAD_BALANCER_ADDRESS = "NoLoadBalancerAddress"
    NOT_LOAD_BALANCER = "ServiceNotLoadBalancer"
    NOT_FOUND = "NotFound"  # a cluster that left the list: its object (or the member) is gone
    NO_READY_BACKENDS = "NoReadyBackends"
    MEMBER_UNREACHABLE = "MemberUnreachable"
    MEMBER_UNREACHABLE_SERVING = "MemberUnreachableServing"  # silent member, its app proven by the probers (silence.py)
    MEMBER_UNAVAILABLE = "MemberUnavailable"
    KIND_UNAVAILABLE = "KindUnavailable"
    HOSTNAME_NOT_RESOLVED = "HostnameNotResolved"  # its load balancer's hostnames give no address (lb_hostnames.py)
    NO_HOSTNAMES = "NoHostnames"  # the object serves no name that can be published (Ready=False when none does)
    NOT_ADMITTED = "NotAdmitted"  # no router admitted the Route
    NOT_ACCEPTED = "NotAccepted"  # no parent Gateway accepted the route (status.parents[] Accepted=True)


@dataclass(frozen=True)
class MemberView:
    """What the aggregator knows about one member cluster for one intent; sources extend it with their objects."""

    cluster: MemberCluster
    reachability: Reachability
    detail: str = ""
    last_known: ClusterStatus | None = None  # the intent's published entry for this cluster (from its status)


@dataclass(frozen=True)
class KindProblem:
    """An optional kind of member object the member does not serve (404) or lets us list (403)."""

    kind: str  # plural, e.g. "ingresses"
    status: int
    detail: str

    @property
    def served(self) -> bool:
        """A 404 means the API does not exist there, so no such object can: the cluster is simply not listed."""
        return self.status != 404


class _Unlisted:
    """Marker: the cluster is not listed at all."""


UNLISTED = _Unlisted()


def unreachable(view: MemberView) -> ClusterStatus | _Unlisted | None:
    """The entry of a member whose objects are unknown (or UNLISTED); None when the source should decide."""
    if view.reachability is Reachability.CONNECTING:
        # A restarted aggregator has no cache for a member it cannot reach yet; what it published
        # before (the status) stands in for the grace period, as a live member's last answer would.
        # The entry is kept as published (the MemberCluster says the member is not reached yet).
        last = view.last_known
        if last is None:
            return UNLISTED
        return replace(last, region=view.cluster.region, zone=view.cluster.zone)
    if view.reachability is Reachability.LOST:
        return _entry(view, (), False,
                      f"{Reason.MEMBER_UNREACHABLE}: API server not answering past the grace period")
    if view.reachability is Reachability.UNAVAILABLE:
        return _entry(view, (), False, f"{Reason.MEMBER_UNAVAILABLE}: {view.detail or 'not connected yet'}")
    return None


def kind_unavailable(view: MemberView, problem: KindProblem) -> ClusterStatus | None:
    """A member that cannot show us this kind: listed unhealthy when forbidden, not listed when not served."""
    if not problem.served:
        return None
    return _entry(view, (), False, f"{Reason.KIND_UNAVAILABLE}: {problem.kind} cannot be listed on this member "
                                   f"({problem.detail}); retried periodically")


def cannot_serve(view: MemberView, reason: Reason, detail: str, hosts: tuple[str, ...] = ()) -> ClusterStatus:
    """The object is there but serves nothing DNS can point at (not a LoadBalancer, no name to publish, not
    admitted or accepted): listed, so the status says why, and unhealthy."""
    return _entry(view, (), False, f"{reason}: {detail}", hosts)


def no_address(view: MemberView, detail: str, hosts: tuple[str, ...] = ()) -> ClusterStatus:
    """Ready or not, a cluster whose load balancer has no address yet has nothing to answer with."""
    return _entry(view, (), False, f"{Reason.NO_LOAD_BALANCER_ADDRESS}: {detail}", hosts)


def endpoints_ready(view: MemberView, addresses: tuple[LoadBalancerAddress, ...], ready: int,
                    required: bool = True) -> ClusterStatus:
    """A Service's rule: healthy while its EndpointSlices hold a ready endpoint, or always when none is
    ``required`` (``allowServiceWithoutEndpoints``)."""
    if ready > 0:
        return _entry(view, addresses, True, f"{Reason.READY_ENDPOINTS}: {ready} ready")
    if not required:
        return _entry(view, addresses, True, str(Reason.ENDPOINTS_NOT_REQUIRED))
    return _entry(view, addresses, False, f"{Reason.NO_READY_ENDPOINTS}: no ready endpoint in EndpointSlices")


def backends_ready(view: MemberView, addresses: tuple[LoadBalancerAddress, ...], ready: Mapping[str, int], *,
                   every: bool = False, without: str, notes: str = "", hosts: tuple[str, ...] = ()) -> ClusterStatus:
    """The rule of an object in front of Services (Ingress, Route, Gateway API route): healthy while one of its
    backends (``every`` one: serviceHealthPolicy AllBackends) has a ready endpoint. ``ready``: each backend as
    the reason names it, in the order it lists them, with its ready endpoints; ``without``: what the reason says
    when there is no backend; ``notes``: appended to the reason."""
    up = [backend for backend, count in ready.items() if count > 0]
    if up and (not every or len(up) == len(ready)):
        return _entry(view, addresses, True, f"{Reason.READY_ENDPOINTS}: backend {', '.join(up)}{notes}", hosts)
    waiting = [backend for backend in ready if backend not in up]
    behind = f"no ready endpoint behind {', '.join(waiting)}" if ready else without
    policy = " (AllBackends)" if every and up else ""
    return _entry(view, addresses, False, f"{Reason.NO_READY_BACKENDS}: {behind}{policy}{notes}", hosts)


def kind_not_served(view: MemberView, problem: KindProblem) -> ClusterStatus:
    """The object exists but a kind it needs is not served there (a route whose Gateways are not): listed
    unhealthy, since its addresses cannot be known."""
    return _entry(view, (), False, f"{Reason.KIND_UNAVAILABLE}: {problem.kind} not served on this member "
                                   f"({problem.detail}); retried periodically")


def judge_resolved(entry: ClusterStatus, problems: Sequence[str]) -> ClusterStatus:
    """After its load balancer's hostnames are resolved (aggregator/sources/lb_hostnames.py): a healthy cluster
    with no address at all (no IP, no hostname resolved) leaves the answer; ``problems`` say why per hostname."""
    if entry.healthy and not entry.resolved and not any(a.ip for a in entry.addresses):
        return replace(entry, healthy=False, reason=f"{Reason.HOSTNAME_NOT_RESOLVED}: {'; '.join(problems)}")
    return entry


def _entry(view: MemberView, addresses: tuple[LoadBalancerAddress, ...], healthy: bool, reason: str,
           hosts: tuple[str, ...] = ()) -> ClusterStatus:
    """The cluster's ``status.dns[]`` entry; the same within the grace period as before it (the member's
    reachability is on its MemberCluster), so a blip rewrites no intent's status."""
    return ClusterStatus(view.cluster.name, view.cluster.region, view.cluster.zone, addresses, healthy, reason,
                         hosts=hosts)
