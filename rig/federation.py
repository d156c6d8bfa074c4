"""The whole FleetDNS system on one machine: host + member clusters, a DNS stack per region, the aggregator.

`make demo`, the end-to-end test and the failover benchmark all start it the same way through this class.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fleetdns.apipaths import DNS_VIEWS, DOMAINS, SERVICE_DNS_RECORDS
from fleetdns.dnsview import DNSView, parse_dns_view
from rig.aggregator import AggregatorProcess
from rig.dataplane import DataPlane
from rig.delegated import CLIENTS, Delegation
from rig.dnsclient import DNSClient, client_answers
from rig.fleet import Fleet
from rig.geoip import write_geoip_db
from rig.prober import ProberProcess
from rig.process import stop_together
from rig.region import Region
from rig.unbound import Unbound
from rig.waiting import wait_for
from rig.workloads import (
    apply_crds,
    create_load_balancer_service,
    deploy_app,
    ensure_namespace,
    ready_addresses,
    register_member,
    set_endpoints,
    set_load_balancer_status,
)
from serving.corefile import served_views

DEFAULT_ZONES = {"east": "east-1a", "west": "west-1a"}
# MemberCluster.spec.location of the usual members (GeoProximity's input): Frankfurt and New York.
DEFAULT_LOCATIONS = {"east": (50.1109, 8.6821), "west": (40.7128, -74.0060)}


class Federation:
    """Members double as regions: member ``east`` is in region ``east`` and has a DNS stack there.

    With ``prober_regions`` the data plane (rig/dataplane.py) comes up too: each member's VIPs with a
    stand-in ingress controller, and one prober per region in its own network namespace (``path_delays``:
    (region, member) -> extra round trip in seconds from the start).

    Each region's CoreDNS answers clients no DNSView matches with its region view (``region-<region>``);
    ``use_dns_views`` puts DNSViews on the host; every region's CoreDNS follows them live (a block each).
    ``locations``: member -> (latitude, longitude) for its MemberCluster (default ``DEFAULT_LOCATIONS``).
    ``gateway_api``: the members that serve the Gateway API (its real CRDs installed; rig/gatewayapi.py).
    ``host_relay``: each region's ExternalDNS reaches the host through its webhook's relay (False: directly).
    ``controllers``: the members that run their real controllers (rig/controllers.py), where ``run_deployment``
    runs an app as a Deployment whose EndpointSlices the EndpointSlice controller writes.
    ``aggregator_replicas``: the aggregator Deployment's replicas (one leads through the Lease; ``aggregators``),
    ``aggregator_args``: their flags beyond the grace period (e.g. a shorter Lease).
    ``host_cuts``: each region's DNS stack reaches the host through the data plane's relay for that region
    (``DataPlane.publisher_kubeconfig``), so ``DataPlane.cut_from_api`` cuts the whole region off the host, prober
    and publisher (every member must then be a prober region; default: the DNS stacks reach the host directly).
    ``delegated``: the zone is delegated from its parent, and clients ask real resolvers (rig/delegated.py): each
    region's CoreDNS answers on port 53 of its own loopback address only; ``resolver`` is what clients ask.
    """

    def __init__(self, workdir: Path, zone: str = "gslb.example.com", members: tuple[str, ...] = ("east", "west"),
                 grace_period: str = "5s", externaldns_sync: tuple[str, ...] = Region.DEFAULT_SYNC,
                 prober_regions: tuple[str, ...] = (), prober_args: tuple[str, ...] = (),
                 locations: Mapping[str, tuple[float, float]] | None = None,
                 path_delays: Mapping[tuple[str, str], float] | None = None,
                 gateway_api: tuple[str, ...] = (), host_relay: bool = True,
                 controllers: tuple[str, ...] = (), aggregator_replicas: int = 1,
                 aggregator_args: tuple[str, ...] = (), host_cuts: bool = False, delegated: bool = False) -> None:
        if host_cuts and not set(members) <= set(prober_regions):
            raise ValueError(f"host_cuts: every member's region needs a path in the data plane; members "
                             f"{', '.join(members)}, prober regions {', '.join(prober_regions) or 'none'}")
        self.workdir = workdir
        self.host_cuts = host_cuts
        self.host_relay = host_relay
        self.externaldns_sync = externaldns_sync
        self.zone = zone
        self.grace_period = grace_period
        self.fleet = Fleet(members, workdir / "clusters", gateway_api=gateway_api, controllers=controllers)
        self.regions: dict[str, Region] = {}
        self.aggregator: AggregatorProcess | None = None  # the first replica
        self.aggregators: list[AggregatorProcess] = []
        self.aggregator_replicas = aggregator_replicas
        self.aggregator_args = aggregator_args
        self.prober_regions = prober_regions
        self.prober_args = prober_args
        self.dataplane: DataPlane | None = None
        self.path_delays = dict(path_delays or {})
        self.locations = dict(DEFAULT_LOCATIONS if locations is None else locations)
        self.served_views: tuple[DNSView, ...] = ()  # what every region's CoreDNS has a block for
        self.geoip_db: Path | None = None  # the regions' MaxMind database (rig/geoip.py), written at the first region
        self.delegation = Delegation(workdir / "delegation", zone) if delegated else None

    @property
    def host(self) -> client.ApiClient:
        return self.fleet.host.api_client()

    def start_clusters(self) -> list[str]:
        """API servers up and the CRDs applied; returns the CRD names."""
        self.fleet.start()
        return apply_crds(self.host)

    def start_region(self, name: str) -> Region:
        if self.geoip_db is None:  # the sidecars' --geoip-db, as the chart mounts the operator's database
            self.geoip_db = write_geoip_db(self.workdir / "geoip.mmdb")
        host_kubeconfig = self.fleet.host.kubeconfig
        if self.host_cuts:
            host_kubeconfig = self._dataplane().publisher_kubeconfig(name, host_kubeconfig)
        region = Region(name, self.zone, host_kubeconfig, self.workdir / "regions" / name,
                        sync=self.externaldns_sync, views=self.served_views, geoip_db=self.geoip_db,
                        host_relay=self.host_relay,
                        nameserver_address=self.delegation.nameserver_address(name) if self.delegation else "").start()
        self.regions[name] = region
        return region

    def register_members(self) -> None:
        for name, member in self.fleet.members.items():
            register_member(self.host, name, region=name, zone=DEFAULT_ZONES.get(name, f"{name}-1a"),
                            kubeconfig=member.embedded_kubeconfig(), location=self.locations.get(name))

    def start_aggregator(self) -> AggregatorProcess:
        """Every replica, each ready (leading or standing by); returns the first. Replicas after the first are named
        ``aggregator-<n>``: the pod name is the identity in the Lease."""
        args = [f"--member-grace-period={self.grace_period}", "--leader-election-namespace=fleetdns-system",
                *self.aggregator_args]
        for index in range(len(self.aggregators), self.aggregator_replicas):
            name = f"aggregator-{index}" if index else "aggregator"
            self.aggregators.append(AggregatorProcess(self.fleet.host.kubeconfig, args, self.workdir,
                                                      name=name).start())
        self.aggregator = self.aggregators[0]
        return self.aggregator

    def leading_aggregator(self, timeout: float = 30) -> AggregatorProcess:
        """The replica that holds the Lease now (waiting for one to)."""
        return wait_for(lambda: next((a for a in self.aggregators if a.leading()), None), timeout,
                        "an aggregator replica leading")

    def start_delegation(self) -> Delegation:
        """The parent zone's DNS stack, the Domain delegating the zone to the regions, and the clients' resolver
        (after the regions and the aggregator: the aggregator publishes the delegation)."""
        if self.delegation is None:
            raise ValueError("not delegated: create the Federation with delegated=True")
        self.delegation.start(self.fleet.host.kubeconfig, self.host,
                              {name: self.fleet.members[name].api_client() for name in self.regions})
        return self.delegation

    @property
    def resolver(self) -> Unbound:
        """The resolver clients ask (``delegated``)."""
        if self.delegation is None or CLIENTS not in self.delegation.resolvers:
            raise ValueError("no resolver: create the Federation with delegated=True and start it")
        return self.delegation.resolvers[CLIENTS]

    def start_dataplane(self) -> DataPlane:
        """Member VIPs with their stand-in ingress controllers, and the prober regions' namespaces."""
        host = self.fleet.host
        self.dataplane = DataPlane(self.workdir / "dataplane",
                                   {name: m.kubeconfig for name, m in self.fleet.members.items()},
                                   self.prober_regions, host_api=(host.host, host.port),
                                   path_delays=self.path_delays).start()
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
        if self.delegation is not None:
            self.start_delegation()
        if self.prober_regions:
            self.start_probers()
        return self

    def run_service(self, member: str, namespace: str, name: str, vip: str, endpoints: list[str]) -> None:
        """A LoadBalancer Service with its address published and ready endpoints, as the member's controllers do."""
        api = self.fleet.members[member].api_client()
        create_load_balancer_service(api, namespace, name)
        set_load_balancer_status(api, namespace, name, ips=[vip])
        set_endpoints(api, namespace, name, endpoints, ready=True)

    def run_deployment(self, member: str, namespace: str, name: str, vip: str, replicas: int = 2,
                       timeout: float = 60) -> set[str]:
        """A Deployment behind a LoadBalancer Service in a member running its controllers, applied with kubectl;
        the Service's address published as a cloud's controller would. Returns the pods' addresses once the
        EndpointSlice controller lists ``replicas`` ready endpoints."""
        if member not in self.fleet.controlled:
            raise ValueError(f"member {member} runs no controllers (Federation's controllers= names it)")
        server = self.fleet.members[member]
        ensure_namespace(server.api_client(), namespace)
        deploy_app(server, namespace, name, replicas, service_type="LoadBalancer")
        set_load_balancer_status(server.api_client(), namespace, name, ips=[vip])
        return wait_for(lambda: (ready := ready_addresses(server, namespace, name)) and len(ready) == replicas
                        and ready, timeout, what=f"{replicas} ready endpoints of {namespace}/{name} in {member}")

    def vips(self, member: str) -> tuple[str, str]:
        """(IPv4, IPv6) VIP of ``member``'s load balancer in the data plane."""
        return self._dataplane().vips(member)

    def run_app(self, member: str, namespace: str, service: str, host: str, endpoints: list[str],
                ready: bool = True, header: tuple[str, str] | None = None) -> tuple[str, str]:
        """A LoadBalancer Service whose status is ``member``'s VIPs (IPv4 and IPv6), its EndpointSlice, and
        ``host`` routed to it by the member's stand-in ingress controller; returns the VIPs once the stand-in
        answers 200 (``ready``) or 503. ``header``: (name, value) the app requires of every request (else 401)."""
        dataplane = self._dataplane()
        vips = dataplane.vips(member)
        api = self.fleet.members[member].api_client()
        create_load_balancer_service(api, namespace, service)
        set_load_balancer_status(api, namespace, service, ips=list(vips))
        set_endpoints(api, namespace, service, endpoints, ready=ready)
        dataplane.register_app(member, host, namespace, service, expect_ready=ready, header=header)
        return vips

    def service_name(self, namespace: str, service: str, domain_ref: str) -> str:
        """The global name KubeFed's layout gives a Service (``<service>.<namespace>.<domainRef>.svc.<zone>``)."""
        return f"{service}.{namespace}.{domain_ref}.svc.{self.zone}"

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

    # client views ------------------------------------------------------------------
    def use_dns_views(self, specs: Mapping[str, dict[str, Any]], timeout: float = 30) -> tuple[str, ...]:
        """Make the host hold exactly these DNSViews (name -> spec; created, replaced or deleted), as an operator
        applies them, and wait until every region's CoreDNS runs a block for each accepted one (nothing restarts:
        the regions follow the host live, docs/design/views.md §7). Returns the served views' names, in block
        order."""
        custom = client.CustomObjectsApi(self.host)
        listed: dict[str, Any] = custom.list_cluster_custom_object(DNS_VIEWS.group, DNS_VIEWS.version,
                                                                    DNS_VIEWS.plural)  # type: ignore[assignment]
        current = {item["metadata"]["name"]: item for item in listed.get("items") or []}
        for name in sorted(set(current) - set(specs)):
            self.delete_dns_view(name)
        for name, spec in specs.items():
            if name not in current:
                self.create_dns_view(name, spec)
            elif current[name].get("spec") != spec:
                body = DNS_VIEWS.manifest(name, spec=spec)
                body["metadata"]["resourceVersion"] = current[name]["metadata"]["resourceVersion"]
                custom.replace_cluster_custom_object(DNS_VIEWS.group, DNS_VIEWS.version, DNS_VIEWS.plural, name, body)
        accepted, _ = served_views(parse_dns_view(DNS_VIEWS.manifest(name, spec=spec)) for name, spec in specs.items())
        for region in self.regions.values():
            region.serve_views(accepted, timeout)
        self.served_views = accepted
        return tuple(view.name for view in accepted)

    def create_dns_view(self, name: str, spec: dict[str, Any]) -> None:
        """A DNSView on the host, as a platform team writes one (every region's CoreDNS serves it seconds later)."""
        client.CustomObjectsApi(self.host).create_cluster_custom_object(
            DNS_VIEWS.group, DNS_VIEWS.version, DNS_VIEWS.plural, DNS_VIEWS.manifest(name, spec=spec))

    def delete_dns_view(self, name: str) -> None:
        try:
            client.CustomObjectsApi(self.host).delete_cluster_custom_object(
                DNS_VIEWS.group, DNS_VIEWS.version, DNS_VIEWS.plural, name)
        except ApiException as error:
            if error.status != 404:
                raise

    def metrics_targets(self) -> dict[str, list[str]]:
        """Every running component's ``/metrics`` URL, by component (what a Prometheus of the rig scrapes and the
        dashboard and alert rules are checked against): aggregator, prober, webhook, external-dns, zonefiles,
        coredns."""
        targets: dict[str, list[str]] = {"aggregator": [f"http://127.0.0.1:{a.port}/metrics" for a in self.aggregators],
                                         "prober": [f"{p.url}/metrics" for p in self.probers.values()]}
        for region in self.regions.values():
            if region.webhook is not None and region.webhook.client.health_url:
                targets.setdefault("webhook", []).append(f"{region.webhook.client.health_url}/metrics")
            if region.externaldns is not None:
                targets.setdefault("external-dns", []).append(
                    f"http://127.0.0.1:{region.externaldns.metrics_port}/metrics")
            if region.coredns is not None:
                targets.setdefault("zonefiles", []).append(f"{region.coredns.sidecar.health_url}/metrics")
                metrics_address = (region.coredns.env or {})["FLEETDNS_METRICS_ADDR"]  # the chart's environment
                targets.setdefault("coredns", []).append(f"http://{metrics_address}/metrics")
        return targets

    # answers -------------------------------------------------------------------------
    def answers(self, region: str, name: str, rdtype: str = "A", asker: DNSClient | None = None) -> set[str]:
        """What ``region``'s CoreDNS answers ``asker`` (default: 127.0.0.1 without ECS, its region view)."""
        coredns = self.regions[region].coredns
        assert coredns is not None
        return client_answers(coredns.host, coredns.port, name, rdtype, asker or DNSClient(), timeout=1)

    def wait_for_answers(self, name: str, expected: set[str] | Mapping[str, set[str]], timeout: float,
                         rdtype: str = "A", asker: DNSClient | None = None) -> float:
        """Seconds until every region answers ``name`` with exactly ``expected`` (or, given a mapping, each listed
        region with its own set) for ``asker``; TimeoutError otherwise."""
        wanted = dict(expected) if isinstance(expected, Mapping) else dict.fromkeys(self.regions, expected)
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if all(self._answers_or_none(region, name, rdtype, asker) == answer for region, answer in wanted.items()):
                return time.monotonic() - started
            time.sleep(0.01)
        seen = {region: sorted(self._answers_or_none(region, name, rdtype, asker) or ["(no reply)"])
                for region in wanted}
        raise TimeoutError(f"{name} should answer {rdtype} {({r: sorted(a) for r, a in wanted.items()})} to "
                           f"{asker or DNSClient()} within {timeout}s, got {seen}")

    def wait_for_client_answer(self, name: str, expected: set[str], timeout: float, rdtype: str = "A",
                               asker: DNSClient | None = None, resolver: Unbound | None = None) -> float:
        """Seconds until a client behind ``resolver`` (default: ``resolver``) gets exactly ``expected`` for
        ``name``: the regions' answer plus what the resolver still holds in its cache (the record's TTL)."""
        resolver = resolver or self.resolver
        started = time.monotonic()
        wait_for(lambda: resolver.resolve(name, rdtype, asker=asker, timeout=1)[0] == expected, timeout,
                 f"a client {asker or DNSClient()} behind {resolver.name} getting {rdtype} {sorted(expected)} for "
                 f"{name}", interval=0.05)
        return time.monotonic() - started

    def _answers_or_none(self, region: str, name: str, rdtype: str, asker: DNSClient | None) -> set[str] | None:
        try:
            return self.answers(region, name, rdtype, asker)
        except (dns.exception.Timeout, OSError):  # a CoreDNS being replaced (use_dns_views) answers a moment later
            return None

    def stop(self) -> None:
        """Aggregator, regions and data plane at once, then the clusters they talked to."""
        try:
            stop_together([
                *(aggregator.stop for aggregator in self.aggregators),
                *(region.stop for region in self.regions.values()),
                *([self.delegation.stop] if self.delegation is not None else []),
                *([self.dataplane.stop] if self.dataplane is not None else []),
            ])
        finally:
            self.fleet.stop()
