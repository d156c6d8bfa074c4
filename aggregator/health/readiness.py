"""The health rules every source shares: pure functions over typed views.

Grace-period rule: a member API server that stops answering keeps its last known answer for the
grace period, then leaves the answer; a member not reached since start-up keeps the entry the
intent's status last published for it. Within the grace period an intent's entry stays exactly as
it was (a control-plane blip changes no answer, so it must not rewrite thousands of statuses); the
member's reachability is reported once, on its MemberCluster (status.py ``member_status``). Each
source (aggregator/sources/) applies its own health rule to a member that answers (or answered within
the grace period), through ``cluster_status``.
"""

from __future__ import annotations

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
    MEMBER_UNAVAILABLE = "MemberUnavailable"
    KIND_UNAVAILABLE = "KindUnavailable"
    HOSTNAME_NOT_RESOLVED = "HostnameNotResolved"  # its load balancer's hostnames give no address (lb_hostnames.py)


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
        return cluster_status(view, (), False,
                              f"{Reason.MEMBER_UNREACHABLE}: API server not answering past the grace period")
    if view.reachability is Reachability.UNAVAILABLE:
        return cluster_status(view, (), False, f"{Reason.MEMBER_UNAVAILABLE}: {view.detail or 'not connected yet'}")
    return None


def kind_unavailable(view: MemberView, problem: KindProblem) -> ClusterStatus | None:
    """A member that cannot show us this kind: listed unhealthy when forbidden, not listed when not served."""
    if not problem.served:
        return None
    return cluster_status(view, (), False, f"{Reason.KIND_UNAVAILABLE}: {problem.kind} cannot be listed on this "
                                           f"member ({problem.detail}); retried periodically")


def cluster_status(view: MemberView, addresses: tuple[LoadBalancerAddress, ...], healthy: bool,
                   reason: str) -> ClusterStatus:
    """The cluster's ``status.dns[]`` entry; the same within the grace period as before it (the member's
    reachability is on its MemberCluster), so a blip rewrites no intent's status."""
    return ClusterStatus(view.cluster.name, view.cluster.region, view.cluster.zone, addresses, healthy, reason)
