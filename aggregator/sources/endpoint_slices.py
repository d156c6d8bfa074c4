"""The EndpointSlice readiness index of one member, shared by every source whose health is "a Service
has a ready endpoint": ready endpoints per Service, summed over its slices (label
``kubernetes.io/service-name``; ``conditions.ready`` true or absent, as the API defines)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aggregator.model import as_dict, as_list
from aggregator.sources.base import MemberKind, ServiceRef
from fleetdns.apipaths import ENDPOINT_SLICES

LABEL_SERVICE_NAME = "kubernetes.io/service-name"  # an EndpointSlice's Service


@dataclass(frozen=True)
class MemberEndpointSlice:
    namespace: str
    name: str
    service_name: str
    ready_endpoints: int


def parse_endpoint_slice(obj: dict[str, Any]) -> MemberEndpointSlice:
    """Ready per the API: ``conditions.ready`` true, or absent (which means ready)."""
    meta = as_dict(obj.get("metadata"))
    ready = sum(1 for e in map(as_dict, as_list(obj.get("endpoints")))
                if as_dict(e.get("conditions")).get("ready") is not False)
    service = as_dict(meta.get("labels")).get(LABEL_SERVICE_NAME, "")
    return MemberEndpointSlice(meta.get("namespace", ""), meta.get("name", ""), service, ready)


ENDPOINT_SLICE_KIND = MemberKind(ENDPOINT_SLICES, parse_endpoint_slice, label_selector=LABEL_SERVICE_NAME)


class ReadinessIndex:
    """Ready endpoints per Service; the caller serialises ``apply`` (the member's lock), reads need no lock."""

    def __init__(self) -> None:
        self._slices: dict[ServiceRef, dict[str, int]] = {}
        self._totals: dict[ServiceRef, int] = {}

    def ready_endpoints(self, namespace: str, service: str) -> int:
        return self._totals.get((namespace, service), 0)

    def apply(self, old: MemberEndpointSlice | None, new: MemberEndpointSlice | None) -> list[ServiceRef]:
        """Record one slice change; returns the Services whose ready total changed."""
        touched = [(item.namespace, item.service_name) for item in (old, new) if item is not None and item.service_name]
        before = {ref: self._totals.get(ref, 0) for ref in touched}
        for item, present in ((old, False), (new, True)):
            if item is None or not item.service_name:
                continue
            ref = (item.namespace, item.service_name)
            slices = self._slices.setdefault(ref, {})
            if present:
                slices[item.name] = item.ready_endpoints
            else:
                slices.pop(item.name, None)
            if slices:
                self._totals[ref] = sum(slices.values())
            else:
                del self._slices[ref]
                self._totals.pop(ref, None)
        return [ref for ref, total in before.items() if self._totals.get(ref, 0) != total]
