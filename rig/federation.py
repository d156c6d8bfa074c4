"""The whole FleetDNS system on one machine: host + member clusters, a DNS stack per region, the aggregator.

`make demo`, the end-to-end test and the failover benchmark all start it the same way through this class.
"""

from __future__ import annotations

import time
from pathlib import Path

from kubernetes import client

from fleetdns.apipaths import DOMAINS, SERVICE_DNS_RECORDS
from rig.aggregator import AggregatorProcess
from rig.coredns import dns_answers
from rig.dataplane import DataPlane
from rig.fleet import Fleet
from rig.prober import ProberProcess
from rig.region import Region
from rig.workloads import (
    apply_crds,
    create_load_balancer_service,
    ensure_namespace,
    register_member,
    set_endpoints,
    set_load_balancer_status,
)

DEFAULT_ZONES = {"east": "east-1a", "west": "west-1a"}


class Federation:
    """Members double as regions: member ``east`` is in region ``east`` and has a DNS stack there.

    With ``prober_regions`` the data plane (rig/dataplane.py) comes up too: each member's VIPs with a
    stand-in ingress controller, and one prober per region in its own network namespace.
    """

    def __init__(self, workdir: Path, zone: str = "gslb.example.com", members: tuple[str, ...] = ("east", "west"),
                 grace_period: str = "5s", externaldns_sync: tuple[str, ...] = Region.DEFAULT_SYNC,
                 prober_regions: tuple[str, ...] = (), prober_args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.externaldns_sync = externaldns_sync
        self.zone = zone
        self.grace_period = grace_period
        self.fleet = Fleet(members, workdir / "clusters")
        self.regions: dict[str, Region] = {}
        self.aggregator: AggregatorProcess | None = None
        self.prober_regions = prober_regions
        self.prober_args = prober_args
        self.dataplane: DataPlane | None = None

    @property
    def host(self) -> client.ApiClient:
        return self.fleet.host.api_client()

    def start_clusters(self) -> list[str]:
        """API servers up and the CRDs applied; returns the CRD names."""
        self.fleet.start()
        return apply_crds(self.host)

    def start_region(self, name: str) -> Region:
        region = Region(name, self.zone, self.fleet.host.kubeconfig, self.workdir / "regions" / name,
                        sync=self.externaldns_sync).start()
        self.regions[name] = region
        return region

    def register_members(self) -> None:
        for name, member in self.fleet.members.items():
            register_member(self.host, name, region=name, zone=DEFAULT_ZONES.get(name, f"{name}-1a"),
                            kubeconfig=member.embedded_kubeconfig())

    def start_aggregator(self) -> AggregatorProcess:
        self.aggregator = AggregatorProcess(self.fleet.host.kubeconfig, [
            f"--member-grace-period={self.grace_period}", "--leader-election-namespace=fleetdns-system",
        ], self.workdir).start()
        return self.aggregator

    def start_dataplane(self) -> DataPlane:
        """Member VIPs with their stand-in ingress controllers, and the prober regions' namespaces."""
        host = self.fleet.host
        self.dataplane = DataPlane(self.workdir / "dataplane",
                                   {name: m.kubeconfig for name, m in self.fleet.members.items()},
                                   self.prober_regions, host_api=(host.host, host.port)).start()
        return self.dataplane

    def start_probers(self, args: tuple[str, ...] | None = None, timeout: float = 60) -> dict[str, ProberProcess]:
        """A prober per prober region (start-ups overlap); each ready after its first full round."""
        dataplane = self._dataplane()
        extra = self.prober_args if args is None else args
        started = [dataplane.start_prober(region, self.fleet.host.kubeconfig, extra, wait_ready=False)
                   for region in self.prober_regions]
        for prober in started:
            prober.wait_ready(timeout)
        return dataplane.probers

    @property
    def probers(self) -> dict[str, ProberProcess]:
        return self.dataplane.probers if self.dataplane is not None else {}

    def _dataplane(self) -> DataPlane:
        if self.dataplane is None:
            raise ValueError("no data plane: create the Federation with prober_regions and start_dataplane() first")
        return self.dataplane

    def start(self) -> Federation:
        """Everything at once (the demo starts the parts one by one to narrate them)."""
        self.start_clusters()
        if self.prober_regions:
            self.start_dataplane()
        for name in self.fleet.members:
            self.start_region(name)
        self.register_members()
        self.start_aggregator()
        if self.prober_regions:
            self.start_probers()
        return self

    def run_service(self, member: str, namespace: str, name: str, vip: str, endpoints: list[str]) -> None:
        """A LoadBalancer Service with its address published and ready endpoints, as the member's controllers do."""
        api = self.fleet.members[member].api_client()
        create_load_balancer_service(api, namespace, name)
        set_load_balancer_status(api, namespace, name, ips=[vip])
        set_endpoints(api, namespace, name, endpoints, ready=True)

    def vips(self, member: str) -> tuple[str, str]:
        """(IPv4, IPv6) VIP of ``member``'s load balancer in the data plane."""
        return self._dataplane().vips(member)

    def run_app(self, member: str, namespace: str, service: str, host: str, endpoints: list[str],
                ready: bool = True) -> tuple[str, str]:
        """A LoadBalancer Service whose status is ``member``'s VIPs (IPv4 and IPv6), its EndpointSlice, and
        ``host`` routed to it by the member's stand-in ingress controller; returns the VIPs once the stand-in
        answers 200 (``ready``) or 503."""
        dataplane = self._dataplane()
        vips = dataplane.vips(member)
        api = self.fleet.members[member].api_client()
        create_load_balancer_service(api, namespace, service)
        set_load_balancer_status(api, namespace, service, ips=list(vips))
        set_endpoints(api, namespace, service, endpoints, ready=ready)
        dataplane.register_app(member, host, namespace, service, expect_ready=ready)
        return vips

    def set_ready(self, member: str, namespace: str, name: str, endpoints: list[str], ready: bool) -> None:
        set_endpoints(self.fleet.members[member].api_client(), namespace, name, endpoints, ready=ready)

    def create_service_intent(self, namespace: str, name: str, domain_ref: str, ttl: int = 5,
                              dns_prefix: str | None = None, spec: dict | None = None,
                              create_domain: bool = True) -> None:
        """A Domain for the zone (unless ``create_domain`` is false: the namespace has it) and a ServiceDNSRecord
        for ``name``, as an application team writes them; ``spec`` adds fields (``healthCheck``, ``loadBalancing``)."""
        custom = client.CustomObjectsApi(self.host)
        ensure_namespace(self.host, namespace)
        if create_domain:
            domain = DOMAINS.manifest(domain_ref, spec={"domain": self.zone, "nameServer": f"ns1.{self.zone}"})
            custom.create_namespaced_custom_object(DOMAINS.group, DOMAINS.version, namespace, DOMAINS.plural, domain)
        spec_fields: dict = {"domainRef": domain_ref, "recordTTL": ttl}
        if dns_prefix:
            spec_fields["dnsPrefix"] = dns_prefix
        records = SERVICE_DNS_RECORDS
        custom.create_namespaced_custom_object(records.group, records.version, namespace, records.plural,
                                               records.manifest(name, spec={**spec_fields, **(spec or {})}))

    def answers(self, region: str, name: str, rdtype: str = "A") -> set[str]:
        coredns = self.regions[region].coredns
        assert coredns is not None
        return dns_answers(coredns.host, coredns.port, name, rdtype, timeout=1)

    def wait_for_answers(self, name: str, expected: set[str], timeout: float, rdtype: str = "A") -> float:
        """Seconds until every region answers ``name`` with exactly ``expected``; TimeoutError otherwise."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if all(self.answers(region, name, rdtype) == expected for region in self.regions):
                return time.monotonic() - started
            time.sleep(0.01)
        seen = {region: sorted(self.answers(region, name, rdtype)) for region in self.regions}
        raise TimeoutError(f"{name} should answer {sorted(expected)} within {timeout}s, got {seen}")

    def stop(self) -> None:
        if self.aggregator is not None:
            self.aggregator.stop()
        for region in self.regions.values():
            region.stop()
        try:
            if self.dataplane is not None:
                self.dataplane.stop()
        finally:
            self.fleet.stop()
