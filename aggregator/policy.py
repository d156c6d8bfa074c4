"""Which member clusters count for an intent, and why: pure functions over typed views.

Health rule: a cluster counts only while its Service has at least one ready endpoint in its
EndpointSlices (unless ``allowServiceWithoutEndpoints``); for an Ingress, while one of its backend
Services has. No load-balancer address → not listed. Grace-period rule: a member API server that
stops answering keeps its last known answer for the grace period, then leaves the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from aggregator.model import ClusterStatus, MemberCluster, MemberIngress, MemberService


class Reachability(StrEnum):
    CONNECTED = "Connected"
    CONNECTING = "Connecting"  # not reached since start-up, within the grace period: last published answer kept
    IN_GRACE = "UnreachableInGrace"  # stopped answering less than the grace period ago: last answer kept
    LOST = "Unreachable"  # stopped answering longer than the grace period ago
    UNAVAILABLE = "Unavailable"  # never connected (no kubeconfig, bad credentials, not yet synced)


class Reason(StrEnum):
    READY_ENDPOINTS = "ReadyEndpoints"
    ENDPOINTS_NOT_REQUIRED = "EndpointsNotRequired"
    NO_READY_ENDPOINTS = "NoReadyEndpoints"
    NO_LOAD_BALANCER_ADDRESS = "NoLoadBalancerAddress"
    SERVICE_NOT_FOUND = "ServiceNotFound"
    NOT_LOAD_BALANCER = "ServiceNotLoadBalancer"
    INGRESS_NOT_FOUND = "IngressNotFound"
    NO_READY_BACKENDS = "NoReadyBackends"
    MEMBER_UNREACHABLE = "MemberUnreachable"
    MEMBER_UNAVAILABLE = "MemberUnavailable"
    LAST_KNOWN = "LastKnown"


@dataclass(frozen=True)
class MemberView:
    """What the aggregator knows about one member cluster for one intent."""

    cluster: MemberCluster
    reachability: Reachability
    service: MemberService | None = None
    ready_endpoints: int = 0
    ingress: MemberIngress | None = None
    backend_ready: dict[str, int] = field(default_factory=dict)
    detail: str = ""
    last_known: ClusterStatus | None = None  # the intent's published entry for this cluster (from its status)


class _Unlisted:
    """Marker: the cluster is not listed at all."""


UNLISTED = _Unlisted()


def _unreachable(view: MemberView) -> ClusterStatus | _Unlisted | None:
    if view.reachability is Reachability.CONNECTING:
        # A restarted aggregator has no cache for a member it cannot reach yet; what it published
        # before (the status) stands in for the grace period, as a live member's last answer would.
        last = view.last_known
        if last is None:
            return UNLISTED
        if not last.healthy:
            return last
        return ClusterStatus(last.cluster, view.cluster.region, view.cluster.zone, last.addresses, True,
                             f"{Reason.LAST_KNOWN}: member API server not reached since start-up; "
                             "last published answer kept within the grace period")
    if view.reachability is Reachability.LOST:
        return _status(view, (), False, f"{Reason.MEMBER_UNREACHABLE}: API server not answering past the grace period")
    if view.reachability is Reachability.UNAVAILABLE:
        return _status(view, (), False, f"{Reason.MEMBER_UNAVAILABLE}: {view.detail or 'not connected yet'}")
    return None


def _status(view: MemberView, addresses: tuple, healthy: bool, reason: str) -> ClusterStatus:
    if healthy and view.reachability is Reachability.IN_GRACE:
        reason += " (last known; member API server not answering, within the grace period)"
    return ClusterStatus(view.cluster.name, view.cluster.region, view.cluster.zone, addresses, healthy, reason)


def evaluate_service_cluster(view: MemberView, allow_without_endpoints: bool) -> ClusterStatus | None:
    """The cluster's entry for a ServiceDNSRecord; None when the Service does not exist there."""
    if (down := _unreachable(view)) is not None:
        return None if isinstance(down, _Unlisted) else down
    service = view.service
    if service is None:
        return None
    if not service.is_load_balancer:
        return _status(view, (), False, f"{Reason.NOT_LOAD_BALANCER}: type is not LoadBalancer")
    if not service.addresses:
        return _status(view, (), False, f"{Reason.NO_LOAD_BALANCER_ADDRESS}: status.loadBalancer has no ingress yet")
    if view.ready_endpoints > 0:
        return _status(view, service.addresses, True, f"{Reason.READY_ENDPOINTS}: {view.ready_endpoints} ready")
    if allow_without_endpoints:
        return _status(view, service.addresses, True, str(Reason.ENDPOINTS_NOT_REQUIRED))
    return _status(view, service.addresses, False, f"{Reason.NO_READY_ENDPOINTS}: no ready endpoint in EndpointSlices")


def evaluate_ingress_cluster(view: MemberView) -> ClusterStatus | None:
    """The cluster's entry for an IngressDNSRecord; None when the Ingress does not exist there."""
    if (down := _unreachable(view)) is not None:
        return None if isinstance(down, _Unlisted) else down
    ingress = view.ingress
    if ingress is None:
        return None
    if not ingress.addresses:
        return _status(view, (), False, f"{Reason.NO_LOAD_BALANCER_ADDRESS}: status.loadBalancer has no ingress yet")
    ready = sorted(name for name in ingress.backend_services if view.backend_ready.get(name, 0) > 0)
    if ready:
        return _status(view, ingress.addresses, True, f"{Reason.READY_ENDPOINTS}: backend {', '.join(ready)}")
    backends = ", ".join(ingress.backend_services) or "none"
    return _status(view, ingress.addresses, False, f"{Reason.NO_READY_BACKENDS}: no ready endpoint behind {backends}")
