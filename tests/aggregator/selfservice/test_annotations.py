"""Annotations parsed into requests: every annotation, opting in, and one message per bad annotation."""

from __future__ import annotations

import pytest

from aggregator.model import Policy
from aggregator.selfservice.annotations import AnnotationError, opted_in, parse_request
from aggregator.sources.request import AppRequest, common_spec

pytestmark = pytest.mark.unit


# --- annotations ---------------------------------------------------------------------------------------


def test_an_opted_in_object_without_other_annotations_gets_the_defaults() -> None:
    request = parse_request({"fleetdns.io/global": "true"}, "fleet")
    assert request == AppRequest(domain="fleet")
    assert common_spec(request) == {"domainRef": "fleet", "recordTTL": 30, "loadBalancing": {"policy": "RoundRobin"}}


def test_every_annotation_is_read() -> None:
    request = parse_request({
        "fleetdns.io/global": "true", "fleetdns.io/domain": "shared",
        "fleetdns.io/hosts": "A.example.com, b.example.com",
        "fleetdns.io/policy": "Failover", "fleetdns.io/failover-order": "east,us-west", "fleetdns.io/weight": "0",
        "fleetdns.io/ttl": "120", "fleetdns.io/health-check-path": "/healthz",
        "fleetdns.io/health-check-scheme": "https"}, "fleet")
    assert request == AppRequest("shared", ("a.example.com", "b.example.com"), Policy.FAILOVER, ("east", "us-west"), 0,
                                 120, {"httpGet": {"path": "/healthz", "port": 443, "scheme": "HTTPS"}})


def test_opting_in_takes_global_true_and_anything_but_false_is_an_error_not_an_opt_out() -> None:
    assert opted_in({"fleetdns.io/global": "true"}) and opted_in({"fleetdns.io/global": "yes"})
    assert not opted_in({"fleetdns.io/global": "false"}) and not opted_in({"fleetdns.io/ttl": "30"})
    with pytest.raises(AnnotationError, match='fleetdns.io/global: \'yes\' must be "true"'):
        parse_request({"fleetdns.io/global": "yes"}, "fleet")


@pytest.mark.parametrize(("annotations", "message"), [
    ({"fleetdns.io/ttl": "soon"}, "fleetdns.io/ttl: 'soon' must be a whole number of seconds 1-604800"),
    ({"fleetdns.io/ttl": "0"}, "fleetdns.io/ttl: '0' must be a whole number of seconds"),
    ({"fleetdns.io/weight": "300"}, "fleetdns.io/weight: '300' must be a whole number 0-255"),
    ({"fleetdns.io/policy": "Nearest"}, "fleetdns.io/policy: 'Nearest' is not a policy (one of RoundRobin, Weighted"),
    ({"fleetdns.io/policy": "Failover"}, "fleetdns.io/failover-order: missing; policy Failover needs"),
    ({"fleetdns.io/failover-order": "east"}, "fleetdns.io/failover-order: used only with fleetdns.io/policy: Failover"),
    ({"fleetdns.io/policy": "Failover", "fleetdns.io/failover-order": "east,east"}, "lists a target twice"),
    ({"fleetdns.io/policy": "Failover", "fleetdns.io/failover-order": "East"}, "must name a MemberCluster or a region"),
    ({"fleetdns.io/hosts": "*.example.com"}, "fleetdns.io/hosts: DNS name '*.example.com' is a wildcard"),
    ({"fleetdns.io/health-check-port": "8080"}, "fleetdns.io/health-check-port: used only with "
                                                "fleetdns.io/health-check-path (missing)"),
    ({"fleetdns.io/health-check-path": "healthz"}, "fleetdns.io/health-check-path: 'healthz' must start with '/'"),
    ({"fleetdns.io/health-check-path": "/", "fleetdns.io/health-check-scheme": "gopher"}, "must be HTTP or HTTPS"),
    ({"fleetdns.io/polcy": "Weighted"}, "fleetdns.io/polcy: unknown annotation (known: fleetdns.io/global"),
    ({"fleetdns.io/domain": "Not_A_Domain"}, "fleetdns.io/domain: 'Not_A_Domain' must name a Domain"),
    # a generated intent's domainRef is a DNS label (the CRDs refuse anything else): named here, never a refused write
    ({"fleetdns.io/domain": "fleet.prod"}, "fleetdns.io/domain: 'fleet.prod' must name a Domain as an intent's "
                                           "domainRef does: a DNS label"),
])
def test_a_bad_annotation_is_named_with_its_value_and_what_is_accepted(annotations: dict[str, str],
                                                                        message: str) -> None:
    with pytest.raises(AnnotationError) as raised:
        parse_request({"fleetdns.io/global": "true"} | annotations, "fleet")
    assert any(message in problem for problem in raised.value.problems), raised.value.problems


@pytest.mark.parametrize("value", ["²", "٥", "5\n1"])
def test_a_number_annotation_in_other_digits_is_named_not_a_crash(value: str) -> None:
    with pytest.raises(AnnotationError, match="fleetdns.io/weight: .* must be a whole number"):
        parse_request({"fleetdns.io/global": "true", "fleetdns.io/weight": value}, "fleet")


def test_every_bad_annotation_is_reported_at_once() -> None:
    with pytest.raises(AnnotationError) as raised:
        parse_request({"fleetdns.io/global": "true", "fleetdns.io/ttl": "x", "fleetdns.io/weight": "y"}, "fleet")
    assert [p.split(":")[0] for p in raised.value.problems] == ["fleetdns.io/weight", "fleetdns.io/ttl"]


def test_without_a_domain_annotation_or_default_nothing_can_be_generated() -> None:
    with pytest.raises(AnnotationError, match="fleetdns.io/domain: missing, and the aggregator has no "
                                              "--self-service-domain default"):
        parse_request({"fleetdns.io/global": "true"})
    assert parse_request({"fleetdns.io/global": "true", "fleetdns.io/domain": "own"}).domain == "own"
