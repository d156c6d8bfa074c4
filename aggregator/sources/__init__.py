"""The registered sources: one line per kind of member object (see "Sources" in aggregator/README.md)."""

from aggregator.sources.base import SourceRegistry
from aggregator.sources.ingress import IngressSource
from aggregator.sources.service import ServiceSource

SOURCES = SourceRegistry([
    ServiceSource(),
    IngressSource(),
])
