"""The alerting rules and the dashboard as shipped (charts/fleetdns/files/): a real promtool checks the rules and runs
them over series in which each alert must fire, or must not; the chart ships both only when asked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from rig.binaries import REPO_ROOT, binary
from rig.chartwiring import render

FILES = REPO_ROOT / "charts" / "fleetdns" / "files"
RULES, DASHBOARD = FILES / "prometheus-rules.yaml", FILES / "grafana-dashboard.json"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_the_alerting_rules_pass_promtool() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in done.stdout


def alerts() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


# Each alert over series in which it must fire (and, after, stop); promtool evaluates the shipped expressions.
CASES = {
    "FleetDNSFailOpen": ('fleetdns_aggregator_intents{kind="ServiceDNSRecord",condition="FailOpen",status="True"}',
                         "0 0 2 2 2 2 2 0 0 0", {"kind": "ServiceDNSRecord"}),
    "FleetDNSMemberUnreachable": ('fleetdns_aggregator_member_state{cluster="east",state="Unreachable"}',
                                  "0 0 1 1 1 1 1 0 0 0", {"cluster": "east", "state": "Unreachable"}),
    "FleetDNSRegionOutOfTheVote": ('fleetdns_aggregator_prober_region_fresh{region="north"}', "1 1 0 0 0 0 0 1 1 1",
                                   {"region": "north"}),
    "FleetDNSSidecarCannotReadEtcd": ('fleetdns_zonefiles_sync_errors_total{instance="z",stage="etcd"}',
                                      "0 0 3 6 9 12 15 15 15 15 15 15 15", {"instance": "z"}),
    "ExternalDNSSoftErrors": ('external_dns_controller_consecutive_soft_errors{instance="e"}',
                              "0 0 1 2 3 4 5 6 7 8 0 0 0 0 0 0 0", {"instance": "e"}),
}
INTERVAL = "1m"


@pytest.mark.parametrize("alert", sorted(CASES))
def test_each_alert_fires_on_its_condition_after_its_for_and_clears_when_it_ends(alert: str, tmp_path: Path) -> None:
    series, values, labels = CASES[alert]
    rule = next(r for r in alerts() if r["alert"] == alert)
    wait = int(str(rule.get("for", "0m")).removesuffix("m"))
    # the shipped expressions, labels and durations; annotations left out (their templates: promtool check rules)
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for group in groups:
        for each in group["rules"]:
            each.pop("annotations", None)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    test = {"rule_files": [str(rules)], "evaluation_interval": INTERVAL, "tests": [{
        "interval": INTERVAL,
        "input_series": [{"series": series, "values": values}],
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": alert, "exp_alerts": []},  # healthy: nothing
            {"eval_time": f"{2 + wait + 1}m", "alertname": alert,
             "exp_alerts": [{"exp_labels": {**labels, "severity": rule["labels"]["severity"]}}]},
            {"eval_time": f"{len(values.split()) - 1}m", "alertname": alert, "exp_alerts": []},  # over
        ]}]}
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(test))
    done = promtool("test", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_chart_ships_the_dashboard_and_the_rules_only_when_asked() -> None:
    kinds = {doc["kind"] for doc in render({}).documents}
    assert not {"PrometheusRule"} & kinds and not [d for d in render({}).documents if d["kind"] == "ConfigMap"
                                                   and d["metadata"]["name"] == "fleetdns-dashboard"]
    shipped = render({"observability": {"dashboard": {"enabled": True},
                                        "prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}})
    (rule,) = [d for d in shipped.documents if d["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    assert rule["metadata"]["labels"]["release"] == "kps"
    (board,) = [d for d in shipped.documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] ==
                "fleetdns-dashboard"]
    assert json.loads(board["data"]["fleetdns.json"]) == json.loads(DASHBOARD.read_text())
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
