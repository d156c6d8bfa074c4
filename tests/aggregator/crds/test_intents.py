"""The CRDs as served by a real API server: bad specs are refused with a message naming the field."""

from __future__ import annotations

import subprocess

import pytest

from fleetdns.apipaths import DOMAINS, INGRESS_DNS_RECORDS, MEMBER_CLUSTERS, SERVICE_DNS_RECORDS
from rig import Fleet
from rig.binaries import binary
from tests.support.aggregator import new_namespace, prepare_fleet, rejected

pytestmark = pytest.mark.apiserver


def service_record(name: str, **spec: object) -> dict:
    return SERVICE_DNS_RECORDS.manifest(name, spec=spec)


@pytest.fixture(scope="module")
def ns(fleet: Fleet) -> str:
    prepare_fleet(fleet)
    return new_namespace(fleet, "agg-crd")


@pytest.mark.parametrize(("spec", "expected"), [
    ({}, "spec.domainRef: Required value"),
    ({"domainRef": "Not_A_Label"}, 'spec.domainRef: Invalid value: "Not_A_Label": must be a DNS label'),
    ({"domainRef": "fleet", "recordTTL": 0}, "spec.recordTTL: Invalid value: 0: spec.recordTTL in body should be "
                                             "greater than or equal to 1"),
    ({"domainRef": "fleet", "recordTTL": 999999999}, "spec.recordTTL"),
    ({"domainRef": "fleet", "dnsPrefix": "has.dots"}, "spec.dnsPrefix"),
    ({"domainRef": "fleet", "externalName": "UPPER"}, "spec.externalName"),
])
def test_service_dns_record_with_a_bad_spec_is_refused_naming_the_field(fleet: Fleet, ns: str, spec: dict,
                                                                         expected: str) -> None:
    message = rejected(fleet, SERVICE_DNS_RECORDS.path(ns), service_record("web", **spec))
    assert expected in message


def test_service_dns_record_name_must_be_a_service_name(fleet: Fleet, ns: str) -> None:
    message = rejected(fleet, SERVICE_DNS_RECORDS.path(ns), service_record("9web", domainRef="fleet"))
    assert "metadata.name must be the Service's name" in message


def test_ingress_dns_record_needs_valid_hosts(fleet: Fleet, ns: str) -> None:
    path = INGRESS_DNS_RECORDS.path(ns)
    body = INGRESS_DNS_RECORDS.manifest("shop")
    assert "spec.hosts" in rejected(fleet, path, {**body, "spec": {"hosts": []}})
    assert "spec.hosts[0]" in rejected(fleet, path, {**body, "spec": {"hosts": ["bad host!"]}})
    assert "Duplicate value" in rejected(fleet, path, {**body, "spec": {"hosts": ["a.example.com", "a.example.com"]}})


def test_member_cluster_validation(fleet: Fleet) -> None:
    path = MEMBER_CLUSTERS.path()
    base = MEMBER_CLUSTERS.manifest("bad-member")
    ref = {"namespace": "fleetdns-system", "name": "member-bad"}
    spec = {"region": "us-east", "zone": "Zone A", "kubeconfigSecretRef": ref}
    message = rejected(fleet, path, {**base, "spec": spec})
    assert "spec.zone" in message
    message = rejected(fleet, path, {**base, "spec": {"region": "us-east", "zone": "a", "kubeconfigSecretRef": ref,
                                                      "location": {"latitude": 91, "longitude": 0}}})
    assert "spec.location.latitude" in message and "less than or equal to 90" in message
    assert "spec.kubeconfigSecretRef: Required value" in rejected(fleet, path, {**base, "spec": {"region": "r",
                                                                                                 "zone": "z"}})


def test_member_cluster_secret_key_defaults_to_kubeconfig(fleet: Fleet) -> None:
    host = prepare_fleet(fleet)
    created = host.create(MEMBER_CLUSTERS.path(), MEMBER_CLUSTERS.manifest("defaults-probe", spec={
        "region": "r", "zone": "z", "kubeconfigSecretRef": {"namespace": "fleetdns-system", "name": "x"}}))
    try:
        assert created["spec"]["kubeconfigSecretRef"]["key"] == "kubeconfig"
    finally:
        host.delete(MEMBER_CLUSTERS.path(name="defaults-probe"))


def test_domain_takes_spec_or_kubefeds_top_level_fields_but_not_both(fleet: Fleet, ns: str) -> None:
    host = prepare_fleet(fleet)
    path = DOMAINS.path(ns)
    base = {"apiVersion": DOMAINS.api_version, "kind": DOMAINS.kind}
    host.create(path, {**base, "metadata": {"name": "new-style"}, "spec": {"domain": "example.com"}})
    host.create(path, {**base, "metadata": {"name": "kubefed-style"}, "domain": "example.com"})
    message = rejected(fleet, path, {**base, "metadata": {"name": "both"}, "domain": "a.com",
                                     "spec": {"domain": "a.com"}})
    assert "not both" in message
    assert "spec.domain" in rejected(fleet, path, {**base, "metadata": {"name": "bad"}, "spec": {"domain": "a b"}})


SERVICE = "fleetdns-system/fleetdns-coredns"


@pytest.mark.parametrize(("delegation", "expected"), [
    ({"nameservers": []}, "spec.delegation.nameservers: Invalid value"),
    ({"nameservers": [{"name": "NS_1", "addresses": ["192.0.2.1"]}]}, "spec.delegation.nameservers[0].name"),
    ({"nameservers": [{"name": "ns1"}]}, "a nameserver has member and service, or addresses (not both, not neither)"),
    ({"nameservers": [{"name": "ns1", "member": "east", "service": SERVICE, "addresses": ["192.0.2.1"]}]},
     "not both, not neither"),
    ({"nameservers": [{"name": "ns1", "member": "east"}]}, "member and service go together"),
    ({"nameservers": [{"name": "ns1", "member": "east", "service": "no-namespace"}]},
     "spec.delegation.nameservers[0].service"),
    ({"nameservers": [{"name": "ns1", "addresses": ["192.0.2.1"]}, {"name": "ns1", "addresses": ["192.0.2.2"]}]},
     "each nameserver name may appear once"),
    ({"ttl": 0, "nameservers": [{"name": "ns1", "addresses": ["192.0.2.1"]}]}, "spec.delegation.ttl"),
])
def test_a_bad_delegation_is_refused_naming_what_to_change(fleet: Fleet, ns: str, delegation: dict,
                                                          expected: str) -> None:
    prepare_fleet(fleet)
    body = DOMAINS.manifest("delegated", spec={"domain": "gslb.example.com", "delegation": delegation})
    assert expected in rejected(fleet, DOMAINS.path(ns), body)


def test_a_good_delegation_is_accepted_and_its_status_is_a_subresource(fleet: Fleet, ns: str) -> None:
    host = prepare_fleet(fleet)
    body = DOMAINS.manifest("delegated-ok", spec={"domain": "gslb.example.com", "delegation": {
        "ttl": 60, "labels": {"team": "dns"}, "nameservers": [
            {"name": "ns-east", "member": "east", "service": SERVICE},
            {"name": "ns-x", "addresses": ["192.0.2.53", "2001:db8::53"]}]}})
    created = host.create(DOMAINS.path(ns), body)
    assert created["spec"]["delegation"]["nameservers"][1]["addresses"] == ["192.0.2.53", "2001:db8::53"]
    host.merge_patch(DOMAINS.path(ns, "delegated-ok", "status"), {"status": {"conditions": [
        {"type": "Delegated", "status": "True", "reason": "Published", "message": "m",
         "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    assert host.get(DOMAINS.path(ns, "delegated-ok"))["status"]["conditions"][0]["reason"] == "Published"


def test_printer_columns_show_fqdn_healthy_clusters_ready_and_policy(fleet: Fleet, ns: str) -> None:
    host = prepare_fleet(fleet)
    host.create(SERVICE_DNS_RECORDS.path(ns), service_record("columns", domainRef="fleet"))
    output = subprocess.run([binary("kubectl"), f"--kubeconfig={fleet.host.kubeconfig}", "get", "servicednsrecords",
                             "-n", ns], capture_output=True, text=True, timeout=20, check=True).stdout
    assert output.split("\n")[0].split() == ["NAME", "FQDN", "HEALTHY", "READY", "POLICY", "AGE"]
    wide = subprocess.run([binary("kubectl"), f"--kubeconfig={fleet.host.kubeconfig}", "get", "servicednsrecords",
                           "-n", ns, "-o", "wide"], capture_output=True, text=True, timeout=20, check=True).stdout
    assert wide.split("\n")[0].split() == ["NAME", "FQDN", "HEALTHY", "READY", "POLICY", "FAILOPEN", "AGE"]
    host.create(INGRESS_DNS_RECORDS.path(ns), ingress_record("columns", ["columns.example.org"]))
    output = subprocess.run([binary("kubectl"), f"--kubeconfig={fleet.host.kubeconfig}", "get", "ingressdnsrecords",
                             "-n", ns], capture_output=True, text=True, timeout=20, check=True).stdout
    assert output.split("\n")[0].split() == ["NAME", "FQDN", "HEALTHY", "READY", "POLICY", "AGE"]


# --- what stock CoreDNS and ExternalDNS's TXT registry can publish ----------------------------------
# The registry keeps its ownership record at `cname-<first label>.<rest>`: 57 octets for the first
# label, 247 for the name; CoreDNS's etcd plugin reads `*` as a query wildcard, not a zone wildcard.

def host_of_length(total: int) -> str:
    labels = ["h" * 49] * ((total - len("example.com")) // 50)
    name = ".".join([*labels, "example.com"])
    name = "w" * (total - len(name) - 1) + "." + name if total - len(name) > 1 else name
    assert len(name) == total
    return name


def ingress_record(name: str, hosts: list[str]) -> dict:
    return INGRESS_DNS_RECORDS.manifest(name, spec={"hosts": hosts})


@pytest.mark.parametrize(("host", "expected"), [
    ("*.example.com", "wildcard hosts cannot be served by stock CoreDNS"),
    ("a.*.example.com", "list each host explicitly"),
    ("w" * 58 + ".example.com", "the first label may have at most 57 characters"),
    (host_of_length(248), "at most 247 characters"),
    (host_of_length(248) + ".", "at most 247 characters"),
])
def test_ingress_host_stock_coredns_cannot_serve_is_refused_saying_why(fleet: Fleet, ns: str, host: str,
                                                                        expected: str) -> None:
    message = rejected(fleet, INGRESS_DNS_RECORDS.path(ns), ingress_record("shop", [host]))
    assert "spec.hosts[0]" in message and expected in message


def test_ingress_hosts_at_the_limits_are_accepted(fleet: Fleet, ns: str) -> None:
    host = prepare_fleet(fleet)
    hosts = ["w" * 57 + ".example.com", host_of_length(247), host_of_length(247)[1:] + "."]
    created = host.create(INGRESS_DNS_RECORDS.path(ns), ingress_record("limits", hosts))
    assert created["spec"]["hosts"] == hosts


@pytest.mark.parametrize(("name", "spec", "expected"), [
    ("s" * 58, {}, "set spec.externalName to a label of at most 57 characters"),
    ("web", {"externalName": "e" * 58}, "spec.externalName: Invalid value"),
    ("web", {"dnsPrefix": "p" * 58}, "spec.dnsPrefix: Invalid value"),
])
def test_service_dns_record_first_labels_leave_room_for_the_registry_prefix(fleet: Fleet, ns: str, name: str,
                                                                           spec: dict, expected: str) -> None:
    message = rejected(fleet, SERVICE_DNS_RECORDS.path(ns),
                       service_record(name, domainRef="fleet", **spec))
    assert expected in message and "57" in message


def test_a_long_service_name_is_accepted_with_a_short_external_name(fleet: Fleet, ns: str) -> None:
    host = prepare_fleet(fleet)
    host.create(SERVICE_DNS_RECORDS.path(ns),
                service_record("s" * 60, domainRef="fleet", externalName="e" * 57, dnsPrefix="p" * 57))


def test_record_ttl_defaults_to_30_and_an_explicit_one_is_kept(fleet: Fleet, ns: str) -> None:
    host = prepare_fleet(fleet)
    path = SERVICE_DNS_RECORDS.path(ns)
    assert host.create(path, service_record("ttl-default", domainRef="fleet"))["spec"]["recordTTL"] == 30
    assert host.create(path, service_record("ttl-explicit", domainRef="fleet", recordTTL=180))["spec"][
        "recordTTL"] == 180
    ingress = host.create(INGRESS_DNS_RECORDS.path(ns), ingress_record("ttl", ["ttl.example.com"]))
    assert ingress["spec"]["recordTTL"] == 30
