"""Host objects as the aggregator reads them: a Domain in either form, a prober's Lease."""

from __future__ import annotations

import pytest

from aggregator.model import ProberLease, parse_domain, parse_prober_lease

pytestmark = pytest.mark.unit


def test_domain_reads_spec_and_kubefeds_top_level_form() -> None:
    assert parse_domain({"metadata": {"name": "d"}, "spec": {"domain": "example.com"}}).domain == "example.com"
    assert parse_domain({"metadata": {"name": "d"}, "domain": "old.example", "nameServer": "ns1"}).name_server == "ns1"


def test_a_prober_lease_is_read_by_its_region_label() -> None:
    parsed = parse_prober_lease({"metadata": {"name": "fleetdns-prober-eu", "labels": {"fleetdns.io/region": "eu"}},
                                 "spec": {"holderIdentity": "p-1", "renewTime": "2025-01-01T00:00:00.000000Z"}})
    assert parsed == ProberLease("eu", "p-1", "2025-01-01T00:00:00.000000Z")
    assert parse_prober_lease({"metadata": {"name": "fleetdns-prober-us"}, "spec": {}}).region == "us"
