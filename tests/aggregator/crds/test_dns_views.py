"""DNSView and the location policies as a real API server validates them: bad views are refused at admission
with a message saying what to change (docs/design/views.md §1), and the parser used for objects written before
the CRD checked them says the same."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fleetdns.apipaths import DNS_VIEWS, INGRESS_DNS_RECORDS, SERVICE_DNS_RECORDS
from fleetdns.dnsview import DNSViewError, parse_dns_view
from fleetdns.kubeapi import KubeClient
from rig import Fleet
from tests.support.aggregator import new_namespace, prepare_fleet, rejected, unique

pytestmark = pytest.mark.apiserver
GOOD = {"clientCIDRs": ["198.51.100.0/24"], "location": {"latitude": 48.1, "longitude": 11.6}, "latencyFrom": "eu"}


@pytest.fixture(scope="module")
def host(fleet: Fleet) -> Iterator[KubeClient]:
    """DNSViews are cluster-scoped: every one this module creates is deleted afterwards."""
    client = prepare_fleet(fleet)
    yield client
    for item in client.get(DNS_VIEWS.path()).get("items") or []:
        if item["metadata"]["name"].startswith("crd-"):
            client.delete(DNS_VIEWS.path(name=item["metadata"]["name"]))


@pytest.fixture(scope="module")
def ns(fleet: Fleet) -> str:
    prepare_fleet(fleet)
    return new_namespace(fleet, "agg-views-crd")


def view_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return DNS_VIEWS.manifest(name, spec=spec)


@pytest.mark.parametrize(("name", "spec", "expected"), [
    ("crd-" + "x" * 37, GOOD, "metadata.name must be one DNS label of at most 40 characters"),
    ("crd-a.b", GOOD, "metadata.name must be one DNS label of at most 40 characters"),
    ("region-east", GOOD, "metadata.name must not start with 'region-'"),
    ("crd-empty", {"location": {"latitude": 1, "longitude": 2}},
     "spec needs at least one of clientCIDRs, countries and continents"),
    ("crd-cidr", {"clientCIDRs": ["198.51.100.0/33"]}, "must be a network in CIDR form"),
    ("crd-cidr", {"clientCIDRs": ["eu-clients"]}, "must be a network in CIDR form"),
    ("crd-host-bits", {"clientCIDRs": ["198.51.100.7/24"]}, "must be a network address: the bits past the prefix"),
    ("crd-country", {"countries": ["de"]}, "must be an ISO 3166-1 alpha-2 country code in upper case"),
    ("crd-country", {"countries": ["DEU"]}, "must be an ISO 3166-1 alpha-2 country code in upper case"),
    ("crd-continent", {"continents": ["EUROPE"]}, 'spec.continents[0]: Unsupported value: "EUROPE"'),
    ("crd-lat", {"countries": ["DE"], "location": {"latitude": 91, "longitude": 0}},
     "spec.location.latitude: Invalid value: 91: spec.location.latitude in body should be less than or equal to 90"),
    ("crd-lon", {"countries": ["DE"], "location": {"latitude": 0, "longitude": -180.5}},
     "spec.location.longitude"),
    ("crd-loc", {"countries": ["DE"], "location": {"latitude": 0}}, "spec.location.longitude: Required value"),
    ("crd-from", {"countries": ["DE"], "latencyFrom": "EU West"}, "spec.latencyFrom: Invalid value"),
])
def test_a_bad_dns_view_is_refused_with_a_message_saying_what_to_change(fleet: Fleet, host: KubeClient, name: str,
                                                                       spec: dict[str, Any], expected: str) -> None:
    message = rejected(fleet, DNS_VIEWS.path(), view_body(name, spec))
    assert expected in message
    # An object the CRD did not check (written before it did) is refused by the parser, naming the same field.
    with pytest.raises(DNSViewError):
        parse_dns_view(view_body(name, spec))


def test_a_good_dns_view_is_accepted_and_parsed(host: KubeClient) -> None:
    name = unique("crd-good")
    spec = {**GOOD, "clientCIDRs": ["198.51.100.0/24", "2001:db8::/48"], "countries": ["DE", "AT"],
            "continents": ["EU"]}
    created = host.create(DNS_VIEWS.path(), view_body(name, spec))
    view = parse_dns_view(created)
    assert [str(n) for n in view.client_cidrs] == ["198.51.100.0/24", "2001:db8::/48"]
    assert (view.countries, view.continents, view.latency_from) == (("DE", "AT"), ("EU",), "eu")
    assert view.location is not None and (view.location.latitude, view.location.longitude) == (48.1, 11.6)


@pytest.mark.parametrize("resource", [SERVICE_DNS_RECORDS, INGRESS_DNS_RECORDS])
@pytest.mark.parametrize("policy", ["GeoProximity", "LowestLatency"])
def test_both_intent_kinds_take_the_location_policies(fleet: Fleet, host: KubeClient, ns: str, resource: Any,
                                                      policy: str) -> None:
    spec: dict[str, Any] = {"domainRef": "fleet"} if resource is SERVICE_DNS_RECORDS else {"hosts": ["a.example.com"]}
    created = host.create(resource.path(ns), resource.manifest(unique("web"), spec={
        **spec, "loadBalancing": {"policy": policy}}))
    assert created["spec"]["loadBalancing"]["policy"] == policy
    message = rejected(fleet, resource.path(ns), resource.manifest(unique("web"), spec={
        **spec, "loadBalancing": {"policy": policy, "failoverOrder": ["east"]}}))
    assert "spec.loadBalancing.failoverOrder is used only with policy Failover" in message
