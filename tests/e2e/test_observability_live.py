"""Every metric the shipped dashboard and alerting rules read is exposed by the live components of the rig, with
every label they select or group by: scraped from the aggregator, the probers, each region's webhook, ExternalDNS,
zone-file sidecar and CoreDNS while an app is published and checked."""

from __future__ import annotations

import contextlib
import json
import re
from collections import defaultdict
from collections.abc import Iterator

import pytest
import requests
import yaml

from rig.aggregator import client_for
from rig.binaries import REPO_ROOT
from rig.federation import Federation
from rig.prometheus import Prometheus
from rig.waiting import wait_for
from tests.support.federation import (
    checked_app,
    federation_namespace,
    running_federation,
)

pytestmark = [pytest.mark.apiserver, pytest.mark.externaldns, pytest.mark.coredns, pytest.mark.etcd]
FILES = REPO_ROOT / "charts" / "fleetdns" / "files"
METRIC = re.compile(r"\b((?:fleetdns|coredns|external_dns)_[a-z0-9_]+)\b(\{[^}]*\})?")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
TARGET_LABELS = {"instance", "job"}  # added by Prometheus to every series it scrapes


def expressions() -> list[str]:
    rules = yaml.safe_load((FILES / "prometheus-rules.yaml").read_text())
    board = json.loads((FILES / "grafana-dashboard.json").read_text())
    return ([r["expr"] for g in rules["groups"] for r in g["rules"]]
            + [t["expr"] for p in board["panels"] for t in p["targets"]])


def uses(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """The metrics an expression reads, each with the labels its selector matches on, and the labels it groups by."""
    metrics: dict[str, set[str]] = defaultdict(set)
    for name, selector in METRIC.findall(expr):
        metrics[name] |= set(MATCHER.findall(selector or ""))
    grouped = {label.strip() for clause in GROUPING.findall(expr) for label in clause.split(",") if label.strip()}
    return metrics, grouped


def exposed(fed: Federation) -> dict[str, set[str]]:
    """Every metric the components expose now, with the label names seen on its samples."""
    found: dict[str, set[str]] = defaultdict(set)
    for urls in fed.metrics_targets().values():
        for url in urls:
            for line in requests.get(url, timeout=5).text.splitlines():
                match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s", line)
                if match and not line.startswith("#"):
                    found[match.group(1)] |= set(re.findall(r'(\w+)="', match.group(2) or ""))
    return found


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    yield from running_federation(tmp_path_factory, "observability")


def test_the_dashboard_and_the_rules_read_only_metrics_and_labels_the_live_components_expose(fed: Federation) -> None:
    host = client_for(fed.fleet.host)
    name, vips = checked_app(fed, host, federation_namespace(fed, host, "obs"), "web")
    fed.wait_for_answers(name, {vips["east"][0], vips["west"][0]}, 60)
    assert set(fed.metrics_targets()) == {"aggregator", "prober", "webhook", "external-dns", "zonefiles", "coredns"}

    def missing() -> list[str]:
        live, gaps = exposed(fed), []
        for expr in expressions():
            metrics, grouped = uses(expr)
            for metric, labels in metrics.items():
                if metric not in live:
                    gaps.append(f"{metric} (in {expr})")
                elif labels - live[metric] - TARGET_LABELS:
                    gaps.append(f"{metric} has no label {sorted(labels - live[metric])} (in {expr})")
            on_any = set().union(*(live.get(m, set()) for m in metrics)) | TARGET_LABELS
            gaps += [f"no metric of {expr!r} has the label {label}" for label in sorted(grouped - on_any)]
        return gaps

    read = [metric for expr in expressions() for metric in uses(expr)[0]]
    assert len(read) >= 25 and all(uses(expr)[0] for expr in expressions()), "the check would prove nothing"
    # the aggregator exposes a region's freshness once it has seen its prober's Lease: wait for the whole set
    with contextlib.suppress(AssertionError):  # the assert below names what stayed missing
        wait_for(lambda: not missing(), 30, "every metric of the dashboard and the rules exposed", interval=1)
    assert missing() == []


def test_a_real_prometheus_scraping_the_rig_fires_the_fail_open_alert_and_clears_it(
        fed: Federation, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The shipped expression over the live series (rig/prometheus.py shortens only its ``for``)."""
    host = client_for(fed.fleet.host)
    name, vips = checked_app(fed, host, federation_namespace(fed, host, "alert"), "shop")
    fed.wait_for_answers(name, {vips["east"][0], vips["west"][0]}, 60)
    assert fed.dataplane is not None
    prometheus = Prometheus(tmp_path_factory.mktemp("prometheus"), fed.metrics_targets()).start()
    try:
        wait_for(prometheus.targets_up, 30, "Prometheus scraping every component", interval=0.5)
        assert prometheus.firing("FleetDNSFailOpen") == []
        for member in ("east", "west"):
            fed.dataplane.set_app_status(member, name, 500)
        try:
            firing = wait_for(lambda: prometheus.firing("FleetDNSFailOpen"), 60, "FleetDNSFailOpen firing",
                              interval=0.5)
            assert firing == [{"alertname": "FleetDNSFailOpen", "kind": "ServiceDNSRecord", "severity": "critical"}]
        finally:
            for member in ("east", "west"):
                fed.dataplane.set_app_status(member, name, None)
        wait_for(lambda: not prometheus.firing("FleetDNSFailOpen"), 60, "FleetDNSFailOpen cleared", interval=0.5)
    finally:
        prometheus.stop()
