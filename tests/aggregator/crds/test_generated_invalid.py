"""Every CRD against invalid objects generated from its own schema (tests/support/crd_mutations.py), sent to a real
API server: each is refused at admission (422) with a message naming the broken field or the object holding it, and
no request gets a server error. `make soak` adds objects with two or three breaks each, drawn at random."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fleetdns.apipaths import (
    DISCOVERY_RULES,
    DNS_VIEWS,
    DOMAINS,
    GATEWAY_DNS_RECORDS,
    HEALTH_REPORTS,
    INGRESS_DNS_RECORDS,
    MEMBER_CLUSTERS,
    ROUTE_DNS_RECORDS,
    SERVICE_DNS_RECORDS,
)
from fleetdns.kubeapi import KubeError
from rig import Fleet
from tests.support.aggregator import new_namespace, prepare_fleet
from tests.support.crd_mutations import Mutation, combined, crd_schema, mutations
from tests.support.soak import BAD_INPUT, times

pytestmark = [pytest.mark.apiserver, pytest.mark.fault]

CRDS = Path(__file__).resolve().parents[3] / "manifests" / "crds"

HEALTH_CHECK = {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP", "host": "app.example.com",
                            "httpHeaders": [{"name": "X-Check", "value": "1"}]},
                "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3, "successThreshold": 1}
# a DiscoveryRule's check goes to each app's own host (and SNI): it names none
RULE_CHECK = {**HEALTH_CHECK, "httpGet": {k: v for k, v in HEALTH_CHECK["httpGet"].items() if k != "host"}}
WEIGHTED = {"policy": "Weighted", "weights": [{"target": "east", "weight": 80}]}
FAILOVER = {"policy": "Failover", "failoverOrder": ["east"]}
SELECTOR = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In",
                                                                  "values": ["front"]}]}
HOSTS = ["shop.gslb.example.com"]

# (API, CRD file, valid specs): each spec holds the fields its mutations break; together they cover every field.
VALID: list[tuple[Any, str, list[dict[str, Any]]]] = [
    (SERVICE_DNS_RECORDS, "fleetdns.io_servicednsrecords.yaml", [
        {"domainRef": "fleet", "recordTTL": 30, "loadBalancerHostnames": "Resolve", "dnsPrefix": "web",
         "allowServiceWithoutEndpoints": True, "loadBalancing": WEIGHTED, "healthCheck": HEALTH_CHECK},
        {"domainRef": "fleet", "externalName": "web", "loadBalancing": FAILOVER,
         "healthCheck": {"tcpSocket": {"port": 443}}}]),
    (INGRESS_DNS_RECORDS, "fleetdns.io_ingressdnsrecords.yaml", [
        {"hosts": HOSTS, "domainRef": "fleet", "recordTTL": 30, "loadBalancerHostnames": "CNAME",
         "loadBalancing": WEIGHTED, "healthCheck": HEALTH_CHECK},
        {"hosts": HOSTS, "loadBalancing": FAILOVER, "healthCheck": {"tcpSocket": {"port": 443}}}]),
    (GATEWAY_DNS_RECORDS, "fleetdns.io_gatewaydnsrecords.yaml", [
        {"routeKind": "HTTPRoute", "serviceHealthPolicy": "AnyBackend", "domainRef": "fleet", "hosts": HOSTS,
         "recordTTL": 30, "loadBalancerHostnames": "Resolve", "loadBalancing": WEIGHTED, "healthCheck": HEALTH_CHECK},
        {"routeKind": "HTTPRoute", "loadBalancing": FAILOVER, "healthCheck": {"tcpSocket": {"port": 443}}}]),
    (ROUTE_DNS_RECORDS, "fleetdns.io_routednsrecords.yaml", [
        {"domainRef": "fleet", "hosts": HOSTS, "recordTTL": 30, "loadBalancerHostnames": "Resolve",
         "loadBalancing": WEIGHTED, "healthCheck": HEALTH_CHECK},
        {"loadBalancing": FAILOVER, "healthCheck": {"tcpSocket": {"port": 443}}}]),
    (DNS_VIEWS, "fleetdns.io_dnsviews.yaml", [
        {"clientCIDRs": ["10.1.0.0/16"], "location": {"latitude": 48.85, "longitude": 2.35}},
        {"countries": ["DE"], "latencyFrom": "east"},
        {"continents": ["EU"]}]),
    (DOMAINS, "fleetdns.io_domains.yaml", [
        {"domain": "gslb.example.com", "nameServer": "ns1.example.com",
         "delegation": {"nameservers": [{"name": "east", "member": "east", "service": "fleetdns-system/coredns"}],
                        "ttl": 300, "labels": {"team": "dns"}},
         "namespaceSelector": SELECTOR},
        {"domain": "gslb.example.org",
         "delegation": {"nameservers": [{"name": "ns1", "addresses": ["192.0.2.53"]}]}}]),
    (MEMBER_CLUSTERS, "fleetdns.io_memberclusters.yaml", [
        {"region": "us-east", "zone": "us-east-1a", "location": {"latitude": 40.7, "longitude": -74.0},
         "kubeconfigSecretRef": {"namespace": "fleetdns-system", "name": "member-east", "key": "kubeconfig"}}]),
    (DISCOVERY_RULES, "fleetdns.io_discoveryrules.yaml", [
        {"kinds": ["Service"], "selector": SELECTOR, "namespaceSelector": SELECTOR, "clusterSelector": SELECTOR,
         "domainRef": "fleet", "recordTTL": 30, "loadBalancing": WEIGHTED, "healthCheck": RULE_CHECK},
        {"selector": SELECTOR, "loadBalancing": FAILOVER, "healthCheck": {"tcpSocket": {"port": 443}}}]),
    (HEALTH_REPORTS, "fleetdns.io_healthreports.yaml", [{"region": "east", "cluster": "east"}]),
]


def _dry_run(host: Any, path: str, body: dict[str, Any]) -> tuple[int, str]:
    """(status, message) of a dry-run create: admission runs in full, nothing is stored."""
    try:
        host.request("POST", path, {"dryRun": "All"}, body=body)
        return 201, ""
    except KubeError as error:
        return error.status, error.message


def _names_the_field(mutation: Mutation, message: str) -> bool:
    """Whether the refusal names a broken field, or the object holding it (a rule on that object), other than the
    whole spec for a field inside it."""
    paths = mutation.path.split(" | ")
    wanted = {*paths, *(Mutation(mutation.what, path, {}).parent for path in paths if path != "spec")}
    return any(path in message for path in wanted if path != "spec" or "spec" in paths)


@pytest.fixture(scope="module")
def send(fleet: Fleet) -> Callable[[Any, dict[str, Any]], tuple[int, str]]:
    host = prepare_fleet(fleet)
    ns = new_namespace(fleet, "crd-fuzz")

    def post(api: Any, body: dict[str, Any]) -> tuple[int, str]:
        path = api.path(ns) if api.namespaced else api.path()
        return _dry_run(host, path, body)

    return post


@pytest.mark.parametrize(("api", "crd_file", "specs"), VALID, ids=[api.kind for api, _, _ in VALID])
def test_generated_invalid_objects_are_refused_naming_the_field(send, tally, api, crd_file: str,
                                                                specs: list[dict[str, Any]]) -> None:
    _, schema = crd_schema(CRDS / crd_file)
    count = tally(f"{api.kind}: invalid objects generated from its schema", BAD_INPUT)
    unnamed, accepted = [], []
    rng = random.Random(f"{api.kind}-{len(specs)}")
    for spec in specs:
        valid = api.manifest("fuzz", spec=spec)
        assert send(api, valid) == (201, ""), f"the valid base object must be admitted: {spec}"
        generated = [*mutations(schema, valid), *combined(schema, valid, rng, times(0, 250))]
        assert len(generated) >= 5, f"the schema constrains what {spec} holds"
        for mutation in generated:
            status, message = send(api, mutation.obj)
            count.injected += 1
            if status >= 500:
                count.server_errors += 1
            elif status != 422:
                accepted.append(f"{mutation.path} {mutation.what}: {status}")
            elif not _names_the_field(mutation, message):
                unnamed.append(f"{mutation.path} {mutation.what}: {message}")
    count.lost = len(accepted) + len(unnamed)
    assert count.server_errors == 0
    assert not accepted, "admitted although invalid:\n" + "\n".join(accepted)
    assert not unnamed, "refused without naming the field:\n" + "\n".join(unnamed)


@pytest.mark.unit
def test_mutations_break_one_constraint_each_and_name_where() -> None:
    _, schema = crd_schema(CRDS / "fleetdns.io_memberclusters.yaml")
    valid = MEMBER_CLUSTERS.manifest("m", spec={"region": "east", "zone": "east-1a",
                                                "kubeconfigSecretRef": {"namespace": "ns", "name": "n"}})
    found = {(m.path, m.what): m for m in mutations(schema, valid)}
    assert found[("spec.region", "too long")].obj["spec"]["region"] == "a" * 64
    assert found[("spec.kubeconfigSecretRef.name", "empty")].parent == "spec.kubeconfigSecretRef"
    assert "zone" not in found[("spec.zone", "a required field missing")].obj["spec"]
    assert valid["spec"]["zone"] == "east-1a"  # the base is never changed
    _, views = crd_schema(CRDS / "fleetdns.io_dnsviews.yaml")
    view = DNS_VIEWS.manifest("v", spec={"clientCIDRs": ["10.0.0.0/8"]})
    listed = {(m.path, m.what) for m in mutations(views, view)}
    assert ("spec.clientCIDRs[0]", "too long") in listed and ("spec.clientCIDRs", "no items") in listed
    assert Mutation("x", "spec.clientCIDRs[0]", {}).parent == "spec.clientCIDRs"
