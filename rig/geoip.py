"""A small MaxMind-format GeoIP database for tests: documentation address ranges mapped to countries, continents
and locations, in the GeoLite2-City layout CoreDNS's ``geoip`` plugin reads (``country.iso_code``,
``continent.code``, ``location.latitude/longitude``; database type ``GeoLite2-City``, IPv6 tree with IPv4 at
``::/96``). Written with PyPI ``mmdb-writer``.

Each IPv4 range is also written at its IPv4-mapped address (``::ffff:a.b.c.d``), as MaxMind's own databases alias
it: CoreDNS reads an IPv4 EDNS client subnet as a 16-byte address (miekg/dns) and looks that up as IPv6
(maxminddb-golang does not unmap it), so without the alias an IPv4 client subnet would find nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPNetwork, IPSet

DATABASE_TYPE = "GeoLite2-City"  # a type geoip2-golang reads City records from (CoreDNS probes it at start)


@dataclass(frozen=True)
class Place:
    """What the database says about a range: as GeoLite2-City has it."""

    country: str  # ISO 3166-1 alpha-2
    country_name: str
    continent: str  # AF AN AS EU NA OC SA
    continent_name: str
    latitude: float
    longitude: float

    def record(self) -> dict[str, object]:
        return {
            "country": {"iso_code": self.country, "names": {"en": self.country_name}},
            "continent": {"code": self.continent, "names": {"en": self.continent_name}},
            "location": {"latitude": self.latitude, "longitude": self.longitude},
        }


GERMANY = Place("DE", "Germany", "EU", "Europe", 50.1109, 8.6821)
UNITED_STATES = Place("US", "United States", "NA", "North America", 40.7128, -74.0060)
JAPAN = Place("JP", "Japan", "AS", "Asia", 35.6762, 139.6503)

# Documentation ranges (RFC 5737, RFC 3849), each a different place; 127.0.0.0/8 is in none (no GeoIP data).
DOCUMENTATION_RANGES: dict[str, Place] = {
    "192.0.2.0/24": GERMANY,
    "198.51.100.0/24": UNITED_STATES,
    "203.0.113.0/24": JAPAN,
    "2001:db8:de::/48": GERMANY,
    "2001:db8:5::/48": UNITED_STATES,
    "2001:db8:3a::/48": JAPAN,
}


def write_geoip_db(path: Path, ranges: Mapping[str, Place] = DOCUMENTATION_RANGES) -> Path:
    """Write the database to ``path`` (its directory must exist) and return ``path``."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=DATABASE_TYPE, languages=["en"],
                        description="FleetDNS test GeoIP: documentation ranges")
    for network, place in ranges.items():
        writer.insert_network(IPSet([network]), place.record())
        parsed = IPNetwork(network)
        if parsed.version == 4:  # the alias CoreDNS's lookups of IPv4 client subnets land on
            writer.insert_network(IPSet([IPNetwork((int(parsed.ipv6(ipv4_compatible=False).network),
                                                    parsed.prefixlen + 96), 6)]), place.record())
    writer.to_db_file(str(path))
    return path
