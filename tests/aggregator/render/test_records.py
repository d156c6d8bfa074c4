"""The address records of one name: A and AAAA per family, a CNAME only where no cluster has an IP, and the
addresses the quorum sees down left out."""

from __future__ import annotations

import pytest

from aggregator.model import ClusterHealth, ClusterStatus, LoadBalancerAddress, Verdict
from aggregator.render.records import address_records
from tests.support.model import EAST, V4, WEST, by_name, entry, ip

pytestmark = pytest.mark.unit


def test_ipv6_addresses_give_aaaa_records() -> None:
    out = by_name(address_records("a.example.com", [entry(EAST, ip("192.0.2.1", "2001:db8::1"))], 60))
    assert out == {("a.example.com", "A"): ("192.0.2.1",), ("a.example.com", "AAAA"): ("2001:db8::1",)}


def test_hostnames_count_only_without_ips_and_give_one_cname() -> None:
    hostname = (LoadBalancerAddress(hostname="lb-west.example.net"),)
    mixed = by_name(address_records("a.example.com", [entry(EAST, ip("192.0.2.1")), entry(WEST, hostname)], 60))
    assert mixed == {("a.example.com", "A"): ("192.0.2.1",)}
    only = by_name(address_records("a.example.com", [
        entry(WEST, hostname), entry(EAST, (LoadBalancerAddress(hostname="lb-east.example.net"),))], 60))
    assert only == {("a.example.com", "CNAME"): ("lb-east.example.net",)}


# --- quorum-withdrawn addresses ---------------------------------------------------------------------

def test_addresses_the_quorum_sees_down_are_not_published() -> None:
    sick = ClusterStatus("east", "us-east", "us-east-1a", (LoadBalancerAddress(ip=V4["east"]),
                                                            LoadBalancerAddress(ip=V4["east-b"])), True, "",
                         health_check=ClusterHealth(Verdict.UP, (V4["east-b"],), ()))
    records = address_records("a.example.com", [sick], 30)
    assert records[0].targets == (V4["east"],)
