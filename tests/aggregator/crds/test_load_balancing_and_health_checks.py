"""spec.loadBalancing and spec.healthCheck as a real API server validates them: every row of the design's
validation table (docs/design/policies.md §4) refused at admission with its message, on both intent kinds."""

from __future__ import annotations

from typing import Any

import pytest

from fleetdns.apipaths import INGRESS_DNS_RECORDS, SERVICE_DNS_RECORDS
from rig import Fleet
from tests.support.aggregator import new_namespace, prepare_fleet, rejected, unique

pytestmark = pytest.mark.apiserver
HTTP = {"httpGet": {"port": 80}}


@pytest.fixture(scope="module")
def ns(fleet: Fleet) -> str:
    prepare_fleet(fleet)
    return new_namespace(fleet, "agg-policy-crd")


def intent_body(kind: str, **spec: Any) -> tuple[Any, dict[str, Any]]:
    if kind == "ingress":
        return INGRESS_DNS_RECORDS, INGRESS_DNS_RECORDS.manifest(unique("shop"), spec={"hosts": ["shop.example.com"],
                                                                                      **spec})
    return SERVICE_DNS_RECORDS, SERVICE_DNS_RECORDS.manifest(unique("web"), spec={"domainRef": "fleet", **spec})


@pytest.mark.parametrize("kind", ["service", "ingress"])
@pytest.mark.parametrize(("spec", "expected"), [
    ({"loadBalancing": {"policy": "Random"}},
     ['spec.loadBalancing.policy: Unsupported value: "Random"', '"RoundRobin", "Weighted", "Failover"']),
    ({"loadBalancing": {"policy": "Weighted", "weights": [{"target": "east", "weight": 256}]}},
     ["spec.loadBalancing.weights[0].weight", "less than or equal to 255"]),
    ({"loadBalancing": {"policy": "Weighted", "weights": [{"target": "east", "weight": -1}]}},
     ["spec.loadBalancing.weights[0].weight", "greater than or equal to 0"]),
    ({"loadBalancing": {"policy": "Weighted", "weights": [{"target": "east", "weight": 1},
                                                          {"target": "east", "weight": 2}]}},
     ["spec.loadBalancing.weights[1]: Duplicate value"]),
    ({"loadBalancing": {"policy": "Failover", "failoverOrder": ["east", "east"]}},
     ['spec.loadBalancing.failoverOrder[1]: Duplicate value: "east"']),
    ({"loadBalancing": {"policy": "RoundRobin", "weights": [{"target": "east", "weight": 1}]}},
     ["spec.loadBalancing.weights is used only with policy Weighted"]),
    ({"loadBalancing": {"weights": [{"target": "east", "weight": 1}]}},
     ["spec.loadBalancing.weights is used only with policy Weighted"]),
    ({"loadBalancing": {"policy": "Weighted", "weights": [{"target": "east", "weight": 1}],
                        "failoverOrder": ["east"]}},
     ["spec.loadBalancing.failoverOrder is used only with policy Failover"]),
    ({"loadBalancing": {"policy": "Failover"}}, ["policy Failover needs spec.loadBalancing.failoverOrder"]),
    ({"loadBalancing": {"policy": "Weighted", "weights": [{"target": "east", "weight": 0}]}},
     ["policy Weighted needs spec.loadBalancing.weights with at least one weight above 0"]),
    ({"loadBalancing": {"policy": "Failover", "failoverOrder": ["East Coast"]}},
     ["spec.loadBalancing.failoverOrder[0]", "must name a MemberCluster or a region"]),
    ({"healthCheck": {"httpGet": {"port": 80, "scheme": "FTP"}}},
     ['spec.healthCheck.httpGet.scheme: Unsupported value: "FTP"']),
    ({"healthCheck": {"httpGet": {"port": 0}}}, ["spec.healthCheck.httpGet.port", "greater than or equal to 1"]),
    ({"healthCheck": {"tcpSocket": {"port": 65536}}},
     ["spec.healthCheck.tcpSocket.port", "less than or equal to 65535"]),
    ({"healthCheck": {**HTTP, "periodSeconds": 0}}, ["spec.healthCheck.periodSeconds"]),
    ({"healthCheck": {**HTTP, "periodSeconds": 3601}}, ["spec.healthCheck.periodSeconds"]),
    ({"healthCheck": {**HTTP, "timeoutSeconds": 0}}, ["spec.healthCheck.timeoutSeconds"]),
    ({"healthCheck": {**HTTP, "failureThreshold": 0}}, ["spec.healthCheck.failureThreshold"]),
    ({"healthCheck": {**HTTP, "successThreshold": 0}}, ["spec.healthCheck.successThreshold"]),
    ({"healthCheck": {"periodSeconds": 5}}, ["spec.healthCheck needs exactly one of httpGet and tcpSocket"]),
    ({"healthCheck": {**HTTP, "tcpSocket": {"port": 80}}},
     ["spec.healthCheck needs exactly one of httpGet and tcpSocket"]),
    ({"healthCheck": {**HTTP, "periodSeconds": 2, "timeoutSeconds": 3}},
     ["timeoutSeconds must not exceed periodSeconds"]),
    ({"healthCheck": {"httpGet": {"port": 80, "path": "healthz"}}},
     ["spec.healthCheck.httpGet.path", "must start with '/'"]),
    ({"healthCheck": {"httpGet": {"port": 80, "host": "Not A Host"}}},
     ["spec.healthCheck.httpGet.host", "must be a DNS name"]),
])
def test_a_bad_policy_or_health_check_is_refused_with_its_message(fleet: Fleet, ns: str, kind: str,
                                                                    spec: dict[str, Any],
                                                                    expected: list[str]) -> None:
    resource, body = intent_body(kind, **spec)
    message = rejected(fleet, resource.path(ns), body)
    for part in expected:
        assert part in message


@pytest.mark.parametrize("kind", ["service", "ingress"])
def test_a_good_spec_is_accepted_with_the_probe_defaults_filled_in(fleet: Fleet, ns: str, kind: str) -> None:
    host = prepare_fleet(fleet)
    resource, body = intent_body(kind, loadBalancing={"policy": "Failover", "failoverOrder": ["east", "us-west"]},
                                 healthCheck={"httpGet": {"port": 443, "scheme": "HTTPS", "path": "/healthz",
                                                          "httpHeaders": [{"name": "X-Probe", "value": "fleetdns"}]}})
    created = host.create(resource.path(ns), body)["spec"]
    assert created["loadBalancing"]["failoverOrder"] == ["east", "us-west"]
    check = created["healthCheck"]
    assert (check["periodSeconds"], check["timeoutSeconds"], check["failureThreshold"],
            check["successThreshold"]) == (10, 1, 3, 1)
    resource, body = intent_body(kind, loadBalancing={}, healthCheck={"tcpSocket": {"port": 443}})
    created = host.create(resource.path(ns), body)["spec"]
    assert created["loadBalancing"]["policy"] == "RoundRobin"
