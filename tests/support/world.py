"""Worlds the aggregator's integration tests run in: a module's namespace on the session fleet with the
aggregator process watching it (``FleetWorld``), or one reconciler on in-memory caches writing to the
session host (``ReconcilerScene``). A module's own World subclasses FleetWorld with what its tests add."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from aggregator.controller.events import EventRecorder
from aggregator.controller.reconciler import Reconciler
from aggregator.metrics import AggregatorMetrics
from aggregator.model import Domain, IntentKey, MemberCluster, SecretKeyRef, parse_dns_endpoint
from aggregator.sources.service import parse_service_intent
from fleetdns.apipaths import NAMESPACES, SERVICE_DNS_RECORDS, Resource
from fleetdns.healthreport import DownEntry
from fleetdns.kubeapi import KubeClient
from rig import Fleet
from rig.aggregator import AggregatorProcess, client_for
from rig.scrape import scrape
from tests.support.aggregator import (
    VIPS,
    create_domain,
    create_service_intent,
    dns_endpoint,
    global_name,
    new_namespace,
    prepare_fleet,
    unique,
    wait_for,
)
from tests.support.fakes import Caches, Member
from tests.support.probers import Probers, down_entry


@dataclass
class FleetWorld:
    """A module's world: the session fleet, the host, the module's own namespace and the aggregator watching it."""

    fleet: Fleet
    host: KubeClient
    ns: str
    aggregator: AggregatorProcess
    intents: ClassVar[Resource] = SERVICE_DNS_RECORDS  # the intent kind ``status`` and ``entry`` read

    def member(self, cluster: str) -> KubeClient:
        return client_for(self.fleet.members[cluster])

    def api(self, cluster: str) -> Any:
        return self.fleet.members[cluster].api_client()

    def global_name(self, service: str) -> str:
        return global_name(self.ns, service)

    def names(self, service: str) -> dict[str, str]:
        """The KubeFed names of a Service: global, per region (east, west) and per zone (east-1a, west-1a)."""
        p = global_name(self.ns, service).removesuffix(".example.com")
        return {"global": f"{p}.example.com", "east": f"{p}.east.example.com", "west": f"{p}.west.example.com",
                "east-1a": f"{p}.east-1a.east.example.com", "west-1a": f"{p}.west-1a.west.example.com"}

    def get(self, resource: Resource, name: str) -> dict[str, Any] | None:
        """The object in the module's namespace on the host, None while there is none."""
        return self.host.get_if_exists(resource.path(self.ns, name))

    def wait_object(self, resource: Resource, name: str, check: Callable[[dict[str, Any]], Any] = lambda obj: True,
                    timeout: float = 20.0, what: str = "") -> dict[str, Any]:
        """The object once it exists and ``check`` holds for it."""
        def found() -> dict[str, Any] | None:
            obj = self.get(resource, name)
            return obj if obj is not None and check(obj) else None
        return wait_for(found, timeout, what=what or f"{resource.kind} {self.ns}/{name}")

    def status(self, name: str) -> dict[str, Any]:
        return self.host.get(self.intents.path(self.ns, name)).get("status") or {}

    def entry(self, name: str, cluster: str) -> dict[str, Any] | None:
        """The intent's status entry for ``cluster`` (None: not listed)."""
        return next((d for d in self.status(name).get("dns") or [] if d["cluster"] == cluster), None)

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of the aggregator's /metrics, by its exact labels."""
        key = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        return scrape(f"http://127.0.0.1:{self.aggregator.port}/metrics").get(key)

    def down(self, service: str, cluster: str, message: str = "HTTP 500") -> DownEntry:
        """What a region's prober reports when the service's check fails on the cluster's VIP."""
        return down_entry("ServiceDNSRecord", service, self.global_name(service), VIPS[cluster], message)


def module_namespace(fleet: Fleet, prefix: str) -> tuple[KubeClient, str]:
    """The prepared host and a fresh namespace (``prefix``) on every server, with the Domain ``fleet``."""
    host = prepare_fleet(fleet)
    namespace = new_namespace(fleet, prefix)
    create_domain(host, namespace)
    return host, namespace


@contextlib.contextmanager
def running_aggregator(kubeconfig: Path, namespace: str, workdir: Path, *flags: str, name: str = "aggregator",
                       leader_election: bool = True) -> Iterator[AggregatorProcess]:
    """The aggregator watching ``namespace`` (text logs, its own Lease unless ``leader_election`` is off, then
    ``flags``, where ``{namespace}`` names it), still running when the module is done."""
    election = f"--lease-name={namespace}" if leader_election else "--leader-election=false"
    aggregator = AggregatorProcess(kubeconfig, [
        f"--namespace={namespace}", election, "--log-format=text",
        *(flag.format(namespace=namespace) for flag in flags)], workdir, name=name)
    with aggregator:
        yield aggregator
        assert aggregator.process is not None and aggregator.process.running, aggregator.log()[-3000:]


@contextlib.contextmanager
def fleet_world(fleet: Fleet, workdir: Path, prefix: str, *flags: str) -> Iterator[FleetWorld]:
    """One aggregator for a module: a fresh namespace (``prefix``) with the Domain ``fleet`` and the aggregator
    watching it (see ``running_aggregator`` for ``flags``)."""
    host, namespace = module_namespace(fleet, prefix)
    with running_aggregator(fleet.host.kubeconfig, namespace, workdir, *flags) as aggregator:
        yield FleetWorld(fleet, host, namespace, aggregator)


@dataclass
class ProberWorld(FleetWorld):
    """A FleetWorld whose aggregator counts the Leases of stand-in probers (tests/support/probers.py) in a namespace
    of its own, ``lease_ns``: voters are fleet-wide, so a module's regions must not meet another module's."""

    lease_ns: str


@contextlib.contextmanager
def prober_world(fleet: Fleet, workdir: Path, prefix: str, *flags: str,
                 world: type[ProberWorld] = ProberWorld) -> Iterator[Any]:
    """``fleet_world`` with the probers' Lease namespace (a ``world``, subclass of ProberWorld, is yielded)."""
    host, namespace = module_namespace(fleet, prefix)
    lease_namespace = unique("agg-probers")
    host.create(NAMESPACES.path(), NAMESPACES.manifest(lease_namespace))
    with running_aggregator(fleet.host.kubeconfig, namespace, workdir, *flags,
                            f"--prober-lease-namespace={lease_namespace}") as aggregator:
        yield world(fleet, host, namespace, aggregator, lease_namespace)


@contextlib.contextmanager
def three_regions(world: ProberWorld) -> Iterator[Probers]:
    """Three fresh stand-in regions for one test; their Leases are deleted afterwards."""
    suffix = unique("")[1:]
    started = Probers(world.host, world.lease_ns, world.ns, tuple(f"{r}{suffix}" for r in ("a", "b", "c"))).start()
    try:
        yield started
    finally:
        started.close()


class ReconcilerScene:
    """One reconciler: its reads from in-memory caches (members east and west), its writes to the session host."""

    def __init__(self, fleet: Fleet) -> None:
        self.host: KubeClient = prepare_fleet(fleet)
        self.ns = new_namespace(fleet, "agg-reconciler")
        self.east, self.west = (Member(MemberCluster(name, name, f"{name}-1a", SecretKeyRef("fleetdns-system", name)))
                                for name in ("east", "west"))
        self.caches = Caches(member_list=[self.east, self.west])
        self.caches.domains[(self.ns, "fleet")] = Domain(self.ns, "fleet", "example.com")
        self.metrics = AggregatorMetrics()
        self.events = EventRecorder(self.host, self.metrics, "test-reconciler").start()  # posts in the background
        self.reconciler = Reconciler(self.caches, self.host, self.metrics, "test-reconciler", "fleetdns-system",
                                     events=self.events)

    def global_name(self, name: str) -> str:
        return global_name(self.ns, name)

    def intent(self, name: str, **spec: Any) -> IntentKey:
        """A ServiceDNSRecord created in the API server and in the cache, served by both members."""
        parsed = parse_service_intent(create_service_intent(self.host, self.ns, name, **spec))
        self.caches.intents[parsed.key] = parsed
        self.east.serve(self.ns, name, "192.0.2.10")
        self.west.serve(self.ns, name, "198.51.100.20")
        return parsed.key

    def watch_catches_up(self, key: IntentKey) -> None:
        """What the DNSEndpoint watch would deliver: the API server's object into the cache."""
        obj = dns_endpoint(self.host, self.ns, f"service-{key.name}")
        if obj is None:
            self.caches.endpoints.pop((self.ns, f"service-{key.name}"), None)
            self.reconciler.dns_endpoint_observed(key, None)
        else:
            parsed = parse_dns_endpoint(obj)
            self.caches.endpoints[(self.ns, parsed.name)] = parsed
            self.reconciler.dns_endpoint_observed(key, parsed)

    def written(self, operation: str) -> float:
        return self.metrics.registry.get_sample_value("fleetdns_aggregator_dnsendpoint_writes_total",
                                                      {"operation": operation}) or 0.0

    def status_writes(self) -> float:
        return self.metrics.registry.get_sample_value("fleetdns_aggregator_status_writes_total",
                                                      {"kind": "ServiceDNSRecord"}) or 0.0
