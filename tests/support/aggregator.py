"""Shared set-up for the aggregator tests (no tests here): CRDs and members on the session fleet,
intents and member workloads created the way users and controllers create them."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from fleetdns.apipaths import DNS_ENDPOINTS, DOMAINS, EVENTS, HTTP_ROUTES, INGRESS_DNS_RECORDS, SERVICE_DNS_RECORDS
from fleetdns.kubeapi import KubeClient, KubeError
from rig import Fleet
from rig.aggregator import AggregatorProcess, client_for
from rig.gatewayapi import create_gateway, create_route, set_gateway_addresses, set_route_parents
from rig.scrape import scrape
from rig.waiting import wait_for
from rig.workloads import (
    apply_crds,
    create_load_balancer_service,
    ensure_namespace,
    register_member,
    set_endpoints,
    set_load_balancer_status,
)

_INTENTS = {r.plural: r for r in (SERVICE_DNS_RECORDS, INGRESS_DNS_RECORDS)}
REGIONS = {"east": ("east", "east-1a"), "west": ("west", "west-1a")}
VIPS = {"east": "192.0.2.10", "west": "198.51.100.20"}
DOMAIN = "example.com"
DOMAIN_REF = "fleet"

_prepared: set[int] = set()


def prepare_fleet(fleet: Fleet) -> KubeClient:
    """CRDs and the east/west MemberClusters on the session host, once per session."""
    host_api = fleet.host.api_client()
    if id(fleet) not in _prepared:
        apply_crds(host_api)
        for name, member in fleet.members.items():
            region, zone = REGIONS[name]
            try:
                register_member(host_api, name, region, zone, member.embedded_kubeconfig())
            except ApiException as error:
                if error.status != 409:
                    raise
        _prepared.add(id(fleet))
    return client_for(fleet.host)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def new_namespace(fleet: Fleet, prefix: str) -> str:
    name = unique(prefix)
    for server in fleet.servers:
        ensure_namespace(server.api_client(), name)
    return name


class FleetWorld:
    """A module's world: the session fleet, the host, the module's own namespace and the aggregator watching it."""

    def __init__(self, fleet: Fleet, host: KubeClient, namespace: str, aggregator: AggregatorProcess) -> None:
        self.fleet, self.host, self.ns, self.aggregator = fleet, host, namespace, aggregator

    def member(self, cluster: str) -> KubeClient:
        return client_for(self.fleet.members[cluster])

    def api(self, cluster: str) -> Any:
        return self.fleet.members[cluster].api_client()

    def global_name(self, service: str) -> str:
        return f"{service}.{self.ns}.{DOMAIN_REF}.svc.{DOMAIN}"


@contextlib.contextmanager
def fleet_world(fleet: Fleet, workdir: Path, prefix: str, *flags: str) -> Iterator[FleetWorld]:
    """One aggregator for a module: a fresh namespace (``prefix``) with the Domain ``fleet``, the aggregator watching
    it (its own Lease, text logs, and ``flags``, where ``{namespace}`` names it), still running when the module is
    done."""
    host = prepare_fleet(fleet)
    namespace = new_namespace(fleet, prefix)
    create_domain(host, namespace)
    aggregator = AggregatorProcess(fleet.host.kubeconfig, [
        f"--namespace={namespace}", f"--lease-name={namespace}", "--log-format=text",
        *(flag.format(namespace=namespace) for flag in flags)], workdir)
    with aggregator:
        yield FleetWorld(fleet, host, namespace, aggregator)
        assert aggregator.process is not None and aggregator.process.running, aggregator.log()[-3000:]


def create_domain(host: KubeClient, namespace: str, name: str = DOMAIN_REF, domain: str = DOMAIN) -> None:
    host.create(DOMAINS.path(namespace), DOMAINS.manifest(name, spec={"domain": domain, "nameServer": f"ns1.{domain}"}))


def create_service_intent(host: KubeClient, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return host.create(SERVICE_DNS_RECORDS.path(namespace),
                       SERVICE_DNS_RECORDS.manifest(name, spec={"domainRef": DOMAIN_REF, **spec}))


def create_ingress_intent(host: KubeClient, namespace: str, name: str, hosts: list[str], **spec: Any) -> None:
    host.create(INGRESS_DNS_RECORDS.path(namespace), INGRESS_DNS_RECORDS.manifest(name, spec={"hosts": hosts, **spec}))


def deploy_service(fleet: Fleet, namespace: str, name: str, clusters: dict[str, dict[str, Any]]) -> None:
    """Per cluster: {"ip": ..., "hostname": ..., "ready": bool or None (no EndpointSlice)}."""
    for cluster, how in clusters.items():
        api = fleet.members[cluster].api_client()
        create_load_balancer_service(api, namespace, name)
        ips = [how["ip"]] if how.get("ip") else []
        hostnames = [how["hostname"]] if how.get("hostname") else []
        if ips or hostnames:
            set_load_balancer_status(api, namespace, name, ips=ips, hostnames=hostnames)
        if how.get("ready") is not None:
            set_endpoints(api, namespace, name, ["10.1.0.1", "10.1.0.2"], ready=how["ready"])


def accepted_http_route(fleet: Fleet, cluster: str, namespace: str, name: str, hostname: str) -> None:
    """HTTPRoute ``name`` for ``hostname`` in a member serving the Gateway API, through its own Gateway (one HTTP
    listener, the cluster's VIP as its address) that accepted it, to a backend with a ready endpoint."""
    api = fleet.members[cluster].api_client()
    create_gateway(api, namespace, f"{name}-gw", [{"name": "http", "port": 80, "protocol": "HTTP"}])
    set_gateway_addresses(api, namespace, f"{name}-gw", [VIPS[cluster]])
    set_endpoints(api, namespace, name, ["10.1.0.1"], ready=True)
    create_route(api, HTTP_ROUTES, namespace, name, [{"name": f"{name}-gw"}], [name], [hostname])
    set_route_parents(api, HTTP_ROUTES, namespace, name, {f"{name}-gw": True})


def dns_endpoint(host: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return host.get(DNS_ENDPOINTS.path(namespace, name))
    except KubeError as error:
        if error.status == 404:
            return None
        raise


def records(obj: dict[str, Any] | None) -> dict[tuple[str, str], set[str]]:
    """``{(name, type): {targets}}`` of a DNSEndpoint (empty when it does not exist)."""
    if obj is None:
        return {}
    return {(e["dnsName"], e["recordType"]): set(e.get("targets") or []) for e in obj["spec"].get("endpoints") or []}



def wait_records(host: KubeClient, namespace: str, name: str, predicate: Callable[[dict], bool],
                 timeout: float = 15.0) -> dict[tuple[str, str], set[str]]:
    def check() -> dict | None:
        current = records(dns_endpoint(host, namespace, name))
        return current if predicate(current) else None
    return wait_for(check, timeout, what=f"DNSEndpoint {namespace}/{name}")


def intent(host: KubeClient, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return host.get(_INTENTS[plural].path(namespace, name))


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def events_for(host: KubeClient, namespace: str, name: str) -> list[dict[str, Any]]:
    items = host.get(EVENTS.path(namespace),
                     {"fieldSelector": f"involvedObject.name={name}"}).get("items") or []
    return items


# --- what an aggregator process did, from its own /metrics -----------------------------------------

WRITE_COUNTERS = ("fleetdns_aggregator_dnsendpoint_writes_total", "fleetdns_aggregator_status_writes_total")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def samples(process: AggregatorProcess, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of metric ``name`` the process exposes, as (labels, value)."""
    found = []
    for key, value in scrape(f"http://127.0.0.1:{process.port}/metrics").items():
        metric, _, labels = key.partition("{")
        if metric == name:
            found.append((dict(_LABEL.findall(labels)), value))
    return found


def writes(process: AggregatorProcess) -> float:
    """Every DNSEndpoint write and status write this replica has made."""
    return sum(value for name in WRITE_COUNTERS for _, value in samples(process, name))


def reconciled_intents(process: AggregatorProcess, kind: str = "ServiceDNSRecord") -> int:
    """How many intents this process has finished reconciling at least once (its ``intents`` gauge counts
    each one by its last result, so it covers an intent only after the reconcile's writes are done)."""
    return int(sum(value for labels, value in samples(process, "fleetdns_aggregator_intents")
                   if labels.get("kind") == kind and labels.get("condition") == "Ready"))
