"""CoreDNS's weight file (``loadbalance weighted``), rendered from the records decoded from etcd (pure).

``fleetdns-zonefiles`` (``zonefiles.py``) writes it beside the zone files, from the same mirror. It takes the
``webhook/weights`` of every A and AAAA record (the TXT registry's ownership records carry a copy; they are
ignored) and renders the format of CoreDNS ``plugin/loadbalance/weighted.go``: a name line, then ``IP WEIGHT``
lines.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fleetdns.skydns.records import StoredEntry
from fleetdns.weights import WEIGHTS_PROPERTY, WeightsFormatError, parse_weights

HEADER = "# CoreDNS loadbalance weighted file, written by fleetdns-zonefiles from etcd; do not edit\n"
ADDRESS_TYPES = ("A", "AAAA")

NameWeights = dict[str, int]  # address -> weight (1-255) of one name


@dataclass(frozen=True)
class InvalidWeights:
    """A stored ``webhook/weights`` value that cannot be used (written before validation, or by someone else)."""

    name: str
    value: str
    reason: str


def name_weights(entries: Iterable[StoredEntry]) -> tuple[NameWeights, list[InvalidWeights]]:
    """The weights of one name's answer: for each of its A/AAAA addresses the weight its record carries.

    Only addresses the name actually answers are kept (a weight for anything else would never be used); when
    two records disagree on an address, the first in key order wins, so every replica renders the same file.
    """
    addresses: set[str] = set()
    weights: NameWeights = {}
    invalid: list[InvalidWeights] = []
    for entry in entries:
        for record in entry.records:
            if record.record_type not in ADDRESS_TYPES:
                continue
            addresses.add(record.target)
            for prop in record.provider_specific:
                if prop.name != WEIGHTS_PROPERTY:
                    continue
                try:
                    parsed = parse_weights(prop.value)
                except WeightsFormatError as error:
                    invalid.append(InvalidWeights(record.name, prop.value, str(error)))
                    continue
                for address, weight in parsed.items():
                    weights.setdefault(str(ipaddress.ip_address(address)), weight)  # targets are canonical too
    return {address: weight for address, weight in weights.items() if address in addresses}, invalid


def render(weights: Mapping[str, NameWeights]) -> str:
    """The weight file: names sorted, each as a fully qualified line, then its ``IP WEIGHT`` lines."""
    lines = [HEADER]
    for name in sorted(weights):
        lines.append(f"{name}.\n")
        for address in sorted(weights[name], key=_address_order):
            lines.append(f"{address} {weights[name][address]}\n")
    return "".join(lines)


def _address_order(address: str) -> tuple[int, int]:
    parsed = ipaddress.ip_address(address)
    return parsed.version, int(parsed)
