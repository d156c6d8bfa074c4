"""A real recursive resolver (Unbound) on loopback: what the rig's clients ask, as clients ask their ISP's or their
company's resolver. It starts at the parent zone (a stub zone: the rig has no root servers) and follows the parent's
referral to the regional CoreDNS servers the glue names, caching answers for their TTL as resolvers do.

Who the authoritative servers see is the resolver, not its clients: ``outgoing`` is the address it asks from (an
office's resolver inside the network a DNSView's clientCIDRs name), and ``client_subnet`` passes a client's EDNS
client subnet on to them (Unbound's subnetcache module, as public resolvers do: what views by country look up)."""

from __future__ import annotations

from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from rig.binaries import binary
from rig.dnsclient import DNSClient
from rig.ports import free_port
from rig.process import ManagedProcess

START_TIMEOUT = 30.0


class Unbound:
    """``parent``: the zone the resolver starts at, served at ``parent_server`` (address, port)."""

    def __init__(self, workdir: Path, parent: str, parent_server: tuple[str, int], host: str = "127.0.0.1", *,
                 outgoing: str = "", client_subnet: bool = False) -> None:
        self.workdir = workdir
        self.name = f"the resolver {workdir.name}"
        self.host = host
        self.port = free_port(host)
        workdir.mkdir(parents=True, exist_ok=True)
        address, port = parent_server
        modules = "subnetcache iterator" if client_subnet else "iterator"
        asks_from = f"    outgoing-interface: {outgoing}\n" if outgoing else ""
        # the subnet a client gives goes to every server on loopback, which is where the rig's nameservers are
        subnet = ("    send-client-subnet: 127.0.0.0/8\n    client-subnet-always-forward: yes\n"
                  "    max-client-subnet-ipv4: 24\n") if client_subnet else ""
        (workdir / "unbound.conf").write_text(f"""server:
    interface: {host}
    port: {self.port}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{workdir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    so-reuseport: no
    access-control: 127.0.0.0/8 allow
    # the regional CoreDNS servers the glue names are loopback addresses here: a resolver may ask them
    do-not-query-localhost: no
    module-config: "{modules}"
{asks_from}{subnet}    qname-minimisation: no
    prefetch: no
    serve-expired: no

stub-zone:
    name: "{parent}"
    stub-addr: {address}@{port}
""")
        self.process = ManagedProcess("unbound", [binary("unbound"), "-d", "-c", str(workdir / "unbound.conf")],
                                      workdir / "unbound.log")

    def start(self) -> Unbound:
        self.process.start()
        self.process.wait_until(self._answers, START_TIMEOUT, "answering")
        return self

    def _answers(self) -> bool:
        try:
            dns.query.udp(dns.message.make_query("localhost.", "A"), self.host, port=self.port, timeout=0.5)
        except (OSError, dns.exception.DNSException):
            return False
        return True

    def stop(self) -> None:
        self.process.stop()

    def resolve(self, name: str, rdtype: str = "A", timeout: float = 3.0,
                asker: DNSClient | None = None) -> tuple[set[str], int]:
        """What a client (``asker``: its source address and EDNS client subnet) behind this resolver gets: the
        records' values and the TTL left on them."""
        asker = asker or DNSClient()
        response = dns.query.udp(asker.query(name, rdtype), self.host, port=self.port, timeout=timeout,
                                 source=asker.source)
        wanted = dns.rdatatype.from_text(rdtype)
        found = [rrset for rrset in response.answer if rrset.rdtype == wanted]
        return {rr.to_text() for rrset in found for rr in rrset}, min((r.ttl for r in found), default=0)
