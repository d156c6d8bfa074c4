"""etcd read and written directly, behind the webhook's back (as another writer, or to check what it stored): a
client, the keys of a prefix as etcd holds them, and an audit of those keys against the records a region should hold
(the canaries the system does not own are in tests/support/canaries.py)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyetcd

from fleetdns.skydns.encoding import key_for, name_key
from fleetdns.skydns.records import Record

if TYPE_CHECKING:
    from tests.support.canaries import EtcdCanaries

PAGE = 5_000  # keys per range call: 40,000 keys in one answer would pass gRPC's 4 MiB default


def etcd_kv(url: str, timeout: float | None = None) -> pyetcd.Etcd3Client:
    """A client of the etcd at ``url`` (http://host:port); ``timeout`` bounds each call (None: none)."""
    host, port = url.removeprefix("http://").split(":")
    return pyetcd.client(host=host, port=int(port), timeout=timeout)


@dataclass(frozen=True)
class Stored:
    value: bytes
    mod_revision: int


def read_keys(kv: pyetcd.Etcd3Client, root: str, revision: int | None = None) -> dict[str, Stored]:
    """Every key starting with ``root`` at one revision (the newest, or ``revision``), in pages."""
    start, end = root.encode(), _prefix_end(root.encode())
    found: dict[str, Stored] = {}
    while True:
        response = kv.get_range_response(start, end, limit=PAGE, revision=revision or 0)
        revision = revision or response.header.revision
        found.update((item.key.decode(), Stored(item.value, item.mod_revision)) for item in response.kvs)
        if not response.more or not response.kvs:
            return found
        start = response.kvs[-1].key + b"\0"


def _prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


def audit_records(keys: Mapping[str, Stored], prefix: str, addresses: Mapping[str, str],
                  texts: Mapping[str, Stored], canaries: EtcdCanaries) -> list[str]:
    """What is wrong with ``keys`` (under ``prefix``'s root) for a region whose names hold exactly ``addresses`` (one
    A record each: name → address) and the TXT keys ``texts`` (ExternalDNS's ownership records, as first stored), read
    without the webhook's decoder: a desired record missing or with another address (lost), a record at any key but
    its one deterministic key (duplicate), a name key missing or left without records (half-written), any other key
    (orphan). The canaries are checked elsewhere, but their in-zone names keep the name key the webhook gives them."""
    problems: list[str] = []
    expected: dict[str, tuple[str, str]] = {}
    for name, address in addresses.items():
        expected[key_for(Record(name, "A", address), prefix)] = ("A", address)
    names = set(addresses) | {_text_name(prefix, key) for key in texts} | set(canaries.names_in_zone)
    name_keys = {name_key(prefix, name): name for name in names}
    for key, want in expected.items():
        stored = keys.get(key)
        if stored is None:
            problems.append(f"lost: {want[1]} at {key}")
        elif _field(stored.value, "host") != want[1]:
            problems.append(f"wrong value at {key}: {stored.value[:120]!r}")
    for key, stored in texts.items():
        now = keys.get(key)
        if now is None or _field(now.value, "text") != _field(stored.value, "text"):
            problems.append(f"ownership record lost or changed at {key}: {now.value[:120] if now else None!r}")
    for key, name in name_keys.items():
        stored = keys.get(key)
        if stored is None or _field(stored.value, "nameKey") != name:
            problems.append(f"half-written name {name}: name key {stored.value[:120] if stored else None!r}")
    for key, stored in keys.items():
        if key in expected or key in texts or key in name_keys or key in canaries.planted:
            continue
        kind = "duplicate or stale record" if _field(stored.value, "host") is not None else "orphan key"
        problems.append(f"{kind} at {key}: {stored.value[:120]!r}")
    return problems


def text_keys(keys: Mapping[str, Stored], prefix: str) -> dict[str, Stored]:
    """The TXT records among the keys under ``prefix`` (ExternalDNS's ownership records): a text and no host."""
    return {key: stored for key, stored in keys.items() if key.startswith(prefix)
            and _field(stored.value, "text") is not None and _field(stored.value, "host") is None}


def texts_of(keys: Mapping[str, Stored], prefix: str) -> set[tuple[str, str]]:
    """The TXT records under ``prefix`` as (name, text)."""
    return {(_text_name(prefix, key), str(_field(stored.value, "text")))
            for key, stored in text_keys(keys, prefix).items()}


def addresses_of(keys: Mapping[str, Stored], prefix: str) -> dict[str, set[str]]:
    """The IPv4 records among the keys under ``prefix`` (anyone's): name → addresses, the name read from the key
    (``<prefix><labels reversed>/<leaf>``)."""
    found: dict[str, set[str]] = {}
    for key, stored in keys.items():
        host = _field(stored.value, "host")
        if not isinstance(host, str) or not key.startswith(prefix) or not _is_ipv4(host):
            continue
        found.setdefault(_text_name(prefix, key), set()).add(host)
    return found


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _text_name(prefix: str, key: str) -> str:
    """The name of a record's key: its labels, reversed, without the leaf."""
    return ".".join(reversed(key[len(prefix):].split("/")[:-1]))


def _field(value: bytes, field: str) -> object | None:
    try:
        data = json.loads(value)
    except ValueError:
        return None
    return data.get(field) if isinstance(data, dict) else None
