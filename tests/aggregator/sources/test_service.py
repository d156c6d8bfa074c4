"""The Service source's pure parts: a LoadBalancer Service's addresses, the ServiceDNSRecord's defaults, the KubeFed
names, a cluster's health (ready endpoints, a member in its grace period or not reached yet), the records per global,
region and zone name, and the spec generated from a request."""

from __future__ import annotations

import pytest

from aggregator.health.readiness import Reachability
from aggregator.model import LoadBalancerAddress
from aggregator.sources.request import AppRequest, RequestError
from aggregator.sources.service import (
    MemberService,
    ServiceSource,
    ServiceView,
    evaluate_service_cluster,
    parse_member_service,
    parse_service_intent,
    render_service_endpoints,
    service_names,
)
from fleetdns.dnsname import InvalidDNSNameError
from tests.support.model import EAST, EAST_B, WEST, by_name, entry, intent, ip

pytestmark = pytest.mark.unit


# --- parsing ------------------------------------------------------------------------------------

def test_service_addresses_are_parsed_sorted_and_bad_ips_dropped() -> None:
    parsed = parse_member_service({
        "metadata": {"namespace": "shop", "name": "web"}, "spec": {"type": "LoadBalancer"},
        "status": {"loadBalancer": {"ingress": [{"hostname": "LB.Example.NET."}, {"ip": "2001:db8::1"},
                                                {"ip": "192.0.2.1"}, {"ip": "not-an-ip"}]}}})
    assert parsed.is_load_balancer
    assert parsed.addresses == (LoadBalancerAddress(ip="192.0.2.1"), LoadBalancerAddress(ip="2001:db8::1"),
                                LoadBalancerAddress(hostname="lb.example.net"))


def test_service_intent_defaults_ttl_to_30_and_keeps_an_explicit_one() -> None:
    parsed = parse_service_intent({"metadata": {"namespace": "shop", "name": "web", "generation": 2},
                                   "spec": {"domainRef": "fleet"}})
    assert parsed.record_ttl == 30 and parsed.generation == 2 and not parsed.allow_service_without_endpoints
    explicit = parse_service_intent({"metadata": {"namespace": "shop", "name": "web"},
                                     "spec": {"domainRef": "fleet", "recordTTL": 180}})
    assert explicit.record_ttl == 180


# --- naming ---------------------------------------------------------------------------------------

def test_kubefed_names() -> None:
    names = service_names(intent(), "Example.COM.")
    assert names.global_name == "web.shop.fleet.svc.example.com"
    assert names.region_name("us-east") == "web.shop.fleet.svc.us-east.example.com"
    assert names.zone_name("us-east", "us-east-1a") == "web.shop.fleet.svc.us-east-1a.us-east.example.com"
    assert names.dns_prefix_name("www") == "www.example.com"


def test_external_name_replaces_the_service_name() -> None:
    assert service_names(intent(external_name="shop-api"), "example.com").global_name == \
        "shop-api.shop.fleet.svc.example.com"


def test_a_name_too_long_to_serve_is_refused() -> None:
    with pytest.raises(InvalidDNSNameError):
        service_names(intent(), ".".join(["a" * 60] * 4))


def test_service_names_leave_room_for_the_registry_prefix() -> None:
    service_names(intent(external_name="e" * 57), "example.com")
    with pytest.raises(InvalidDNSNameError, match="at most 57"):
        service_names(intent(external_name="e" * 58), "example.com")
    with pytest.raises(InvalidDNSNameError, match="at most 57"):
        service_names(intent(dns_prefix="p" * 58), "example.com")
    long_domain = ".".join(["d" * 60] * 3)  # global name 22 + 182 = 204 octets; a zone name goes past 247
    names = service_names(intent(), long_domain)
    with pytest.raises(InvalidDNSNameError, match="at most 247"):
        names.zone_name("r" * 20, "z" * 30)


# --- a cluster's health ---------------------------------------------------------------------------

LB = MemberService("shop", "web", True, ip("192.0.2.1"))


@pytest.mark.parametrize(("view", "allow", "healthy", "reason"), [
    (ServiceView(EAST, Reachability.CONNECTED, service=LB, ready_endpoints=2), False, True, "ReadyEndpoints"),
    (ServiceView(EAST, Reachability.CONNECTED, service=LB, ready_endpoints=0), False, False, "NoReadyEndpoints"),
    (ServiceView(EAST, Reachability.CONNECTED, service=LB, ready_endpoints=0), True, True, "EndpointsNotRequired"),
    (ServiceView(EAST, Reachability.CONNECTED, service=MemberService("shop", "web", True, ()), ready_endpoints=1),
     False, False, "NoLoadBalancerAddress"),
    (ServiceView(EAST, Reachability.CONNECTED, service=MemberService("shop", "web", False, ip("10.0.0.1")),
                ready_endpoints=1), False, False, "ServiceNotLoadBalancer"),
    (ServiceView(EAST, Reachability.IN_GRACE, service=LB, ready_endpoints=1), False, True, "ReadyEndpoints"),
    (ServiceView(EAST, Reachability.LOST), False, False, "MemberUnreachable"),
    (ServiceView(EAST, Reachability.UNAVAILABLE, detail="Secret missing"), False, False, "MemberUnavailable"),
])
def test_service_health_rule(view: ServiceView, allow: bool, healthy: bool, reason: str) -> None:
    result = evaluate_service_cluster(view, allow)
    assert result is not None
    assert (result.healthy, result.reason.split(":")[0].split(" ")[0]) == (healthy, reason)


def test_within_the_grace_period_the_entry_is_unchanged_so_a_blip_rewrites_no_status() -> None:
    live = evaluate_service_cluster(ServiceView(EAST, Reachability.CONNECTED, service=LB, ready_endpoints=1), False)
    kept = evaluate_service_cluster(ServiceView(EAST, Reachability.IN_GRACE, service=LB, ready_endpoints=1), False)
    assert kept is not None and kept == live


def test_member_not_reached_since_start_keeps_its_published_entry_within_the_grace_period() -> None:
    published = entry(EAST, ip("192.0.2.1"))
    kept = evaluate_service_cluster(ServiceView(EAST, Reachability.CONNECTING, last_known=published), False)
    assert kept == published  # the MemberCluster, not every intent, says the member is not reached yet
    assert evaluate_service_cluster(ServiceView(EAST, Reachability.CONNECTING), False) is None


def test_cluster_without_the_service_is_not_listed() -> None:
    assert evaluate_service_cluster(ServiceView(EAST, Reachability.CONNECTED), False) is None


# --- rendering ------------------------------------------------------------------------------------

def test_all_healthy_gives_a_records_per_global_region_and_zone() -> None:
    names = service_names(intent(), "example.com")
    out = by_name(render_service_endpoints(intent(), names, (
        entry(EAST, ip("192.0.2.1")), entry(EAST_B, ip("192.0.2.2")), entry(WEST, ip("198.51.100.1")))))
    g = names.global_name
    assert out == {
        (g, "A"): ("192.0.2.1", "192.0.2.2", "198.51.100.1"),
        (names.region_name("us-east"), "A"): ("192.0.2.1", "192.0.2.2"),
        (names.zone_name("us-east", "us-east-1a"), "A"): ("192.0.2.1",),
        (names.zone_name("us-east", "us-east-1b"), "A"): ("192.0.2.2",),
        (names.region_name("us-west"), "A"): ("198.51.100.1",),
        (names.zone_name("us-west", "us-west-1a"), "A"): ("198.51.100.1",),
    }


def test_zone_without_healthy_target_is_a_cname_to_its_region_and_region_to_global() -> None:
    names = service_names(intent(dns_prefix="www"), "example.com")
    out = by_name(render_service_endpoints(intent(dns_prefix="www"), names, (
        entry(EAST, ip("192.0.2.1"), healthy=False), entry(EAST_B, ip("192.0.2.2")),
        entry(WEST, ip("198.51.100.1"), healthy=False))))
    assert out[(names.zone_name("us-east", "us-east-1a"), "CNAME")] == (names.region_name("us-east"),)
    assert out[(names.region_name("us-east"), "A")] == ("192.0.2.2",)
    assert out[(names.region_name("us-west"), "CNAME")] == (names.global_name,)
    assert out[(names.zone_name("us-west", "us-west-1a"), "CNAME")] == (names.region_name("us-west"),)
    assert out[("www.example.com", "CNAME")] == (names.global_name,)


def test_nothing_healthy_renders_nothing() -> None:
    names = service_names(intent(dns_prefix="www"), "example.com")
    assert render_service_endpoints(intent(dns_prefix="www"), names, (entry(EAST, ip("192.0.2.1"), False),)) == []


# --- the sources' generated specs ----------------------------------------------------------------------


def test_a_service_spec_takes_no_hosts() -> None:
    service = MemberService("shop", "web", True, ())
    assert ServiceSource().generated_spec(service, AppRequest(domain="fleet", record_ttl=60))["recordTTL"] == 60
    with pytest.raises(RequestError, match="a list of hosts is for Ingresses and routes"):
        ServiceSource().generated_spec(service, AppRequest(domain="fleet", hosts=("web.example.com",)))
