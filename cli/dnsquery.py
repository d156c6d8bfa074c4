"""Asking a regional CoreDNS directly, as a client in a given network would (``--dns REGION=ADDRESS[:PORT]``)."""

from __future__ import annotations

import errno
import ipaddress
import time
from dataclasses import dataclass

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from cli.contexts import UsageError

TIMEOUT = 2.0


@dataclass(frozen=True)
class Server:
    region: str
    address: str
    port: int = 53

    def __str__(self) -> str:
        return f"{self.address}:{self.port}" if ":" not in self.address else f"[{self.address}]:{self.port}"


@dataclass(frozen=True)
class Reply:
    """What one server answered: the rcode and the records' values, or why there was no answer."""

    rcode: str = ""
    values: tuple[str, ...] = ()
    millis: float = 0.0
    error: str = ""
    as_client: bool = False  # asked from the client's own address (else from this machine's)

    @property
    def answered(self) -> bool:
        return not self.error


def parse_server(value: str) -> Server:
    """``REGION=ADDRESS[:PORT]`` (an IPv6 address in brackets when a port follows: ``[2001:db8::53]:1053``)."""
    region, sep, where = value.partition("=")
    if not sep or not region or not where:
        raise UsageError(f"--dns {value!r}: give REGION=ADDRESS[:PORT], for example east=192.0.2.53")
    address, port = where, 53
    if where.startswith("["):
        address, _, rest = where[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else 53
    elif where.count(":") == 1:
        address, _, port_text = where.partition(":")
        if not port_text.isdigit():
            raise UsageError(f"--dns {value!r}: the port must be a number")
        port = int(port_text)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise UsageError(f"--dns {value!r}: {address!r} is not an IP address") from None
    if not 0 < port < 65536:
        raise UsageError(f"--dns {value!r}: port {port} is out of range")
    return Server(region, address, port)


def ask(server: Server, name: str, rdtype: str = "A", client: str = "") -> Reply:
    """One query over UDP. ``client``: an address sent as the EDNS client subnet (/32 or /128), as a resolver in that
    client's network would, and used as the source address when this machine has it (a DNSView's clientCIDRs match
    the source); otherwise this machine's address is the source."""
    query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
    sources: list[str | None] = [None]
    if client:
        address = ipaddress.ip_address(client)
        query.use_edns(0, options=[dns.edns.ECSOption(client, 32 if address.version == 4 else 128)])
        if address.version == ipaddress.ip_address(server.address).version:
            sources.insert(0, client)
    for source in sources:
        started = time.monotonic()
        try:
            response = dns.query.udp(query, server.address, port=server.port, timeout=TIMEOUT, source=source)
        except OSError as error:
            if source is not None and error.errno == errno.EADDRNOTAVAIL:
                continue  # not an address of this machine: ask from its own
            return Reply(error=f"no answer from {server} ({type(error).__name__})")
        except dns.exception.DNSException as error:
            return Reply(error=f"no answer from {server} ({type(error).__name__})")
        millis = (time.monotonic() - started) * 1000
        wanted = dns.rdatatype.from_text(rdtype)
        values = sorted(rdata.to_text() for rrset in response.answer if rrset.rdtype == wanted for rdata in rrset)
        return Reply(dns.rcode.to_text(response.rcode()), tuple(values), round(millis, 1), as_client=source is not None)
    raise AssertionError("unreachable: the last source is this machine's")
