"""A zone's master file for CoreDNS's ``file`` plugin, rendered from the records decoded from etcd (pure).

The file answers what the ``etcd`` plugin answered from the same keys, with a real zone's rules: SOA and NS at the
apex, one record set per name and type, wildcards. NS below the apex is a zone cut: the ``file`` plugin answers names
under it with a referral (NS in authority, the zone's glue in additional). The apex NS are the zone's own nameservers
(names whose A/AAAA records carry ``webhook/nameserver``, marked in their text), else NS records stored at the apex,
else ``ns.dns.<zone>`` as the etcd plugin answered. A record that CoreDNS's parser would refuse (one bad line fails
the whole file) or that a zone cannot hold beside the others is dropped, with its reason; the rest is served.

Each name is rendered on its own (``render_name``), so the caller keeps the text per name and re-renders only the
names that changed; the file is the header plus those texts in name order (same data, byte-identical file).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.TXT import TXT

from fleetdns.dnsname import is_within
from fleetdns.endpoint import NAMESERVER_PROPERTY
from fleetdns.skydns.records import Record, StoredEntry
from fleetdns.skydns.targets import MAX_TTL

# What the etcd plugin answered, so switching plugins changes no answer's TTL and no negative-caching time:
DEFAULT_TTL = 300  # a record stored without a TTL (etcd plugin: defaultTTL)
NEGATIVE_TTL = 30  # SOA TTL and minimum: how long resolvers cache NXDOMAIN/NODATA (etcd plugin: MinTTL 30)
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400  # the etcd plugin's SOA; no secondary reads them
MAX_SERIAL = 2**32 - 1
TXT_STRING_BYTES = 255  # one character-string; longer texts are split, as the etcd plugin did
# Every type ``encoding.decode_entry`` yields: ours (targets.SUPPORTED_TYPES) and the coredns provider's guesses.
RENDERED_TYPES = ("NS", "A", "AAAA", "CNAME", "MX", "PTR", "SRV", "TXT")
_SOA_LINE = re.compile(r"^\S+ \d+ IN SOA \S+ \S+ (\d+) ", re.MULTILINE)
NAMESERVER_MARK = "; a nameserver of the zone (webhook/nameserver): listed as NS at the apex\n"


class DropReason(StrEnum):
    """Why a stored record is not in the zone file: the fixed label set of ``dropped_records_total``."""

    OUTSIDE_ZONE = "outside_zone"  # the name is in none of the zones served
    INVALID_NAME = "invalid_name"  # not a DNS name (empty label, label over 63 octets, name over 255)
    UNSUPPORTED_TYPE = "unsupported_type"
    INVALID_TTL = "invalid_ttl"  # above 2^31-1 (RFC 2181)
    INVALID_TARGET = "invalid_target"  # the target does not parse as its type (CoreDNS would refuse the file)
    CNAME_AT_APEX = "cname_at_apex"  # the apex holds the SOA and NS
    CNAME_BESIDE_DATA = "cname_beside_data"  # other types at the name win, as in ExternalDNS's planner
    CNAME_MULTIPLE = "cname_multiple"  # one CNAME per name: the lowest target is kept


@dataclass(frozen=True)
class DroppedRecord:
    name: str
    record_type: str
    target: str
    reason: DropReason
    detail: str


@dataclass(frozen=True)
class RenderedName:
    """One name's lines of the zone file ("" when nothing of it is served) and what was left out."""

    text: str
    records: int
    dropped: tuple[DroppedRecord, ...] = ()


@dataclass(frozen=True)
class _Line:
    record: Record
    rdtype: str
    rdata: str
    ttl: int


def zone_of(name: str, zones: Iterable[str]) -> str | None:
    """The most specific of ``zones`` holding ``name`` (all normalised), or None."""
    found = [zone for zone in zones if is_within(name, zone)]
    return max(found, key=len) if found else None


def render_name(zone: str | None, name: str, entries: Iterable[StoredEntry]) -> RenderedName:
    """The master-file lines of ``name`` (in ``zone``) from its etcd entries (key order), one per record kept."""
    records = [record for entry in entries for record in entry.records]
    if zone is None:
        return _all_dropped(records, DropReason.OUTSIDE_ZONE, "the name is in none of the zones served (--zone)")
    try:
        owner = dns.name.Name([label.encode() for label in name.split(".")] + [b""]).to_text()
    except (dns.exception.DNSException, UnicodeError) as error:
        return _all_dropped(records, DropReason.INVALID_NAME, f"not a DNS name: {error}")
    lines: dict[tuple[str, str], _Line] = {}  # one per type and data (the same record under two keys is one)
    dropped: list[DroppedRecord] = []
    for record in records:
        line = _line(record)
        if isinstance(line, DroppedRecord):
            dropped.append(line)
        else:
            lines.setdefault((line.rdtype, line.rdata), line)
    kept, cname_dropped = _cname_rules(zone, name, list(lines.values()))
    dropped += cname_dropped
    kept.sort(key=lambda line: (RENDERED_TYPES.index(line.rdtype), line.rdata))
    text = "".join(f"{owner} {line.ttl} IN {line.rdtype} {line.rdata}\n" for line in kept)
    if any(line.rdtype in ("A", "AAAA") and _is_nameserver(line.record) for line in kept) and name != zone:
        text = NAMESERVER_MARK + text
    return RenderedName(text, len(kept), tuple(dropped))


def _is_nameserver(record: Record) -> bool:
    return any(prop.name == NAMESERVER_PROPERTY and prop.value == "true" for prop in record.provider_specific)


def _all_dropped(records: list[Record], reason: DropReason, detail: str) -> RenderedName:
    return RenderedName("", 0, tuple(_dropped(record, reason, detail) for record in records))


def _dropped(record: Record, reason: DropReason, detail: str) -> DroppedRecord:
    return DroppedRecord(record.name, record.record_type, record.target, reason, detail)


def _line(record: Record) -> _Line | DroppedRecord:
    if record.record_type not in RENDERED_TYPES:
        return _dropped(record, DropReason.UNSUPPORTED_TYPE, f"type {record.record_type} is not served")
    ttl = record.ttl or DEFAULT_TTL
    if ttl > MAX_TTL:
        return _dropped(record, DropReason.INVALID_TTL, f"TTL {ttl} is above {MAX_TTL}")
    try:
        rdata = _rdata(record)
    except (dns.exception.DNSException, ValueError) as error:
        return _dropped(record, DropReason.INVALID_TARGET, f"not a valid {record.record_type} target: {error}")
    return _Line(record, record.record_type, rdata, ttl)


def _rdata(record: Record) -> str:
    """The record's data in master-file syntax, as dnspython writes it after parsing it (so it parses again)."""
    if record.record_type == "TXT":
        # The etcd plugin answered the stored text as is, cut into 255-byte strings; quoted and escaped here.
        raw = record.target.encode()
        strings = [raw[i:i + TXT_STRING_BYTES] for i in range(0, len(raw), TXT_STRING_BYTES)] or [b""]
        return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings).to_text()
    # Host names are absolute whether stored with a trailing dot (SRV) or without (CNAME, MX, PTR).
    parsed = dns.rdata.from_text(dns.rdataclass.IN, record.record_type, record.target, origin=dns.name.root,
                                 relativize=False)
    return parsed.to_text()


def _cname_rules(zone: str, name: str, lines: list[_Line]) -> tuple[list[_Line], list[DroppedRecord]]:
    """At most one CNAME per name and nothing beside it (RFC 1034 3.6.2); none at the apex (SOA, NS live there).

    Beside other data the CNAME goes: ExternalDNS's planner keeps A/AAAA over a conflicting CNAME
    (plan/conflict.go), so the data is what the owner last asked for. Of several CNAMEs the lowest target stays,
    the one the webhook's name key answered CNAME queries with (``skydns.encode_name_key``).
    """
    cnames = sorted((line for line in lines if line.rdtype == "CNAME"),
                    key=lambda line: (line.rdata, line.record.set_identifier))
    if not cnames:
        return lines, []
    others = [line for line in lines if line.rdtype != "CNAME"]
    if name == zone:
        return others, [_dropped(line.record, DropReason.CNAME_AT_APEX, "the zone apex cannot hold a CNAME")
                        for line in cnames]
    if others:
        types = ", ".join(sorted({line.rdtype for line in others}))
        return others, [_dropped(line.record, DropReason.CNAME_BESIDE_DATA,
                                 f"the name also holds {types}; a CNAME must be alone") for line in cnames]
    return cnames[:1], [_dropped(line.record, DropReason.CNAME_MULTIPLE, f"the name's CNAME is {cnames[0].rdata}")
                        for line in cnames[1:]]


def render_zone(zone: str, serial: int, names: Mapping[str, str]) -> str:
    """The whole file: SOA and NS at the apex, then every name's lines (``render_name``'s text) in name order."""
    return zone_header(zone, serial, apex_nameservers(zone, names)) + zone_body(names)


def apex_nameservers(zone: str, names: Mapping[str, str]) -> tuple[str, ...] | None:
    """The names the header lists as the apex NS: the zone's own nameservers (sorted); () when NS records stored at
    the apex say it themselves; None for the default, ``ns.dns.<zone>``."""
    marked = tuple(sorted(name for name, text in names.items() if text.startswith(NAMESERVER_MARK)))
    if marked:
        return marked
    return () if " IN NS " in names.get(zone, "") else None


def zone_body(names: Mapping[str, str]) -> str:
    """Everything below the header; apart from the serial, the header depends on the zone alone."""
    return "".join(names[name] for name in sorted(names))


def zone_header(zone: str, serial: int, nameservers: tuple[str, ...] | None = None) -> str:
    """SOA and NS at the apex (``apex_nameservers``: None for ``ns.dns.<zone>``, () for none: stored NS records say
    it); the SOA's primary is the first nameserver."""
    apex = f"{zone}."
    listed = [f"{name}." for name in nameservers] if nameservers is not None else [f"ns.dns.{zone}."]
    primary = listed[0] if listed else f"ns.dns.{zone}."
    return (f"; zone {zone} for CoreDNS's file plugin, written by fleetdns-zonefiles from etcd; do not edit\n"
            f"$ORIGIN {apex}\n"
            f"{apex} {NEGATIVE_TTL} IN SOA {primary} hostmaster.{apex} {serial} {SOA_REFRESH} {SOA_RETRY} "
            f"{SOA_EXPIRE} {NEGATIVE_TTL}\n"
            + "".join(f"{apex} {DEFAULT_TTL} IN NS {ns}\n" for ns in listed))


def soa_serial(text: str) -> int | None:
    """The SOA serial of a file ``render_zone`` wrote, or None (another file, or none)."""
    match = _SOA_LINE.search(text)
    return int(match.group(1)) if match and 0 < int(match.group(1)) <= MAX_SERIAL else None


def next_serial(previous: int | None, now: float | None = None) -> int:
    """A serial different from ``previous`` (CoreDNS reloads when the serial differs, it never orders them), in
    1..2^32-1: CoreDNS parses the file at start as if serial 0 were loaded, so a file with serial 0 would fail it.
    Without a previous file: the Unix time, so a new file also differs from one CoreDNS may still hold."""
    if previous is None:
        return int(time.time() if now is None else now) % MAX_SERIAL + 1
    return previous % MAX_SERIAL + 1


def zone_file_name(zone: str) -> str:
    return f"db.{zone}"
