"""The record model between ExternalDNS endpoints and etcd keys: one target of one endpoint per key."""

from __future__ import annotations

from dataclasses import dataclass, field

from fleetdns.endpoint import Endpoint, ProviderSpecificProperty

GROUP_PROPERTY = "coredns/group"  # providerSpecific name the coredns provider maps to the value's "group"


@dataclass(slots=True)
class Record:
    """One target of one endpoint; everything needed to write it and to give the endpoint back unchanged.

    Treated as a value but not frozen: GET /records builds 50,000 of them and frozen init is ~3x slower.
    """

    name: str
    record_type: str
    target: str
    set_identifier: str = ""
    ttl: int = 0
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    provider_specific: tuple[ProviderSpecificProperty, ...] = ()

    @property
    def identity(self) -> tuple[str, str, str]:
        """What makes two records the same DNS data at one name (the rest is metadata)."""
        return self.record_type, self.set_identifier, self.target

    @property
    def group(self) -> str:
        """CoreDNS answer group: the explicit ``coredns/group``, else the name itself (keeps x.app out of app)."""
        for prop in self.provider_specific:
            if prop.name == GROUP_PROPERTY and prop.value:
                return prop.value
        return self.name


@dataclass(slots=True)
class StoredEntry:
    """One etcd key as read: usually one record; two for a coredns-provider value holding host and text.

    ``name_key_of`` is set (and ``records`` empty) for our name key: the key exactly at a name, without a
    leaf, that lets CoreDNS answer CNAME-type queries (encoding.py says why); it is no record of its own.
    ``prefix`` is the prefix the key is under (the default or a view's: ``view``; "" for a key of neither).
    """

    key: str
    value: bytes
    mod_revision: int
    prefix: str
    records: tuple[Record, ...]
    name_key_of: str | None = None
    view: str = ""

    @property
    def name(self) -> str | None:
        return self.records[0].name if self.records else self.name_key_of


def records_of(endpoint: Endpoint) -> list[Record]:
    """Split a (validated, canonical) endpoint into one record per target."""
    return [
        Record(endpoint.dns_name, endpoint.record_type, target, endpoint.set_identifier, endpoint.record_ttl,
               dict(endpoint.labels), endpoint.provider_specific)
        for target in endpoint.targets
    ]


def endpoints_of(records: list[Record]) -> list[Endpoint]:
    """Group records by (name, type, set identifier) into endpoints; metadata from the first record of each."""
    grouped: dict[tuple[str, str, str], list[Record]] = {}
    for record in records:
        grouped.setdefault((record.name, record.record_type, record.set_identifier), []).append(record)
    endpoints = []
    for (name, record_type, set_identifier), members in sorted(grouped.items()):
        first = members[0]
        targets = tuple(sorted({member.target for member in members}))  # stable output; order carries no meaning
        endpoints.append(Endpoint(name, record_type, targets, set_identifier, first.ttl, dict(first.labels),
                                  first.provider_specific))
    return endpoints
