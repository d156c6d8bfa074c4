"""Host objects as the aggregator reads them: a Domain in either form, a prober's Lease."""

from __future__ import annotations

import pytest

from aggregator.model import LoadBalancerAddress, parse_addresses, parse_domain
from fleetdns.healthreport import ProberLease, parse_prober_lease

pytestmark = pytest.mark.unit


def test_domain_reads_spec_and_kubefeds_top_level_form() -> None:
    assert parse_domain({"metadata": {"name": "d"}, "spec": {"domain": "example.com"}}).domain == "example.com"
    assert parse_domain({"metadata": {"name": "d"}, "domain": "old.example", "nameServer": "ns1"}).name_server == "ns1"


def test_a_prober_lease_is_read_by_its_region_label() -> None:
    parsed = parse_prober_lease({"metadata": {"name": "fleetdns-prober-eu", "labels": {"fleetdns.io/region": "eu"}},
                                 "spec": {"holderIdentity": "p-1", "renewTime": "2025-01-01T00:00:00.000000Z"}})
    assert parsed == ProberLease("eu", "p-1", "2025-01-01T00:00:00.000000Z", reports_current=True)
    behind = parse_prober_lease({"metadata": {"name": "fleetdns-prober-eu",
                                              "annotations": {"fleetdns.io/reports-current": "false"}}, "spec": {}})
    assert not behind.reports_current
    assert parse_prober_lease({"metadata": {"name": "fleetdns-prober-us"}, "spec": {}}).region == "us"


def test_load_balancer_addresses_no_client_could_reach_are_left_out() -> None:
    ingress = [{"ip": ip} for ip in ("0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255", "not-an-ip",
                                     "2001:DB8::0001", "192.0.2.10")] + [{"hostname": "LB.Example.com"}, {}, "junk"]
    assert parse_addresses({"ingress": ingress}) == (
        LoadBalancerAddress(ip="192.0.2.10"), LoadBalancerAddress(ip="2001:db8::1"),
        LoadBalancerAddress(hostname="lb.example.com"))
    assert parse_addresses({"ingress": "not a list"}) == parse_addresses(None) == ()
