"""Model values the aggregator's pure tests build on: member clusters in two regions, their status entries,
a ServiceIntent, and rendered records by name."""

from __future__ import annotations

from aggregator.model import (
    ClusterStatus,
    Domain,
    LoadBalancerAddress,
    LoadBalancing,
    MemberCluster,
    Policy,
    SecretKeyRef,
    TargetWeight,
    parse_domain,
)
from aggregator.sources.service import ServiceIntent
from fleetdns.dnsview import DNSView, parse_dns_view
from fleetdns.endpoint import Endpoint

EAST = MemberCluster("east", "us-east", "us-east-1a", SecretKeyRef("fleetdns-system", "east"))
EAST_B = MemberCluster("east-b", "us-east", "us-east-1b", SecretKeyRef("fleetdns-system", "east-b"))
WEST = MemberCluster("west", "us-west", "us-west-1a", SecretKeyRef("fleetdns-system", "west"))
V4 = {"east": "198.18.1.1", "east-b": "198.18.1.2", "boston": "198.18.1.3", "west": "198.18.2.1"}
V6 = {"east": "2001:db8:f::1", "east-b": "2001:db8:f::2", "west": "2001:db8:f::3"}
PLACES = {"east": ("us-east", "us-east-1a"), "east-b": ("us-east", "us-east-1b"), "west": ("us-west", "us-west-1a")}


def ip(*addresses: str) -> tuple[LoadBalancerAddress, ...]:
    return tuple(LoadBalancerAddress(ip=a) for a in addresses)


def entry(cluster: MemberCluster, addresses: tuple[LoadBalancerAddress, ...], healthy: bool = True) -> ClusterStatus:
    return ClusterStatus(cluster.name, cluster.region, cluster.zone, addresses, healthy, "test")


def cluster(name: str, healthy: bool = True, *ips: str) -> ClusterStatus:
    """Cluster ``name`` of PLACES at its V4 address (or ``ips``), ready or Down."""
    region, zone = PLACES[name]
    addresses = tuple(LoadBalancerAddress(ip=ip) for ip in ips or (V4[name],))
    return ClusterStatus(name, region, zone, addresses, healthy, "ReadyEndpoints: 1 ready" if healthy else "Down")


def serving(member: MemberCluster, address: str, hosts: tuple[str, ...], healthy: bool = True) -> ClusterStatus:
    """A route-kind cluster entry: one address, the ``hosts`` its route serves there."""
    return ClusterStatus(member.name, member.region, member.zone, (LoadBalancerAddress(ip=address),), healthy,
                         "test", hosts=hosts)


def intent(**fields: object) -> ServiceIntent:
    """ServiceIntent shop/web on Domain ``fleet``."""
    return ServiceIntent(namespace="shop", name="web", uid="u", generation=1, domain_ref="fleet",
                         **fields)  # type: ignore[arg-type]


def weighted(*weights: tuple[str, int]) -> LoadBalancing:
    return LoadBalancing(Policy.WEIGHTED, tuple(TargetWeight(t, w) for t, w in weights))


def failover(*order: str) -> LoadBalancing:
    return LoadBalancing(Policy.FAILOVER, failover_order=order)


def domain(namespace: str, name: str, zone: str, selector: dict | None = None) -> Domain:
    """Domain ``name`` for ``zone`` in ``namespace``, with a namespaceSelector when given."""
    spec: dict = {"domain": zone, **({"namespaceSelector": selector} if selector is not None else {})}
    return parse_domain({"metadata": {"namespace": namespace, "name": name}, "spec": spec})


def dns_view(name: str, *cidrs: str, **spec: object) -> DNSView:
    return parse_dns_view({"metadata": {"name": name}, "spec": {"clientCIDRs": list(cidrs), **spec}})


def by_name(endpoints: list[Endpoint]) -> dict[tuple[str, str], tuple[str, ...]]:
    return {(e.dns_name, e.record_type): e.targets for e in endpoints}
