"""The whole chain's tests (tests/e2e/): what every test on a Federation sets up the same way."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

import pytest

from fleetdns.apipaths import DOMAINS, SERVICE_DNS_RECORDS
from fleetdns.kubeapi import KubeClient
from rig.coredns import ZoneFilesSidecar
from rig.federation import Federation
from rig.process import ManagedProcess
from rig.workloads import ensure_namespace
from tests.support.aggregator import DOMAIN_REF

ENDPOINTS = ["10.1.0.1"]  # every app's one ready endpoint (the stand-in ingress routes to the VIP, not to it)


def federation_namespace(fed: Federation, host: KubeClient, prefix: str) -> str:
    """A fresh namespace (``prefix``) on every API server of the federation, with the Domain ``fleet`` for its zone."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    for server in fed.fleet.servers:
        ensure_namespace(server.api_client(), name)
    host.create(DOMAINS.path(name), DOMAINS.manifest(DOMAIN_REF, spec={"domain": fed.zone}))
    return name


PROBER_REGIONS = ("east", "west", "north")


def running_federation(tmp_path_factory: pytest.TempPathFactory, name: str, **options: Any) -> Iterator[Federation]:
    """A federation with probers in three regions' network namespaces, for one module; stopped even when it fails.
    ``options``: more of Federation's (e.g. ``aggregator_replicas``)."""
    federation = Federation(tmp_path_factory.mktemp(name), prober_regions=PROBER_REGIONS, **options)
    try:
        federation.start()
        yield federation
    finally:
        federation.stop()


def service_name(fed: Federation, ns: str, service: str) -> str:
    """The global name of ``service`` under the Domain ``fleet``."""
    return fed.service_name(ns, service, DOMAIN_REF)


def http_check(port: int = 80, *, host: str = "", path: str = "/healthz", scheme: str = "HTTP", period: int = 1,
               failures: int = 1, successes: int = 1, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An intent's ``spec.healthCheck`` (the Probe shape) with an HTTP GET (``headers``: its httpHeaders)."""
    http: dict[str, Any] = {"port": port, "path": path, "scheme": scheme}
    if host:
        http["host"] = host
    if headers:
        http["httpHeaders"] = [{"name": name, "value": value} for name, value in headers.items()]
    return {"httpGet": http, "periodSeconds": period, "timeoutSeconds": 1, "failureThreshold": failures,
            "successThreshold": successes}


def checked_app(fed: Federation, host: KubeClient, ns: str, service: str,
                **spec: Any) -> tuple[str, dict[str, tuple[str, str]]]:
    """An app in every member behind its VIP and its intent with an HTTP check (``spec``: more intent fields);
    returns its global name and VIPs once every prober region has checked it."""
    name = service_name(fed, ns, service)
    vips = run_everywhere(fed, ns, service, name)
    create_intent(host, ns, service, healthCheck=http_check(), **spec)
    assert fed.dataplane is not None
    fed.dataplane.wait_checked(name, timeout=60)
    return name, vips


def create_intent(host: KubeClient, ns: str, service: str, **spec: Any) -> None:
    """A ServiceDNSRecord for ``service`` under the Domain ``fleet``, TTL 5 s, with ``spec``'s fields."""
    host.create(SERVICE_DNS_RECORDS.path(ns),
                SERVICE_DNS_RECORDS.manifest(service, spec={"domainRef": DOMAIN_REF, "recordTTL": 5, **spec}))


def run_everywhere(fed: Federation, ns: str, service: str, host_header: str) -> dict[str, tuple[str, str]]:
    """The app's Service in every member behind the member's VIP; returns {member: (v4, v6)}."""
    return {member: fed.run_app(member, ns, service, host_header, ENDPOINTS) for member in fed.fleet.members}


def start_ready(sidecar: ZoneFilesSidecar) -> None:
    sidecar.start().wait_ready()


def chain_processes(fed: Federation) -> Iterator[tuple[str, ManagedProcess | None, Callable[[], object]]]:
    """Every process of the chain: its name, the process, and how it starts again in place (as the kubelet starts a
    container): each region's webhook, ExternalDNS, zone-file sidecar and CoreDNS, every aggregator replica, every
    prober."""
    for name, region in fed.regions.items():
        assert region.webhook is not None and region.externaldns is not None and region.coredns is not None
        sidecar = region.coredns.sidecar
        yield f"webhook {name}", region.webhook.process, region.webhook.start
        yield f"externaldns {name}", region.externaldns.process, region.externaldns.start
        yield f"zonefiles {name}", sidecar.process, partial(start_ready, sidecar)
        yield f"coredns {name}", region.coredns.process, region.coredns.start
    for replica in fed.aggregators:
        yield replica.name, replica.process, replica.start
    for prober in fed.probers.values():
        yield prober.name, prober.process, prober.start
