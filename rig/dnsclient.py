"""Who asks the DNS and what they get: a client's source address and EDNS client subnet (what views match)."""

from __future__ import annotations

from dataclasses import dataclass

import dns.edns
import dns.message
import dns.query
import dns.rdatatype


@dataclass(frozen=True)
class DNSClient:
    """Who asks: the query's source address (any of 127.0.0.0/8, all local: the resolver's address a view's
    clientCIDRs match) and an EDNS client subnet (``"192.0.2.0/24"``: what GeoIP views look up), or none."""

    source: str = "127.0.0.1"
    subnet: str | None = None

    def query(self, name: str, rdtype: str) -> dns.message.Message:
        if self.subnet is None:
            return dns.message.make_query(name, rdtype)
        address, _, length = self.subnet.partition("/")
        option = dns.edns.ECSOption(address, int(length) if length else None)
        return dns.message.make_query(name, rdtype, use_edns=0, options=[option])

    def __str__(self) -> str:
        return self.source + (f" (ECS {self.subnet})" if self.subnet else "")


def client_answers(host: str, port: int, name: str, rdtype: str, asker: DNSClient, timeout: float = 1.0) -> set[str]:
    """The answer records of type ``rdtype`` for ``name`` as ``asker`` gets them, as presentation text."""
    response = dns.query.udp(asker.query(name, rdtype), host, port=port, timeout=timeout, source=asker.source)
    wanted = dns.rdatatype.from_text(rdtype)
    return {rr.to_text() for rrset in response.answer if rrset.rdtype == wanted for rr in rrset}
