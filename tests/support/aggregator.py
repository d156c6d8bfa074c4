"""The aggregator's tests on the session fleet: CRDs and members, namespaces, intents and member workloads
created the way users and controllers create them, what the host then holds, and the process's own metrics."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from fleetdns.apipaths import DNS_ENDPOINTS, DOMAINS, EVENTS, HTTP_ROUTES, INGRESS_DNS_RECORDS, SERVICE_DNS_RECORDS
from fleetdns.kubeapi import KubeClient, KubeError
from rig import Fleet, KubeAPIServer
from rig.aggregator import AggregatorProcess, client_for
from rig.gatewayapi import create_gateway, create_route, set_gateway_addresses, set_route_parents
from rig.scrape import scrape
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


def new_namespace(fleet: Fleet, prefix: str, host: KubeAPIServer | None = None) -> str:
    """A fresh namespace on every server of the fleet (with ``host`` in place of the fleet's own host)."""
    name = unique(prefix)
    for server in (fleet.servers if host is None else [host, *fleet.members.values()]):
        ensure_namespace(server.api_client(), name)
    return name


def global_name(namespace: str, service: str) -> str:
    """The KubeFed global name of a ServiceDNSRecord on the Domain ``fleet``."""
    return f"{service}.{namespace}.{DOMAIN_REF}.svc.{DOMAIN}"


def both(**overrides: dict[str, object]) -> dict[str, dict[str, object]]:
    """``deploy_service`` in east and west, each at its VIP with ready endpoints (``overrides`` per cluster)."""
    return {"east": {"ip": VIPS["east"], "ready": True}, "west": {"ip": VIPS["west"], "ready": True}, **overrides}


def rejected(fleet: Fleet, path: str, body: dict) -> str:
    """The message of the host's admission refusal (422) of ``body``."""
    host = prepare_fleet(fleet)
    with pytest.raises(KubeError) as error:
        host.create(path, body)
    assert error.value.status == 422, error.value
    return error.value.message


def wait_past_second_of(timestamp: str) -> None:
    """Until the API servers' clock (this machine's) is past the second ``timestamp`` names: an object created
    after that is strictly younger (creationTimestamp has one-second precision)."""
    since = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    wait_for(lambda: (datetime.now(UTC) - since).total_seconds() >= 1.05, timeout=5, what="the next second")


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


def deploy_controlled_app(fleet: Fleet, namespace: str, name: str, replicas: int = 2, cluster: str = "east",
                          **app: Any) -> set[str]:
    """A Deployment behind a LoadBalancer Service, applied with kubectl in a member running its real controllers
    (``controlled_fleet``'s east), its VIP published as a cloud would; returns the pods' addresses once the
    EndpointSlice controller lists them ready. ``app``: more of ``rig.workloads.deploy_app``'s arguments."""
    member = fleet.members[cluster]
    deploy_app(member, namespace, name, replicas, service_type="LoadBalancer", **app)
    set_load_balancer_status(member.api_client(), namespace, name, ips=[VIPS[cluster]])
    return wait_for(lambda: (ready := ready_addresses(member, namespace, name)) and len(ready) == replicas and ready,
                    timeout=60, what=f"{replicas} ready endpoints of {namespace}/{name} in {cluster}")


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
    return host.get_if_exists(DNS_ENDPOINTS.path(namespace, name))


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
