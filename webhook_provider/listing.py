"""GET /records's body, kept encoded per name: a read with nothing changed returns the bytes it built last time,
and a change re-encodes only the names it touched (ExternalDNS reads every second, whatever the zone's size)."""

from __future__ import annotations

import bisect
import json
import threading

from fleetdns.endpoint import Endpoint
from fleetdns.skydns.mirror import EntrySource, NameChanges
from fleetdns.skydns.records import StoredEntry, endpoints_of
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.metrics import Metrics

# Same bytes as json.dumps(..., separators=(",", ":"), ensure_ascii=False); one encoder, not one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
RESORT_ABOVE = 64  # more names changed than this: rebuild the sorted lists rather than bisect each


def encode_name(name: str, entries: tuple[StoredEntry, ...]) -> tuple[str, int]:
    """The name's endpoints as JSON objects joined by commas, and how many there are."""
    records = [record for entry in entries for record in entry.records if record.name == name]
    if len(records) == 1:  # most names: skip the grouping, same endpoint as endpoints_of makes
        only = records[0]
        endpoints = [Endpoint(only.name, only.record_type, (only.target,), only.set_identifier, only.ttl,
                              dict(only.labels), only.provider_specific)]
    else:
        endpoints = endpoints_of(records)
    return _ENCODER.encode([endpoint.to_json() for endpoint in endpoints])[1:-1], len(endpoints)


class RecordsListing:
    """The JSON array of every endpoint under the prefix whose name passes the domain filter, sorted by
    (name, type, set identifier) exactly as ``endpoints_of`` sorts them."""

    def __init__(self, source: EntrySource, domain_filter: DomainFilter, metrics: Metrics) -> None:
        self.source = source
        self.domain_filter = domain_filter
        self.metrics = metrics
        self._lock = threading.Lock()  # one reader applies changes; the others then get its body
        self._names: list[str] = []  # sorted names that have endpoints
        self._parts: list[str] = []  # their encoded endpoints, same order: the body is these joined
        self._counts: dict[str, int] = {}  # endpoints per name
        self._body = b"[]"

    def body(self) -> bytes:
        """The current body; raises EtcdUnavailableError when the source cannot vouch for its data."""
        with self._lock:
            changes = self.source.changes()
            if changes.full or changes.names:
                self._apply(changes)
                self._body = ("[" + ",".join(self._parts) + "]").encode()
                self.metrics.records_managed.set(sum(self._counts.values()))
            return self._body

    def encoded_name(self, name: str) -> str:
        """The name's endpoints as of the last ``body()``, encoded as in the body ("" when it has none)."""
        with self._lock:
            index = bisect.bisect_left(self._names, name)
            present = index < len(self._names) and self._names[index] == name
            return self._parts[index] if present else ""

    def _apply(self, changes: NameChanges) -> None:
        encoded = {name: encode_name(name, entries) if self.domain_filter.match(name) else ("", 0)
                   for name, entries in changes.names.items()}
        if changes.full or len(encoded) > RESORT_ABOVE:
            parts = {} if changes.full else dict(zip(self._names, self._parts, strict=True))
            if changes.full:
                self._counts = {}
            for name, (part, count) in encoded.items():
                if count:
                    parts[name], self._counts[name] = part, count
                else:
                    parts.pop(name, None)
                    self._counts.pop(name, None)
            self._names = sorted(parts)
            self._parts = [parts[name] for name in self._names]
            return
        for name, (part, count) in encoded.items():
            index = bisect.bisect_left(self._names, name)
            present = index < len(self._names) and self._names[index] == name
            if count and present:
                self._parts[index] = part
            elif count:
                self._names.insert(index, name)
                self._parts.insert(index, part)
            elif present:
                del self._names[index], self._parts[index]
            if count:
                self._counts[name] = count
            else:
                self._counts.pop(name, None)
