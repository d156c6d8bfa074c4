"""The ``webhook/weights`` providerSpecific property: how a Weighted answer's per-address weights travel
from the aggregator (DNSEndpoint) through ExternalDNS and the webhook (etcd) to CoreDNS's weight file.

ExternalDNS v0.21+ hands a webhook only properties named ``webhook/...`` or without a slash, so the
name carries that prefix. Value: ``198.18.1.1=255,198.18.2.1=64``, addresses sorted, weights 1-255
(CoreDNS's ``loadbalance weighted`` range; a drained cluster is simply not in the answer).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

WEIGHTS_PROPERTY = "webhook/weights"
MIN_WEIGHT, MAX_WEIGHT = 1, 255


class WeightsFormatError(ValueError):
    """A ``webhook/weights`` value that cannot be used; the message says which entry and why."""


def format_weights(weights: Mapping[str, int]) -> str:
    for address, weight in weights.items():
        _check(address, weight)
    return ",".join(f"{address}={weights[address]}" for address in sorted(weights))


def parse_weights(value: str) -> dict[str, int]:
    """``ip=weight,...`` → {ip: weight}; WeightsFormatError on anything else (empty value: no entries)."""
    weights: dict[str, int] = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        address, sep, raw = entry.partition("=")
        raw = raw.strip()
        if not sep or not (raw.isascii() and raw.isdigit()):  # isdigit alone accepts "²", which int() refuses
            raise WeightsFormatError(f"{WEIGHTS_PROPERTY} entry {entry!r} is not <ip>=<weight>")
        address = address.strip()
        _check(address, int(raw))
        if address in weights:
            raise WeightsFormatError(f"{WEIGHTS_PROPERTY} lists {address} twice")
        weights[address] = int(raw)
    return weights


def _check(address: str, weight: int) -> None:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise WeightsFormatError(f"{WEIGHTS_PROPERTY}: {address!r} is not an IP address") from None
    if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
        raise WeightsFormatError(f"{WEIGHTS_PROPERTY}: weight {weight} of {address} is outside "
                                 f"{MIN_WEIGHT}-{MAX_WEIGHT}")
