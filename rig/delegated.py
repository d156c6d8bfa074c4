"""The global zone delegated from its parent, with clients behind real resolvers (``Federation(delegated=True)``).

Each region's CoreDNS answers on port 53 of its own loopback address (what the glue names: an address, no port) and
nowhere else; each member runs the chart's CoreDNS Service with that address as its load balancer's; the parent
zone is served by its own DNS stack (CoreDNS, zone files, etcd, its own ExternalDNS and webhook reading only the
delegation); the host has a Domain with ``spec.delegation``; and clients ask Unbound resolvers that start at the
parent (rig/unbound.py), as clients ask their ISP's or their office's resolver."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
from kubernetes import client

from fleetdns.apipaths import DOMAINS
from fleetdns.kubeapi import KubeClient
from rig.ports import DNS_PORT, free_loopback_address
from rig.process import stop_together
from rig.region import Region
from rig.unbound import Unbound
from rig.waiting import wait_for
from rig.workloads import create_load_balancer_service, ensure_namespace, set_load_balancer_status

ZONE = "gslb.example.com"
SYSTEM = "fleetdns-system"
CORE_DNS = "fleetdns-coredns"  # the regions' CoreDNS Service, as the chart names it
DOMAIN = "gslb"
DELEGATION_TTL = 60
REFERRAL_TIMEOUT = 120.0  # the delegation through the aggregator and the parent's ExternalDNS, on a loaded machine
CLIENTS = "clients"  # the resolver every client without one of its own asks


class Delegation:
    def __init__(self, workdir: Path, zone: str) -> None:
        self.workdir = workdir
        self.zone = zone
        self.parent_zone = zone.partition(".")[2]
        if not self.parent_zone:
            raise ValueError(f"zone {zone!r} has no parent to be delegated from")
        self.addresses: dict[str, str] = {}  # member -> the address its CoreDNS answers on (port 53)
        self.parent: Region | None = None
        self.resolvers: dict[str, Unbound] = {}

    def nameserver_address(self, member: str) -> str:
        """The loopback address ``member``'s region answers on (port 53), chosen at the first call."""
        if member not in self.addresses:
            self.addresses[member] = free_loopback_address()
        return self.addresses[member]

    def start(self, host_kubeconfig: Path, host: client.ApiClient, members: Mapping[str, client.ApiClient]) -> None:
        """The regions' CoreDNS Services in ``members``, the parent's DNS stack, the Domain and the clients'
        resolver; the regions' stacks are already running on their addresses."""
        for member, api in members.items():
            ensure_namespace(api, SYSTEM)
            create_load_balancer_service(api, SYSTEM, CORE_DNS, port=DNS_PORT)
            set_load_balancer_status(api, SYSTEM, CORE_DNS, ips=[self.nameserver_address(member)])  # the cloud's part
        self.parent = Region.parent("parent", self.parent_zone, host_kubeconfig, self.workdir / "parent").start()
        ensure_namespace(host, SYSTEM)
        nameservers = [{"name": f"ns-{member}", "member": member, "service": f"{SYSTEM}/{CORE_DNS}"}
                       for member in members]
        KubeClient(host).create(DOMAINS.path(SYSTEM), DOMAINS.manifest(DOMAIN, spec={
            "domain": self.zone, "delegation": {"ttl": DELEGATION_TTL, "nameservers": nameservers}}))
        # Clients only once the parent refers the zone to every region: a resolver asking before would cache the
        # parent's NXDOMAIN for the negative TTL (31 s seen on a loaded machine)
        wait_for(lambda: self._referred() == {f"ns-{member}.{self.zone}." for member in members}, REFERRAL_TIMEOUT,
                 f"the parent {self.parent_zone} referring {self.zone} to every region, with glue")
        self.add_resolver(CLIENTS)

    def _referred(self) -> set[str]:
        """The nameservers the parent refers the zone to, those with glue (none while it does not refer it)."""
        assert self.parent is not None and self.parent.coredns is not None
        try:
            response = dns.query.udp(dns.message.make_query(self.zone, "NS"), self.parent.coredns.host,
                                     port=self.parent.coredns.port, timeout=1)
        except (dns.exception.Timeout, OSError):
            return set()
        glued = {rrset.name.to_text() for rrset in response.additional if rrset.rdtype == dns.rdatatype.A}
        return {rr.to_text() for rrset in response.authority if rrset.rdtype == dns.rdatatype.NS
                for rr in rrset} & glued

    def add_resolver(self, name: str, *, outgoing: str = "", client_subnet: bool = False) -> Unbound:
        """Another resolver starting at the parent (Unbound's ``outgoing`` address and ``client_subnet``)."""
        if self.parent is None or self.parent.coredns is None:
            raise ValueError("the parent zone is not served yet: start the delegation first")
        if name in self.resolvers:
            raise ValueError(f"resolver {name!r} exists already")
        coredns = self.parent.coredns
        self.resolvers[name] = Unbound(self.workdir / f"unbound-{name}", self.parent_zone, (coredns.host, coredns.port),
                                       outgoing=outgoing, client_subnet=client_subnet).start()
        return self.resolvers[name]

    def stop(self) -> None:
        try:
            stop_together(resolver.stop for resolver in self.resolvers.values())
        finally:
            if self.parent is not None:
                self.parent.stop()
