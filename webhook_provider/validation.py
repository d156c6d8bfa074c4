"""Which endpoints can be stored, and why not; each target in its one canonical form (fleetdns/skydns/targets.py).

GET /records returns targets in exactly the form /adjustendpoints gave ExternalDNS, so its planner
never sees a difference that is not there (no update churn). ``storable_endpoint`` is the one decision
shared by POST /records (skips) and /adjustendpoints (drops), so the plan never retries a skipped record.
A property we give meaning to (``webhook/weights``) that cannot be used is removed the same way in both
places; the record itself is kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum

from fleetdns.dnsname import InvalidDNSNameError, normalize_name, normalize_stored_name
from fleetdns.dnsview import VIEW_PROPERTY, DNSViewError, check_served_view_name
from fleetdns.endpoint import Endpoint, ProviderSpecificProperty
from fleetdns.skydns.targets import MAX_TTL, SUPPORTED_TYPES, InvalidTargetError, canonical_target, lenient_target
from fleetdns.weights import WEIGHTS_PROPERTY, WeightsFormatError, format_weights, parse_weights
from webhook_provider.domain_filter import DomainFilter

_TYPE_STRINGS = {record_type: record_type for record_type in SUPPORTED_TYPES}  # one shared str per type
# JSON may escape a lone UTF-16 surrogate ("\ud800"); Python decodes it into a str that has no UTF-8 form, so
# etcd (bytes) and DNS can never hold it. Go's encoder never produces one: such an endpoint did not come from
# ExternalDNS, and is skipped like any other record that cannot be stored.
_SURROGATE = re.compile("[\ud800-\udfff]")


class RejectReason(StrEnum):
    """Why an endpoint cannot be stored: the fixed label set of ``fleetdns_webhook_records_rejected_total``."""

    INVALID_NAME = "invalid_name"  # not a DNS name (e.g. the registry's ``a-*.x`` companion of a wildcard)
    WILDCARD = "wildcard"  # CoreDNS's etcd plugin never serves a ``*`` key as a DNS wildcard
    DOMAIN_FILTER = "domain_filter"
    UNSUPPORTED_TYPE = "unsupported_type"
    INVALID_TARGET = "invalid_target"  # includes an endpoint without targets
    CNAME_MULTIPLE_TARGETS = "cname_multiple_targets"
    INVALID_TTL = "invalid_ttl"
    INVALID_VIEW = "invalid_view"  # webhook/view names no view (it names the record's etcd prefix)
    TOO_LARGE = "too_large"  # one of its records alone exceeds an etcd transaction (planner.too_large, by the provider)
    INVALID_TEXT = "invalid_text"  # a string field with no UTF-8 form (a lone surrogate such as \ud800)


@dataclass(frozen=True)
class Rejection:
    """An endpoint that is skipped, not written: its name (normalised when valid), type, reason and why."""

    dns_name: str
    record_type: str
    reason: RejectReason
    message: str


@dataclass(frozen=True)
class DroppedProperty:
    """A providerSpecific property removed from an endpoint that is stored without it, and why."""

    dns_name: str
    record_type: str
    property: str
    message: str


@dataclass(frozen=True)
class Storable:
    """An endpoint in the canonical form it is stored in, and the properties that form left out."""

    endpoint: Endpoint
    dropped: tuple[DroppedProperty, ...] = ()


def storable_endpoint(endpoint: Endpoint, domain_filter: DomainFilter) -> Storable | Rejection:
    """The canonical endpoint (normalised name, upper-case type, canonical de-duplicated targets, usable
    properties), or why it cannot be stored at all.

    The one home of "can this be stored": POST /records skips what this rejects, /adjustendpoints drops it;
    both remove the same unusable properties.
    """
    record_type = _record_type(endpoint.record_type)
    name = _encodable(endpoint, record_type) or _valid_name(endpoint, record_type, domain_filter)
    if isinstance(name, Rejection):
        return name

    def reject(reason: RejectReason, message: str) -> Rejection:
        return Rejection(name, record_type, reason, message)

    if name.split(".", 1)[0] == "*":
        return reject(RejectReason.WILDCARD, f"{name!r}: CoreDNS's etcd plugin does not serve a '*' key as a DNS "
                                             "wildcard (only queries may contain '*'); list the names instead")
    if record_type not in SUPPORTED_TYPES:
        return reject(RejectReason.UNSUPPORTED_TYPE, f"record type {endpoint.record_type!r} is not supported "
                                                     f"(supported: {', '.join(SUPPORTED_TYPES)})")
    if not 0 <= endpoint.record_ttl <= MAX_TTL:
        return reject(RejectReason.INVALID_TTL, f"recordTTL {endpoint.record_ttl} is outside 0..{MAX_TTL}")
    view_problem = _view_problem(endpoint.provider_specific)
    if view_problem:
        return reject(RejectReason.INVALID_VIEW, view_problem)
    if not endpoint.targets:
        return reject(RejectReason.INVALID_TARGET, "at least one target is required")
    targets: list[str] = []
    for target in endpoint.targets:
        try:
            canonical = canonical_target(record_type, target)
        except InvalidTargetError as error:
            return reject(RejectReason.INVALID_TARGET, str(error))
        if canonical not in targets:
            targets.append(canonical)
    if record_type == "CNAME" and len(targets) > 1:
        return reject(RejectReason.CNAME_MULTIPLE_TARGETS, f"a CNAME has exactly one target, got {len(targets)}")
    properties, dropped = _usable_properties(name, record_type, targets, endpoint.provider_specific)
    return Storable(replace(endpoint, dns_name=name, record_type=record_type, targets=tuple(targets),
                            provider_specific=properties), dropped)


def _view_problem(properties: tuple[ProviderSpecificProperty, ...]) -> str:
    """Why the endpoint's ``webhook/view`` cannot name its etcd prefix ``<prefix>-<view>/`` ("" when it can)."""
    views = [prop.value for prop in properties if prop.name == VIEW_PROPERTY]
    if len(views) > 1:
        return f"{VIEW_PROPERTY} is given {len(views)} times; a record answers in one view"
    if views:
        try:
            check_served_view_name(views[0])
        except DNSViewError as error:
            return f"{VIEW_PROPERTY}: {error}"
    return ""


def _usable_properties(name: str, record_type: str, targets: list[str],
                       properties: tuple[ProviderSpecificProperty, ...],
                       ) -> tuple[tuple[ProviderSpecificProperty, ...], tuple[DroppedProperty, ...]]:
    """``webhook/weights`` of an A/AAAA endpoint in canonical form, or left out with the reason; other
    properties (and the weights the TXT registry copies onto its ownership records) pass unchanged."""
    if record_type not in ("A", "AAAA"):
        return properties, ()
    given = [prop.value for prop in properties if prop.name == WEIGHTS_PROPERTY]
    if not given:
        return properties, ()
    try:
        canonical = _canonical_weights(record_type, targets, given)
    except WeightsFormatError as error:
        kept = tuple(prop for prop in properties if prop.name != WEIGHTS_PROPERTY)
        return kept, (DroppedProperty(name, record_type, WEIGHTS_PROPERTY, str(error)),)
    return tuple(ProviderSpecificProperty(WEIGHTS_PROPERTY, canonical) if prop.name == WEIGHTS_PROPERTY else prop
                 for prop in properties), ()


def _canonical_weights(record_type: str, targets: list[str], given: list[str]) -> str:
    """``ip=weight,...`` with canonical addresses, sorted; every address must be a target of this endpoint."""
    if len(given) > 1:
        raise WeightsFormatError(f"{WEIGHTS_PROPERTY} is given {len(given)} times")
    weights = parse_weights(given[0])
    if not weights:
        raise WeightsFormatError(f"{WEIGHTS_PROPERTY} lists no address")
    canonical: dict[str, int] = {}
    for address, weight in weights.items():
        try:
            target = canonical_target(record_type, address)
        except InvalidTargetError:
            raise WeightsFormatError(f"{WEIGHTS_PROPERTY}: {address} is not an "
                                     f"{'IPv4' if record_type == 'A' else 'IPv6'} address of this {record_type} "
                                     "endpoint") from None
        if target not in targets:
            raise WeightsFormatError(f"{WEIGHTS_PROPERTY}: {address} is not a target of this {record_type} endpoint "
                                     f"(targets: {', '.join(targets)})")
        if target in canonical:
            raise WeightsFormatError(f"{WEIGHTS_PROPERTY} lists {target} twice")
        canonical[target] = weight
    return format_weights(canonical)


def existing_endpoint(endpoint: Endpoint, domain_filter: DomainFilter) -> Endpoint | Rejection:
    """An endpoint naming records that may exist (updateOld, delete), or why none can.

    Type and targets stay lenient (anything GET /records may have returned, e.g. a foreign two-target
    CNAME or an older ``*`` record); only names GET /records never returns are rejected, and text no stored
    record can hold.
    """
    record_type = _record_type(endpoint.record_type)
    name = _encodable(endpoint, record_type) or _valid_name(endpoint, record_type, domain_filter, normalize_stored_name)
    if isinstance(name, Rejection):
        return name
    targets = tuple(dict.fromkeys(lenient_target(record_type, target) for target in endpoint.targets))
    return replace(endpoint, dns_name=name, record_type=record_type, targets=targets)


def _record_type(given: str) -> str:
    """Upper case, no blanks; a supported type as the one shared string (not one copy per endpoint)."""
    canonical = given.strip().upper()
    return _TYPE_STRINGS.get(canonical, canonical)


def _encodable(endpoint: Endpoint, record_type: str) -> Rejection | None:
    """Why one of the endpoint's strings cannot be written as UTF-8 (into etcd, a log, a response), or None."""
    labels, properties = endpoint.labels, endpoint.provider_specific
    if "".join((endpoint.dns_name, endpoint.record_type, endpoint.set_identifier, *endpoint.targets, *labels,
                *labels.values(), *(p.name + p.value for p in properties))).isascii():
        return None  # nearly always: one pass in C instead of one per field
    for where, text in _texts(endpoint):
        if not text.isascii() and _SURROGATE.search(text):
            return Rejection(_printable(endpoint.dns_name), _printable(record_type), RejectReason.INVALID_TEXT,
                             f"{where} {_printable(text)!r} holds a lone UTF-16 surrogate, which has no UTF-8 form: "
                             "it cannot be stored")
    return None


def _texts(endpoint: Endpoint) -> Iterator[tuple[str, str]]:
    """Every string of an endpoint and the field it is in (``labels`` names the key it belongs to)."""
    yield "dnsName", endpoint.dns_name
    yield "recordType", endpoint.record_type
    yield "setIdentifier", endpoint.set_identifier
    for index, target in enumerate(endpoint.targets):
        yield f"targets[{index}]", target
    for key, value in endpoint.labels.items():
        yield "labels key", key
        yield f"labels[{_printable(key)!r}]", value
    for index, prop in enumerate(endpoint.provider_specific):
        yield f"providerSpecific[{index}].name", prop.name
        yield f"providerSpecific[{index}].value", prop.value


def _printable(text: str) -> str:
    """``text`` with lone surrogates spelled ``\\udxxx``: safe to log, count and answer with."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _valid_name(endpoint: Endpoint, record_type: str, domain_filter: DomainFilter,
                normalize: Callable[[str], str] = normalize_name) -> str | Rejection:
    """The normalised name if it is a DNS name this provider serves."""
    try:
        name = normalize(endpoint.dns_name)
    except InvalidDNSNameError as error:
        return Rejection(endpoint.dns_name, record_type, RejectReason.INVALID_NAME, str(error))
    if not domain_filter.match(name):
        return Rejection(name, record_type, RejectReason.DOMAIN_FILTER, f"{name!r} is outside the domain filter")
    return name
