"""The one spelling of each supported record type's target (A, AAAA, CNAME, TXT, SRV, MX, NS) and its limits.

What the webhook stores and returns, what a SkyDNS value is decoded into, and what the zone files check against.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from fleetdns.dnsname import InvalidDNSNameError, normalize_name

SUPPORTED_TYPES = ("A", "AAAA", "CNAME", "TXT", "SRV", "MX", "NS")
MAX_U16 = 65535
MAX_TTL = 2**31 - 1  # RFC 2181: a TTL is a 31-bit unsigned value


class InvalidTargetError(ValueError):
    """A target that cannot be served as its record type; the message says why."""


def canonical_target(record_type: str, target: str) -> str:
    """The one stored and returned spelling of ``target``; raises InvalidTargetError."""
    if record_type == "A":
        return _ip(target, ipaddress.IPv4Address, "IPv4")
    if record_type == "AAAA":
        return _ip(target, ipaddress.IPv6Address, "IPv6")
    if record_type in ("CNAME", "NS"):  # NS: a zone cut below the apex (a delegation), the apex's own above
        return _host(target)
    if record_type == "TXT":
        return target  # any text; case and spacing matter (ownership records carry literal quotes)
    if record_type == "SRV":
        return _srv(target)
    if record_type == "MX":
        return _mx(target)
    raise InvalidTargetError(f"record type {record_type!r} is not supported (supported: {', '.join(SUPPORTED_TYPES)})")


@dataclass(frozen=True)
class SrvTarget:
    priority: int
    weight: int
    port: int
    host: str


@dataclass(frozen=True)
class MxTarget:
    preference: int
    host: str


def parse_srv(target: str) -> SrvTarget:
    parts = target.split()
    if len(parts) != 4:
        raise InvalidTargetError(f"SRV target {target!r} must be 'priority weight port target'")
    priority, weight, port = (_u16(part, what, target) for part, what in zip(parts[:3], ("priority", "weight", "port"),
                                                                                 strict=True))
    return SrvTarget(priority, weight, port, _host(parts[3]))


def parse_mx(target: str) -> MxTarget:
    parts = target.split()
    if len(parts) != 2:
        raise InvalidTargetError(f"MX target {target!r} must be 'preference host'")
    return MxTarget(_u16(parts[0], "preference", target), _host(parts[1]))


def _srv(target: str) -> str:
    # ExternalDNS (v0.22) refuses SRV targets whose host lacks the trailing dot and keeps it, unlike MX/CNAME.
    srv = parse_srv(target)
    return f"{srv.priority} {srv.weight} {srv.port} {srv.host}."


def _mx(target: str) -> str:
    mx = parse_mx(target)
    return f"{mx.preference} {mx.host}"


def _u16(text: str, what: str, target: str) -> int:
    # isdigit alone accepts "²", which int() refuses with a ValueError that would fail the whole batch
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_U16:
        raise InvalidTargetError(f"{what} {text!r} in {target!r} must be an integer from 0 to {MAX_U16}")
    return int(text)


def _ip(target: str, kind: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address], label: str) -> str:
    try:
        return str(kind(target.strip()))
    except ValueError:
        raise InvalidTargetError(f"{target!r} is not an {label} address") from None


def _host(target: str) -> str:
    try:
        host = normalize_name(target)
    except InvalidDNSNameError as error:
        raise InvalidTargetError(str(error)) from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    raise InvalidTargetError(f"{target!r} is an address; a host name is required here")


def lenient_target(record_type: str, target: str) -> str:
    """Canonical when valid, else unchanged: how records read from etcd (and so sent back to us) are matched."""
    try:
        return canonical_target(record_type, target)
    except InvalidTargetError:
        return target
