"""SkyDNS keys and values: the one place that encodes records for CoreDNS and decodes what is in etcd.

Key: ``<prefix><reversed labels>/<leaf>`` with ``"targetstrip": 1``, the layout of ExternalDNS's
coredns provider, so either can read the other's keys. Our leaf is a hash of (type, set identifier,
target) instead of a random number: a retried apply writes the same key, never a duplicate.

Name key: CoreDNS answers CNAME-type queries from the key exactly at the name only (``plugin.CNAME`` looks
up with exact=true) and says NXDOMAIN when it is missing, which resolvers may cache for the whole name
(RFC 2308). So every name with records also has one key ``<prefix><reversed labels>`` (no leaf):
- a name without a CNAME: ``{"nameKey": name}``. No host and no text, so CoreDNS's ``shouldInclude`` drops
  it for every query type before anything else looks at it: CNAME queries get NODATA, nothing else changes.
- a CNAME name: the CNAME's host (CNAME queries answer it) plus a constant ``text``, which makes CoreDNS
  type it TXT (``HostType``): A, AAAA, MX and SRV answers ignore it, ``"priority": -1`` keeps it out of SRV
  weight sums, and the group of the parent name keeps ``msg.Group`` agreeing with the parent's own keys on
  that level (a group of its own would make the parent answer with everything below it). What remains is
  that the parent's TXT answer carries the text once: nothing on the exact key can avoid that (the webhook's README).
  ``targetstrip`` = all its labels hides it from the coredns provider (see ``encode_name_key``).
The name's own queries never see its name key: their prefix range is ``<name key>/``.

Views (docs/design/views.md §4): a record whose endpoint carries ``webhook/view: <v>`` lives under the sibling
prefix ``/skydns-<v>/`` of the default ``/skydns/``. The default prefix and its view prefixes are one key space
under the root ``/skydns`` (the prefix without its last slash): the webhook lists and watches that root. Where a
key lives is the truth about its view: a record read back carries ``webhook/view`` of its prefix and no other,
so ExternalDNS sees (and fixes by an update) a record stored in the wrong place.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Collection
from typing import Any

from fleetdns.dnsname import is_stored_name, is_valid_name, labels_reversed, name_from_reversed
from fleetdns.dnsview import VIEW_PROPERTY, DNSViewError, check_served_view_name
from fleetdns.endpoint import ProviderSpecificProperty
from fleetdns.skydns.records import GROUP_PROPERTY, Record, StoredEntry
from fleetdns.skydns.targets import SUPPORTED_TYPES, lenient_target, parse_mx, parse_srv

LEAF_HEX_DIGITS = 12
NAME_KEY_FIELD = "nameKey"  # marks our name key; CoreDNS and the coredns provider ignore unknown fields
NAME_KEY_TEXT = "fleetdns-name-key"  # what a CNAME name's parent answers in TXT queries (see the docstring)
NAME_KEY_PRIORITY = -1  # below every real SRV priority (0..65535), so no SRV weight share changes


def prefix_for(record: Record, default_prefix: str) -> str:
    """The key prefix a record lives under: its view's (``webhook/view``), else the default prefix."""
    return view_prefix(default_prefix, view_of(record))


def view_of(record: Record) -> str:
    """The view a record answers in ("" = every view that has no record of its own at the name)."""
    for prop in record.provider_specific:
        if prop.name == VIEW_PROPERTY:
            return prop.value
    return ""


def view_prefix(default_prefix: str, view: str) -> str:
    """``/skydns/`` and ``east`` → ``/skydns-east/``: a sibling, so a CoreDNS ``etcd { path }`` serves one view."""
    return f"{default_prefix[:-1]}-{view}/" if view else default_prefix


def key_space_root(default_prefix: str) -> str:
    """``/skydns/`` → ``/skydns``: every key of the default prefix and of its view prefixes starts with it."""
    return default_prefix[:-1]


def split_key(default_prefix: str, key: str) -> tuple[str, str] | None:
    """(prefix, view) of a key in the key space (view "" for the default prefix); None for a key under the root
    that belongs to neither (``/skydns2/...``, ``/skydns-Bad_Name/...``): never read, never written."""
    if key.startswith(default_prefix):
        return default_prefix, ""
    root = key_space_root(default_prefix)
    if not key.startswith(root + "-"):
        return None
    view, slash, _ = key[len(root) + 1:].partition("/")
    if not slash or not is_view_name(view):
        return None
    return view_prefix(default_prefix, view), view


def is_view_name(view: str) -> bool:
    try:
        check_served_view_name(view)
    except DNSViewError:
        return False
    return True


def owns_key(default_prefix: str, key: str) -> bool:
    """Whether ``key`` is under the default prefix or one of its view prefixes (what the webhook may write)."""
    return split_key(default_prefix, key) is not None


def name_key(prefix: str, name: str) -> str:
    """``app.example.com`` → ``/skydns/com/example/app``: the key CoreDNS reads for CNAME-type queries."""
    return prefix + "/".join(labels_reversed(name))


def leaf(record: Record) -> str:
    digest = hashlib.sha256(f"{record.record_type}\0{record.set_identifier}\0{record.target}".encode())
    return digest.hexdigest()[:LEAF_HEX_DIGITS]


def key_for(record: Record, prefix: str) -> str:
    return name_key(prefix, record.name) + "/" + leaf(record)


def encode_name_key(name: str, records: Collection[Record]) -> str | None:
    """The name key's value for a name holding ``records``; None when it holds none (the key must go)."""
    if not records:
        return None
    cnames = sorted((r for r in records if r.record_type == "CNAME"), key=lambda r: (r.target, r.set_identifier))
    value: dict[str, Any] = {}
    if cnames:
        cname = cnames[0]  # CoreDNS answers one CNAME per name; the lowest target, so every writer picks the same
        value = {"host": cname.target, "text": NAME_KEY_TEXT, "priority": NAME_KEY_PRIORITY}
        if cname.ttl:
            value["ttl"] = cname.ttl
        # The coredns provider names a key's endpoint by the key's labels minus `targetstrip`: with all of
        # them stripped it reads an endpoint named "" that no ownership record claims, so it never rewrites
        # or deletes it (read as "backc.example.org" it would delete it by byte prefix, siblings included).
        # CoreDNS strips `targetstrip` only from SRV, MX and NS targets, which this value never yields.
        value["targetstrip"] = len(labels_reversed(name))
        value["group"] = parent_name(name)
    value[NAME_KEY_FIELD] = name
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def parent_name(name: str) -> str:
    """``app.example.com`` → ``example.com``: the default group of the keys beside a name key."""
    return name.split(".", 1)[1] if "." in name else name


def encode_value(record: Record) -> str:
    """CoreDNS's fields first, then ours (CoreDNS and the coredns provider ignore unknown fields)."""
    value: dict[str, Any] = _dns_fields(record)
    if record.ttl:
        value["ttl"] = record.ttl
    # CoreDNS strips `targetstrip` labels from SRV, MX and NS *targets* too (meant for targets it builds from
    # keys), so those carry 0; our reader knows every value with "recordType" has a leaf label.
    value["targetstrip"] = 0 if record.record_type in ("SRV", "MX", "NS") else 1
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


def decode_key(default_prefix: str, key: str, value: bytes, mod_revision: int) -> StoredEntry:
    """``decode_entry`` for any key under the key space's root: decoded under its own prefix and view; a key of
    no view holds no record."""
    where = split_key(default_prefix, key)
    if where is None:
        return StoredEntry(key, value, mod_revision, "", ())
    prefix, view = where
    return decode_entry(prefix, key, value, mod_revision, view)


def decode_entry(prefix: str, key: str, value: bytes, mod_revision: int, view: str = "") -> StoredEntry:
    """Records held by one key under ``prefix`` (the prefix of ``view``); none for values that are not SkyDNS JSON
    (those are never touched).

    Our name key holds no record: it comes back with ``name_key_of`` set, so the planner keeps it in step.
    """
    try:
        data = json.loads(value)
    except ValueError:
        data = None
    if b"\\u" in value and not _encodable(data):
        data = None  # a lone surrogate escape (another writer's): no UTF-8 form, it would fail every GET /records
    records: tuple[Record, ...] = ()
    if isinstance(data, dict) and NAME_KEY_FIELD in data:
        named = data[NAME_KEY_FIELD]
        # Only where we write it; a copy elsewhere is left alone like any value we cannot read.
        ours = isinstance(named, str) and is_stored_name(named) and key == name_key(prefix, named)
        return StoredEntry(key, value, mod_revision, prefix, records, named if ours else None, view)
    if isinstance(data, dict):
        ours = data.get("recordType") in SUPPORTED_TYPES
        name = _name_from_key(prefix, key, 1 if ours else data.get("targetstrip"))
        # Our names were validated when written; a foreign key with an invalid name is left alone: returning
        # it would make ExternalDNS send it back in a delete that we would have to refuse.
        if name and (ours or is_valid_name(name)):
            records = _records_from_value(name, data, view)
    return StoredEntry(key, value, mod_revision, prefix, records, None, view)


def _encodable(data: Any) -> bool:
    """Whether decoded JSON has a UTF-8 form (no lone UTF-16 surrogate such as ``\\ud800`` in any string)."""
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


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


def _records_from_value(name: str, data: dict[str, Any], view: str) -> tuple[Record, ...]:
    ttl = data.get("ttl")
    ttl = ttl if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0 else 0
    raw_identifier = data.get("setIdentifier")
    set_identifier = raw_identifier if isinstance(raw_identifier, str) else ""
    labels = _labels(data.get("labels"))
    ours = data.get("recordType") in SUPPORTED_TYPES
    props = _in_view(_provider_specific(data) if ours else _group_property(data), view)

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


def _in_view(props: tuple[ProviderSpecificProperty, ...], view: str) -> tuple[ProviderSpecificProperty, ...]:
    """The properties with ``webhook/view`` saying where the key lives (the stored value, if it is that, in place)."""
    views = [prop for prop in props if prop.name == VIEW_PROPERTY]
    if views == ([ProviderSpecificProperty(VIEW_PROPERTY, view)] if view else []):
        return props
    kept = tuple(prop for prop in props if prop.name != VIEW_PROPERTY)
    return (*kept, ProviderSpecificProperty(VIEW_PROPERTY, view)) if view else kept


def _group_property(data: dict[str, Any]) -> tuple[ProviderSpecificProperty, ...]:
    group = data.get("group")
    return (ProviderSpecificProperty(GROUP_PROPERTY, group),) if isinstance(group, str) and group else ()
