"""The ExternalDNS endpoint model: parsed once from JSON at the edge, rendered back the same way.

Shared by the webhook provider (which receives and returns endpoints) and the aggregator (which
writes them into DNSEndpoint resources), so both speak exactly the same shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# The webhook protocol's media type (v1), sent verbatim: ExternalDNS compares it byte for byte.
WEBHOOK_MEDIA_TYPE = "application/external.dns.webhook+json;version=1"
# On the A/AAAA records of a zone's own nameservers (the aggregator's delegation, docs/design/delegation.md): the
# zone files list those names as the apex NS. The apex NS itself cannot travel through ExternalDNS's TXT registry.
NAMESERVER_PROPERTY = "webhook/nameserver"


class RecordType(StrEnum):
    A = "A"
    AAAA = "AAAA"
    CNAME = "CNAME"
    TXT = "TXT"
    SRV = "SRV"
    MX = "MX"
    NS = "NS"
    PTR = "PTR"
    NAPTR = "NAPTR"


class EndpointFormatError(ValueError):
    """JSON that is not an endpoint; ``path`` says where (``create[3].targets[0]``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# slots: no per-instance __dict__; a request of ExternalDNS's first sync holds one Endpoint per record
@dataclass(frozen=True, slots=True)
class ProviderSpecificProperty:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One ExternalDNS endpoint; field names follow the Go struct, values as sent (not yet validated)."""

    dns_name: str
    record_type: str
    targets: tuple[str, ...] = ()
    set_identifier: str = ""
    record_ttl: int = 0
    labels: dict[str, str] = field(default_factory=dict, compare=True, hash=False)
    provider_specific: tuple[ProviderSpecificProperty, ...] = ()

    def provider_specific_value(self, name: str) -> str | None:
        for prop in self.provider_specific:
            if prop.name == name:
                return prop.value
        return None

    def to_json(self) -> dict[str, Any]:
        """The shape ExternalDNS decodes; empty optional fields left out as Go's omitempty does."""
        out: dict[str, Any] = {"dnsName": self.dns_name, "targets": list(self.targets), "recordType": self.record_type}
        if self.set_identifier:
            out["setIdentifier"] = self.set_identifier
        if self.record_ttl:
            out["recordTTL"] = self.record_ttl
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.provider_specific:
            out["providerSpecific"] = [{"name": p.name, "value": p.value} for p in self.provider_specific]
        return out

    @classmethod
    def from_json(cls, data: Any, path: str = "endpoint") -> Endpoint:
        if not isinstance(data, dict):
            raise EndpointFormatError(path, f"expected an object, got {json_type(data)}")
        dns_name = _optional(data, "dnsName", str, path, "")
        record_type = _optional(data, "recordType", str, path, "")
        targets = _optional(data, "targets", list, path, [])
        for index, target in enumerate(targets):
            if not isinstance(target, str):
                raise EndpointFormatError(f"{path}.targets[{index}]", f"expected a string, got {json_type(target)}")
        # Any integer: ExternalDNS's TTL is Go's int64, so -5 is a well-formed endpoint. Whether a TTL can be
        # served is the consumer's rule (the webhook skips such a record; it never refuses the document).
        ttl = _optional(data, "recordTTL", int, path, 0)
        labels = _optional(data, "labels", dict, path, {})
        for key, value in labels.items():
            if not isinstance(value, str):
                raise EndpointFormatError(f"{path}.labels.{key}", f"expected a string, got {json_type(value)}")
        props = []
        for index, item in enumerate(_optional(data, "providerSpecific", list, path, [])):
            where = f"{path}.providerSpecific[{index}]"
            if not isinstance(item, dict):
                raise EndpointFormatError(where, f"expected an object, got {json_type(item)}")
            name, value = item.get("name", ""), item.get("value", "")
            if not isinstance(name, str) or not isinstance(value, str):
                raise EndpointFormatError(where, "name and value must be strings")
            props.append(ProviderSpecificProperty(name, value))
        return cls(
            dns_name=dns_name,
            record_type=record_type,
            targets=tuple(targets),
            set_identifier=_optional(data, "setIdentifier", str, path, ""),
            record_ttl=ttl,
            labels=dict(labels),
            provider_specific=tuple(props),
        )


def parse_endpoint_list(data: Any, path: str, *, consume: bool = False) -> list[Endpoint]:
    """A JSON array of endpoints; ``null`` counts as empty, as Go encodes a nil slice.

    ``consume``: replace each item of ``data`` by None once parsed, so a large request body never holds its
    decoded JSON and the endpoints of all its items at once (for data nobody else holds).
    """
    return list(iter_endpoints(data, path, consume=consume))


def iter_endpoints(data: Any, path: str, *, consume: bool = False) -> Iterator[Endpoint]:
    """``parse_endpoint_list`` one endpoint at a time (EndpointFormatError when an item is reached)."""
    if data is None:
        return
    if not isinstance(data, list):
        raise EndpointFormatError(path, f"expected an array of endpoints, got {json_type(data)}")
    for index in range(len(data)):
        item = data[index]
        if consume:
            data[index] = None
        yield Endpoint.from_json(item, f"{path}[{index}]")


def _optional(data: dict[str, Any], key: str, kind: type, path: str, default: Any) -> Any:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise EndpointFormatError(f"{path}.{key}", f"expected {kind.__name__}, got {json_type(value)}")
    return value


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for errors that say what was sent instead."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
