"""Client-location views (``DNSView``, cluster-scoped): who the clients of a view are, where they are, and
which region's probes stand for them. Shared by the aggregator (answers per view, the view's status) and
whatever renders the serving side (one CoreDNS block and one etcd prefix per view), so both read a DNSView
and decide which views are served by the same rules. See docs/design/views.md §1.

Views the fleet always has: ``region-<region>`` for every region of a MemberCluster, located at its
clusters' mean location, latency from that region. A DNSView may not take such a name.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

VIEW_PROPERTY = "webhook/view"  # providerSpecific property of an endpoint that answers in one view only
REGION_VIEW_PREFIX = "region-"
MAX_VIEW_NAME = 40  # so that the etcd prefix skydns-<view> stays one short path segment
# The host's DNSViews as each region keeps them in its etcd (docs/design/views.md §7): the webhook provider writes
# ``<prefix><name>`` = the spec as JSON, the zone-file sidecar renders the Corefile from them. Outside /skydns.
VIEWS_KEY_PREFIX = "/fleetdns/views/"
CONTINENTS = ("AF", "AN", "AS", "EU", "NA", "OC", "SA")  # GeoIP continent codes
# Used with fullmatch: ``$`` also matches before a trailing newline (``office\n`` would name a prefix).
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_COUNTRY = re.compile(r"[A-Z]{2}")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DNSViewError(ValueError):
    """A DNSView that cannot be used; the message names the field (the CRD refuses these at admission)."""


@dataclass(frozen=True)
class Location:
    """A point on Earth in degrees (WGS 84): where a view's clients or a MemberCluster are."""

    latitude: float
    longitude: float

    def to_json(self) -> dict[str, float]:
        return {"latitude": self.latitude, "longitude": self.longitude}


@dataclass(frozen=True)
class DNSView:
    """One client population: matched by the resolver's address (clientCIDRs) or by GeoIP of the EDNS client
    subnet, else of the resolver's address (countries, continents)."""

    name: str
    client_cidrs: tuple[Network, ...] = ()
    countries: tuple[str, ...] = ()
    continents: tuple[str, ...] = ()
    location: Location | None = None
    latency_from: str = ""  # the region whose probes stand for these clients ("" none)


def region_view_name(region: str) -> str:
    return f"{REGION_VIEW_PREFIX}{region}"


def check_view_name(name: str) -> None:
    """A DNSView's name: one DNS label of at most 40 characters, not ``region-...`` (the fleet's own views)."""
    if len(name) > MAX_VIEW_NAME or not _LABEL.fullmatch(name):
        raise DNSViewError(f"metadata.name {name!r} must be one DNS label of at most {MAX_VIEW_NAME} characters "
                           "(lower-case letters, digits and '-'): it names the view's etcd prefix skydns-<view>")
    if name.startswith(REGION_VIEW_PREFIX):
        raise DNSViewError(f"metadata.name {name!r} must not start with {REGION_VIEW_PREFIX!r}: those are the views "
                           "every region has (region-<region>)")


def check_served_view_name(name: str) -> None:
    """A view the DNS stacks serve: a DNSView's name or ``region-<region>`` (a region is a DNS label of at most
    63 characters). It names an etcd prefix (``skydns-<view>``) and a directory of zone files."""
    region = name.removeprefix(REGION_VIEW_PREFIX)
    if region != name:
        if len(region) > 63 or not _LABEL.fullmatch(region):
            raise DNSViewError(f"view {name!r}: {REGION_VIEW_PREFIX}<region> needs a region that is a DNS label of at "
                               "most 63 characters (lower-case letters, digits and '-')")
        return
    if len(name) > MAX_VIEW_NAME or not _LABEL.fullmatch(name):
        raise DNSViewError(f"view {name!r} must be a DNSView's name (one DNS label of at most {MAX_VIEW_NAME} "
                           f"characters: lower-case letters, digits and '-') or {REGION_VIEW_PREFIX}<region>")


def parse_location(raw: Any, field: str) -> Location | None:
    """``{latitude, longitude}`` in degrees (absent: None); DNSViewError names the field."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise DNSViewError(f"{field} must be an object with latitude and longitude")
    values = []
    for key, limit in (("latitude", 90.0), ("longitude", 180.0)):
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not -limit <= value <= limit:
            raise DNSViewError(f"{field}.{key} must be a number from {-limit:g} to {limit:g}, not {value!r}")
        values.append(float(value))
    return Location(values[0], values[1])


def parse_dns_view(obj: dict[str, Any]) -> DNSView:
    """A DNSView from the API's JSON, checked as the CRD checks it (for objects written before it did)."""
    name = str((obj.get("metadata") or {}).get("name") or "")
    check_view_name(name)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise DNSViewError("spec is required")
    cidrs = []
    for index, raw in enumerate(_strings(spec, "clientCIDRs")):
        try:
            cidrs.append(ipaddress.ip_network(raw, strict=True))
        except ValueError as error:
            raise DNSViewError(f"spec.clientCIDRs[{index}] {raw!r} is not a network address in CIDR form: "
                               f"{error}") from None
    countries = _strings(spec, "countries")
    for index, code in enumerate(countries):
        if not _COUNTRY.fullmatch(code):
            raise DNSViewError(f"spec.countries[{index}] {code!r} must be an ISO 3166-1 alpha-2 code in upper case")
    continents = _strings(spec, "continents")
    for index, code in enumerate(continents):
        if code not in CONTINENTS:
            raise DNSViewError(f"spec.continents[{index}] {code!r} must be one of {', '.join(CONTINENTS)}")
    if not (cidrs or countries or continents):
        raise DNSViewError("spec needs at least one of clientCIDRs, countries and continents: who the clients are")
    latency_from = spec.get("latencyFrom") or ""
    if not isinstance(latency_from, str) or (latency_from and not _LABEL.fullmatch(latency_from)):
        raise DNSViewError(f"spec.latencyFrom {latency_from!r} must name a region (a DNS label)")
    return DNSView(name, tuple(cidrs), tuple(countries), tuple(continents),
                   parse_location(spec.get("location"), "spec.location"), latency_from)


def _strings(spec: dict[str, Any], field: str) -> tuple[str, ...]:
    raw = spec.get(field)
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise DNSViewError(f"spec.{field} must be a list of strings")
    return tuple(raw)


def accept_views(views: Iterable[DNSView]) -> tuple[tuple[DNSView, ...], dict[str, str]]:
    """Which views are served: by name, a view whose clientCIDRs overlap those of a view accepted before it is
    left out (a client address must select one view). Returns (accepted views by name, {refused name: why})."""
    accepted: list[DNSView] = []
    refused: dict[str, str] = {}
    for view in sorted(views, key=lambda v: v.name):
        clash = next(((mine, theirs, other) for other in accepted for mine in view.client_cidrs
                      for theirs in other.client_cidrs if mine.version == theirs.version and mine.overlaps(theirs)),
                     None)
        if clash is None:
            accepted.append(view)
            continue
        mine, theirs, other = clash
        refused[view.name] = (f"clientCIDRs {mine} overlaps {theirs} of DNSView {other.name}, which comes first by "
                              f"name: a client address must select one view; this view is not served until the "
                              f"overlap is removed")
    return tuple(accepted), refused


def view_key(name: str, prefix: str = VIEWS_KEY_PREFIX) -> str:
    """The etcd key of a DNSView in a region: ``/fleetdns/views/<name>``."""
    return prefix + name


def stored_view_value(obj: dict[str, Any]) -> str:
    """The value kept for a DNSView: its spec as JSON, keys sorted, so an unchanged spec is an unchanged value."""
    return json.dumps(obj.get("spec") or {}, sort_keys=True, separators=(",", ":"))


def stored_view(key: str, value: bytes | str, prefix: str = VIEWS_KEY_PREFIX) -> DNSView:
    """A DNSView back from its etcd key and value, checked as ``parse_dns_view`` checks the host's objects."""
    name = key.removeprefix(prefix)
    if name == key or "/" in name:
        raise DNSViewError(f"key {key!r} is not a DNSView's key (expected {prefix}<name>)")
    try:
        spec = json.loads(value)
    except ValueError as error:
        raise DNSViewError(f"DNSView {name!r}: the stored spec is not JSON: {error}") from None
    return parse_dns_view({"metadata": {"name": name}, "spec": spec})
