"""DiscoveryRule as a real API server validates it: bad rules are refused at admission with a message saying what
to change (docs/design/sources.md §3), and the parser used for rules written before the CRD checked them refuses
them too, naming the field."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from aggregator.selfservice.discovery import ALL_KINDS, DiscoveryRuleError, SourceKind, parse_discovery_rule
from fleetdns.apipaths import DISCOVERY_RULES
from fleetdns.kubeapi import KubeClient
from rig import Fleet
from rig.binaries import binary
from tests.support.aggregator import prepare_fleet, rejected, unique

pytestmark = pytest.mark.apiserver
SELECT = {"matchLabels": {"fleetdns.io/app": "web"}}


@pytest.fixture(scope="module")
def host(fleet: Fleet) -> Iterator[KubeClient]:
    """DiscoveryRules are cluster-scoped: every one this module creates is deleted afterwards."""
    client = prepare_fleet(fleet)
    yield client
    for item in client.get(DISCOVERY_RULES.path()).get("items") or []:
        if item["metadata"]["name"].startswith("crd-"):
            client.delete(DISCOVERY_RULES.path(name=item["metadata"]["name"]))


def rule(spec: dict[str, Any], name: str = "crd-rule") -> dict[str, Any]:
    return DISCOVERY_RULES.manifest(name, spec=spec)


HTTP = {"httpGet": {"path": "/healthz", "port": 80}}


@pytest.mark.parametrize(("spec", "expected", "parser_refuses"), [
    ({}, "spec.selector: Required value", True),
    ({"selector": {}}, "spec.selector must name at least one label (matchLabels or matchExpressions): an empty "
                       "selector would publish every object", True),
    ({"selector": {"matchLabels": {}, "matchExpressions": []}}, "spec.selector must name at least one label", True),
    ({"selector": SELECT, "kinds": ["Deployment"]}, 'spec.kinds[0]: Unsupported value: "Deployment"', True),
    ({"selector": SELECT, "kinds": []}, "spec.kinds: Invalid value", True),
    ({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
     "operators In and NotIn need at least one value", True),
    ({"selector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}},
     "operators Exists and DoesNotExist take no values", True),
    ({"selector": {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["x"]}]}},
     'spec.selector.matchExpressions[0].operator: Unsupported value: "Equals"', True),
    ({"selector": {"matchLabels": {"app": "not a value"}}}, "each value must be a label value", False),
    ({"selector": SELECT, "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "NotIn"}]}},
     "spec.namespaceSelector.matchExpressions[0]: Invalid value", True),
    ({"selector": SELECT, "clusterSelector": {"matchExpressions": [{"operator": "Exists"}]}},
     "spec.clusterSelector.matchExpressions[0].key: Required value", True),
    ({"selector": SELECT, "domainRef": "Not_A_Label"}, 'spec.domainRef: Invalid value: "Not_A_Label": must be a '
                                                      "DNS label", True),
    ({"selector": SELECT, "recordTTL": 0}, "spec.recordTTL: Invalid value: 0: spec.recordTTL in body should be "
                                           "greater than or equal to 1", True),
    ({"selector": SELECT, "loadBalancing": {"policy": "Weighted"}},
     "policy Weighted needs spec.loadBalancing.weights with at least one weight above 0", False),
    ({"selector": SELECT, "loadBalancing": {"policy": "Nearest"}},
     'spec.loadBalancing.policy: Unsupported value: "Nearest"', True),
    ({"selector": SELECT, "healthCheck": {**HTTP, "tcpSocket": {"port": 80}}},
     "spec.healthCheck needs exactly one of httpGet and tcpSocket", True),
    ({"selector": SELECT, "healthCheck": {"httpGet": {"path": "/", "port": 80, "host": "web.example.com"}}},
     "spec.healthCheck.httpGet.host cannot be set on a DiscoveryRule: every generated intent sends its own name",
     True),
    ({"selector": SELECT, "healthCheck": {"httpGet": {"path": "healthz", "port": 80}}}, "must start with '/'", True),
])
def test_a_bad_discovery_rule_is_refused_with_a_message_saying_what_to_change(
        fleet: Fleet, host: KubeClient, spec: dict[str, Any], expected: str, parser_refuses: bool) -> None:
    message = rejected(fleet, DISCOVERY_RULES.path(), rule(spec))
    assert expected in message
    if parser_refuses:  # a rule written before the CRD checked it is refused by the parser too
        with pytest.raises(DiscoveryRuleError):
            parse_discovery_rule(rule(spec))


def test_a_good_rule_is_accepted_with_every_kind_and_the_default_ttl_and_parsed(fleet: Fleet, host: KubeClient) -> None:
    name = unique("crd-good")
    created = host.create(DISCOVERY_RULES.path(), rule({
        "selector": {"matchLabels": {"fleetdns.io/app": "web"},
                     "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["internal"]}]},
        "namespaceSelector": {"matchLabels": {"team": "shop"}},
        "clusterSelector": {"matchExpressions": [{"key": "env", "operator": "Exists"}]},
        "domainRef": "fleet", "loadBalancing": {"policy": "Failover", "failoverOrder": ["east", "west"]},
        "healthCheck": HTTP}, name))
    assert created["spec"]["kinds"] == [str(k) for k in SourceKind]  # the default: every kind
    assert created["spec"]["recordTTL"] == 30
    parsed = parse_discovery_rule(created)
    assert parsed.kinds == ALL_KINDS and parsed.record_ttl == 30 and parsed.domain_ref == "fleet"
    assert parsed.selector.matches({"fleetdns.io/app": "web"})
    assert not parsed.selector.matches({"fleetdns.io/app": "web", "tier": "internal"})
    assert parsed.namespace_selector.matches({"team": "shop"}) and not parsed.namespace_selector.matches({})
    assert parsed.cluster_selector.matches({"env": ""}) and not parsed.cluster_selector.matches({"region": "x"})
    assert parsed.load_balancing.failover_order == ("east", "west")
    assert parsed.health_check is not None and parsed.health_check.http_get is not None
    assert parsed.health_check.http_get.path == "/healthz"

    # kubectl's short name and printer columns
    out = subprocess.run([str(binary("kubectl")), f"--kubeconfig={fleet.host.kubeconfig}", "get", "dr", name],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    assert out.split("\n")[0].split() == ["NAME", "DISCOVERED", "PROBLEMS", "READY", "AGE"]
