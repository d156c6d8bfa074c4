"""The global zone delegated from its parent, with clients behind a real resolver: a Federation whose regions' CoreDNS
also answer on port 53 of their own loopback address (what the glue names), the parent zone served by its own
DNS stack (CoreDNS, zone files, etcd, its own ExternalDNS and webhook reading only the delegation), a Domain with
``spec.delegation`` on the host, and Unbound starting at the parent (rig/unbound.py)."""

from __future__ import annotations

from pathlib import Path

from fleetdns.apipaths import DOMAINS
from fleetdns.kubeapi import KubeClient
from rig.aggregator import client_for
from rig.federation import Federation
from rig.ports import DNS_PORT, free_loopback_address
from rig.region import Region
from rig.unbound import Unbound
from rig.workloads import create_load_balancer_service, ensure_namespace, set_load_balancer_status

PARENT = "example.com"
ZONE = "gslb.example.com"
SYSTEM = "fleetdns-system"
CORE_DNS = "fleetdns-coredns"  # the regions' CoreDNS Service, as the chart names it
DOMAIN = "gslb"
DELEGATION_TTL = 60


class DelegatedFederation:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.fed = Federation(workdir, zone=ZONE)
        self.parent: Region | None = None
        self.resolver: Unbound | None = None
        self.addresses: dict[str, str] = {}  # member -> the address its CoreDNS answers on (port 53)

    @property
    def host(self) -> KubeClient:
        return client_for(self.fed.fleet.host)

    def start(self) -> DelegatedFederation:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        fed = self.fed
        fed.start_clusters()
        self.addresses = {member: free_loopback_address() for member in fed.fleet.members}
        for member, address in self.addresses.items():
            fed.regions[member] = Region(member, ZONE, fed.fleet.host.kubeconfig, self.workdir / "regions" / member,
                                         nameserver_address=address).start()
            api = fed.fleet.members[member].api_client()
            ensure_namespace(api, SYSTEM)
            create_load_balancer_service(api, SYSTEM, CORE_DNS, port=DNS_PORT)
            set_load_balancer_status(api, SYSTEM, CORE_DNS, ips=[address])  # as the cloud's controller would
        self.parent = Region.parent("parent", PARENT, fed.fleet.host.kubeconfig,
                                    self.workdir / "regions" / "parent").start()
        fed.register_members()
        fed.start_aggregator()
        assert self.parent.coredns is not None
        self.resolver = Unbound(self.workdir / "unbound", PARENT,
                                (self.parent.coredns.host, self.parent.coredns.port)).start()
        ensure_namespace(fed.host, SYSTEM)
        self.host.create(DOMAINS.path(SYSTEM), DOMAINS.manifest(DOMAIN, spec={"domain": ZONE, "delegation": {
            "ttl": DELEGATION_TTL, "nameservers": [{"name": f"ns-{member}", "member": member,
                                                   "service": f"{SYSTEM}/{CORE_DNS}"} for member in self.addresses]}}))

    def stop(self) -> None:
        if self.resolver is not None:
            self.resolver.stop()
        if self.parent is not None:
            self.parent.stop()
        self.fed.stop()
