"""The registered sources: one line per kind of member object (see "Sources" in aggregator/README.md)."""

from aggregator.lb_hostnames import HostnameLookup
from aggregator.sources.base import SourceRegistry
from aggregator.sources.ingress import IngressSource
from aggregator.sources.service import ServiceSource


def build_sources(hostnames: HostnameLookup | None = None) -> SourceRegistry:
    """Every source; ``hostnames`` resolves load-balancer hostnames (None: the CNAME form only)."""
    return SourceRegistry([
        ServiceSource(hostnames),
        IngressSource(hostnames),
    ])


SOURCES = build_sources()
