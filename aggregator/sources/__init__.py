"""The registered sources: one line per kind of member object (docs/aggregator/sources.md)."""

from aggregator.sources.base import SourceRegistry
from aggregator.sources.gateway.source import GatewaySource
from aggregator.sources.ingress import IngressSource
from aggregator.sources.lb_hostnames import HostnameLookup
from aggregator.sources.openshift_route import DEFAULT_ROUTER_NAMESPACE, RouteSource
from aggregator.sources.service import ServiceSource


def build_sources(hostnames: HostnameLookup | None = None, *,
                  openshift_router_namespace: str = DEFAULT_ROUTER_NAMESPACE, namespace: str = "") -> SourceRegistry:
    """Every source; ``hostnames`` resolves load-balancer hostnames (None: the CNAME form only); the settings
    some sources read: where OpenShift's routers' Services live, and the member namespace watched ("" all)."""
    return SourceRegistry([
        ServiceSource(hostnames),
        IngressSource(hostnames),
        GatewaySource(hostnames),
        RouteSource(hostnames, openshift_router_namespace, namespace),
    ])


SOURCES = build_sources()
