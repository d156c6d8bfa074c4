"""The body of POST /records: ExternalDNS's Changes, in both spellings, parsed and validated at the edge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetdns.endpoint import Endpoint, EndpointFormatError, parse_endpoint_list
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.validation import canonical_endpoint, existing_endpoint

# v0.17+ sends camelCase and omits empty lists; up to v0.16 the keys were capitalised and empty lists null.
_SPELLINGS = {
    "create": ("create", "Create"),
    "update_old": ("updateOld", "UpdateOld"),
    "update_new": ("updateNew", "UpdateNew"),
    "delete": ("delete", "Delete"),
}


@dataclass(frozen=True)
class Changes:
    """Validated, canonical endpoints; ``update_old[i]`` pairs with ``update_new[i]``."""

    create: tuple[Endpoint, ...] = ()
    update_old: tuple[Endpoint, ...] = ()
    update_new: tuple[Endpoint, ...] = ()
    delete: tuple[Endpoint, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.create or self.update_old or self.update_new or self.delete)

    def counts(self) -> dict[str, int]:
        return {"create": len(self.create), "update": len(self.update_new), "delete": len(self.delete)}


def parse_changes(data: Any, domain_filter: DomainFilter) -> Changes:
    """Whole-request validation: the first problem raises EndpointFormatError with its JSON path."""
    if not isinstance(data, dict):
        raise EndpointFormatError("$", "expected a Changes object")
    lists: dict[str, tuple[Endpoint, ...]] = {}
    for field_name, spellings in _SPELLINGS.items():
        lists[field_name] = _parse_list(data, spellings, domain_filter, strict=field_name in ("create", "update_new"))
    if len(lists["update_old"]) != len(lists["update_new"]):
        raise EndpointFormatError("updateOld", f"updateOld has {len(lists['update_old'])} endpoints but updateNew "
                                               f"has {len(lists['update_new'])}; they must pair up")
    return Changes(**lists)


def _parse_list(data: dict[str, Any], spellings: tuple[str, str], domain_filter: DomainFilter,
                strict: bool) -> tuple[Endpoint, ...]:
    """``strict`` for what will be written; records being replaced or deleted only need to be found."""
    present = [key for key in spellings if data.get(key) is not None]
    if len(present) > 1:
        raise EndpointFormatError(present[1], f"both {present[0]!r} and {present[1]!r} given")
    if not present:
        return ()
    key = present[0]
    endpoints = []
    for index, endpoint in enumerate(parse_endpoint_list(data[key], key)):
        path = f"{key}[{index}]"
        canonical = canonical_endpoint(endpoint, path) if strict else existing_endpoint(endpoint, path)
        if not domain_filter.match(canonical.dns_name):
            raise EndpointFormatError(f"{path}.dnsName", f"{canonical.dns_name!r} is outside the domain filter")
        endpoints.append(canonical)
    return tuple(endpoints)
