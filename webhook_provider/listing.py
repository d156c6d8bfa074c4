"""GET /records's body, kept encoded per name: a read with nothing changed returns the bytes it built last time,
and a change re-encodes only the names it touched (ExternalDNS reads every second, whatever the zone's size)."""

from __future__ import annotations

import bisect
import json
import threading

from webhook_provider.domain_filter import DomainFilter
from webhook_provider.metrics import Metrics
from webhook_provider.mirror import EntrySource, NameChanges
from webhook_provider.records import StoredEntry, endpoints_of

# Same bytes as json.dumps(..., separators=(",", ":"), ensure_ascii=False); one encoder, not one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
RESORT_ABOVE = 64  # more names appearing or going than this: sort all names again rather than insert each


def encode_name(name: str, entries: tuple[StoredEntry, ...]) -> tuple[str, int]:
    """The name's endpoints as JSON objects joined by commas, and how many there are."""
    records = [record for entry in entries for record in entry.records if record.name == name]
    endpoints = endpoints_of(records)
    return ",".join(_ENCODER.encode(endpoint.to_json()) for endpoint in endpoints), len(endpoints)


class RecordsListing:
    """The JSON array of every endpoint under the prefix whose name passes the domain filter, sorted by
    (name, type, set identifier) exactly as ``endpoints_of`` sorts them."""

    def __init__(self, source: EntrySource, domain_filter: DomainFilter, metrics: Metrics) -> None:
        self.source = source
        self.domain_filter = domain_filter
        self.metrics = metrics
        self._lock = threading.Lock()  # one reader applies changes; the others then get its body
        self._fragments: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._order: list[str] = []  # names with a fragment, sorted
        self._endpoints = 0
        self._body = b"[]"

    def body(self) -> bytes:
        """The current body; raises EtcdUnavailableError when the source cannot vouch for its data."""
        with self._lock:
            changes = self.source.changes()
            if changes.full or changes.names:
                self._apply(changes)
                self._body = ("[" + ",".join([self._fragments[name] for name in self._order]) + "]").encode()
                self.metrics.records_managed.set(self._endpoints)
            return self._body

    def _apply(self, changes: NameChanges) -> None:
        if changes.full:
            self._fragments, self._counts, self._endpoints = {}, {}, 0
        appeared, gone = [], []
        for name, entries in changes.names.items():
            fragment, count = encode_name(name, entries) if self.domain_filter.match(name) else ("", 0)
            had = self._counts.pop(name, 0)
            self._endpoints += count - had
            if count:
                self._fragments[name] = fragment
                self._counts[name] = count
                if not had:
                    appeared.append(name)
            elif had:
                del self._fragments[name]
                gone.append(name)
        if changes.full or len(appeared) + len(gone) > RESORT_ABOVE:
            self._order = sorted(self._fragments)
            return
        for name in gone:
            del self._order[bisect.bisect_left(self._order, name)]
        for name in appeared:
            bisect.insort(self._order, name)
