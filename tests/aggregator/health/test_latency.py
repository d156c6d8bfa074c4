"""The RTT index the location policies read: the newest measurement of an address across a region's reports."""

from __future__ import annotations

import pytest

from aggregator.health.latency import LatencyIndex
from fleetdns.healthreport import HealthReport, LatencyEntry
from tests.support.model import V4 as VIPS

pytestmark = pytest.mark.unit


def report(namespace: str, region: str, cluster_name: str, *entries: tuple[str, int, str]) -> HealthReport:
    return HealthReport(namespace, region, cluster_name, latency=tuple(LatencyEntry(*e) for e in entries))


def test_the_newest_measurement_of_an_address_wins_across_a_regions_reports() -> None:
    index = LatencyIndex()
    shop = report("shop", "eu", "east", (VIPS["east"], 30_000, "2025-01-01T00:00:10Z"))
    assert index.apply(None, shop) == {("eu", VIPS["east"])}
    blog = report("blog", "eu", "east", (VIPS["east"], 50_000, "2025-01-01T00:00:20Z"))
    assert index.apply(None, blog) == {("eu", VIPS["east"])}
    assert index.region("eu") == {VIPS["east"]: 50_000}
    assert index.apply(blog, None) == {("eu", VIPS["east"])}  # gone: the other report's value stands
    assert index.region("eu") == {VIPS["east"]: 30_000}
    assert index.apply(shop, shop) == set() and index.region("ap") == {}
    assert index.apply(shop, report("shop", "eu", "east")) == {("eu", VIPS["east"])}
    assert index.region("eu") == {}
