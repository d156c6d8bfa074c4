"""IP addresses as published in ``status.dns[]``: one parser for the aggregator (writing) and the prober (reading)."""

from __future__ import annotations

import ipaddress
from typing import Any


def parse_ips(raw: Any) -> tuple[str, ...]:
    """A list of IP addresses (invalid ones, such as hostnames, dropped), IPv4 first, each family in numeric order."""
    found = set()
    for item in raw if isinstance(raw, list) else []:
        try:
            found.add(ipaddress.ip_address(str(item)))
        except ValueError:
            continue
    return tuple(str(ip) for ip in sorted(found, key=lambda ip: (ip.version, ip)))
