"""SkyDNS keys and values: the one place that encodes records for CoreDNS and decodes what is in etcd.

Key: ``<prefix><reversed labels>/<leaf>`` with ``"targetstrip": 1``, the layout of ExternalDNS's
coredns provider, so either can read the other's keys. Our leaf is a hash of (type, set identifier,
target) instead of a random number: a retried apply writes the same key, never a duplicate.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from typing import Any

from fleetdns.dnsname import is_valid_name, labels_reversed, name_from_reversed
from fleetdns.endpoint import ProviderSpecificProperty
from webhook_provider.records import GROUP_PROPERTY, Record, StoredEntry
from webhook_provider.validation import SUPPORTED_TYPES, lenient_target, parse_mx, parse_srv

LEAF_HEX_DIGITS = 12


def prefix_for(record: Record, default_prefix: str) -> str:
    """The key prefix a record lives under; the single place a future per-view prefix would be chosen."""
    return default_prefix


def name_key(prefix: str, name: str) -> str:
    """``app.example.com`` → ``/skydns/com/example/app/``: every key of that name (and deeper names) starts so."""
    return prefix + "/".join(labels_reversed(name)) + "/"


def leaf(record: Record) -> str:
    digest = hashlib.sha256(f"{record.record_type}\0{record.set_identifier}\0{record.target}".encode())
    return digest.hexdigest()[:LEAF_HEX_DIGITS]


def key_for(record: Record, prefix: str) -> str:
    return name_key(prefix, record.name) + leaf(record)


def encode_value(record: Record) -> str:
    """CoreDNS's fields first, then ours (CoreDNS and the coredns provider ignore unknown fields)."""
    value: dict[str, Any] = _dns_fields(record)
    if record.ttl:
        value["ttl"] = record.ttl
    # CoreDNS strips `targetstrip` labels from SRV and MX *targets* too (meant for targets it builds from
    # keys), so those carry 0; our reader knows every value with "recordType" has a leaf label.
    value["targetstrip"] = 0 if record.record_type in ("SRV", "MX") else 1
    value["group"] = record.group
    value["recordType"] = record.record_type
    if record.set_identifier:
        value["setIdentifier"] = record.set_identifier
    if record.labels:
        value["labels"] = dict(sorted(record.labels.items()))
    if record.provider_specific:
        value["providerSpecific"] = [{"name": p.name, "value": p.value} for p in record.provider_specific]
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _dns_fields(record: Record) -> dict[str, Any]:
    if record.record_type == "TXT":
        return {"text": record.target}  # on its own key: text next to a host turns the answer into TXT only
    if record.record_type == "SRV":
        srv = parse_srv(record.target)
        return {"host": srv.host, "port": srv.port, "priority": srv.priority, "weight": srv.weight}
    if record.record_type == "MX":
        mx = parse_mx(record.target)
        return {"host": mx.host, "priority": mx.preference, "mail": True}
    return {"host": record.target}


def decode_entry(prefix: str, key: str, value: bytes, mod_revision: int) -> StoredEntry:
    """Records held by one key; none for values that are not SkyDNS JSON (those are never touched)."""
    try:
        data = json.loads(value)
    except ValueError:
        data = None
    records: tuple[Record, ...] = ()
    if isinstance(data, dict):
        ours = data.get("recordType") in SUPPORTED_TYPES
        name = _name_from_key(prefix, key, 1 if ours else data.get("targetstrip"))
        # Our names were validated when written; a foreign key with an invalid name is left alone: returning
        # it would make ExternalDNS send it back in a delete that we would have to refuse.
        if name and (ours or is_valid_name(name)):
            records = _records_from_value(name, data)
    return StoredEntry(key, value, mod_revision, prefix, records)


def _name_from_key(prefix: str, key: str, targetstrip: Any) -> str | None:
    if not key.startswith(prefix):
        return None
    labels = key[len(prefix):].split("/")
    strip = targetstrip if isinstance(targetstrip, int) and not isinstance(targetstrip, bool) else 0
    if strip < 0 or strip >= len(labels):
        return None
    kept = labels[: len(labels) - strip]
    if not all(kept):
        return None
    return name_from_reversed(kept).lower()


def _records_from_value(name: str, data: dict[str, Any]) -> tuple[Record, ...]:
    ttl = data.get("ttl")
    ttl = ttl if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0 else 0
    raw_identifier = data.get("setIdentifier")
    set_identifier = raw_identifier if isinstance(raw_identifier, str) else ""
    labels = _labels(data.get("labels"))
    ours = data.get("recordType") in SUPPORTED_TYPES
    props = _provider_specific(data) if ours else _group_property(data)

    def record(record_type: str, target: str) -> Record:
        return Record(name, record_type, target, set_identifier, ttl, labels, props)

    host, text = data.get("host"), data.get("text")
    host = host if isinstance(host, str) else ""
    text = text if isinstance(text, str) else ""
    if ours:
        target = _our_target(data["recordType"], host, text, data)
        return (record(data["recordType"], target),) if target is not None else ()
    found = []
    if host:
        record_type = _guess_type(name, host, data)
        found.append(record(record_type, lenient_target(record_type, _foreign_target(record_type, host, data))))
    if text:
        found.append(record("TXT", text))
    return tuple(found)


def _our_target(record_type: str, host: str, text: str, data: dict[str, Any]) -> str | None:
    if record_type == "TXT":
        return text
    if not host:
        return None
    if record_type == "SRV":
        return f"{_int(data, 'priority')} {_int(data, 'weight')} {_int(data, 'port')} {host}."
    if record_type == "MX":
        return f"{_int(data, 'priority')} {host}"
    return host


def _guess_type(name: str, host: str, data: dict[str, Any]) -> str:
    """How the coredns provider (and CoreDNS) read a value without our ``recordType``."""
    try:
        return "A" if ipaddress.ip_address(host).version == 4 else "AAAA"
    except ValueError:
        pass
    if data.get("mail") is True:
        return "MX"
    if _int(data, "port"):
        return "SRV"
    if name.endswith(".in-addr.arpa") or name.endswith(".ip6.arpa"):
        return "PTR"
    return "CNAME"


def _foreign_target(record_type: str, host: str, data: dict[str, Any]) -> str:
    if record_type == "SRV":
        return f"{_int(data, 'priority')} {_int(data, 'weight')} {_int(data, 'port')} {host}"
    if record_type == "MX":
        return f"{_int(data, 'priority')} {host}"
    return host


def _int(data: dict[str, Any], field: str) -> int:
    value = data.get(field)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _provider_specific(data: dict[str, Any]) -> tuple[ProviderSpecificProperty, ...]:
    items = data.get("providerSpecific")
    if not isinstance(items, list):
        return ()
    return tuple(ProviderSpecificProperty(item["name"], item["value"]) for item in items
                 if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str))


def _group_property(data: dict[str, Any]) -> tuple[ProviderSpecificProperty, ...]:
    group = data.get("group")
    return (ProviderSpecificProperty(GROUP_PROPERTY, group),) if isinstance(group, str) and group else ()
