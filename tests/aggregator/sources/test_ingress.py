"""The Ingress source's pure parts: an Ingress's backends, the hosts an IngressDNSRecord publishes, a cluster's
health by its backends' readiness (and a member that may not list Ingresses), the records per host, and the spec
generated from a request."""

from __future__ import annotations

import pytest

from aggregator.health.readiness import KindProblem, MemberView, Reachability
from aggregator.model import MemberCluster, SecretKeyRef
from aggregator.sources.ingress import (
    IngressIntent,
    IngressSource,
    IngressView,
    MemberIngress,
    evaluate_ingress_cluster,
    ingress_host_names,
    parse_member_ingress,
    render_ingress_endpoints,
)
from aggregator.sources.request import AppRequest, RequestError
from fleetdns.dnsname import InvalidDNSNameError
from tests.support.model import EAST, WEST, entry, ip

pytestmark = pytest.mark.unit


def test_ingress_backends_come_from_rules_and_default_backend() -> None:
    parsed = parse_member_ingress({
        "metadata": {"namespace": "shop", "name": "front"},
        "spec": {"defaultBackend": {"service": {"name": "fallback"}},
                 "rules": [{"http": {"paths": [{"backend": {"service": {"name": "api"}}},
                                               {"backend": {"resource": {"kind": "Bucket"}}}]}}]}})
    assert parsed.backend_services == ("api", "fallback")


def test_ingress_hosts_are_normalised_and_deduplicated() -> None:
    assert ingress_host_names(("Shop.Example.org.", "shop.example.org", "api.example.org")) == (
        "api.example.org", "shop.example.org")


def test_a_wildcard_host_is_refused_saying_coredns_cannot_serve_it() -> None:
    with pytest.raises(InvalidDNSNameError, match="wildcard.*list each host explicitly"):
        ingress_host_names(("shop.example.org", "*.example.org"))


def test_ingress_is_healthy_while_one_backend_has_ready_endpoints() -> None:
    ingress = MemberIngress("shop", "front", ip("192.0.2.1"), ("api", "web"))
    healthy = evaluate_ingress_cluster(IngressView(EAST, Reachability.CONNECTED, ingress=ingress,
                                                   backend_ready={"api": 0, "web": 1}))
    sick = evaluate_ingress_cluster(IngressView(EAST, Reachability.CONNECTED, ingress=ingress,
                                                backend_ready={"api": 0, "web": 0}))
    assert healthy is not None and healthy.healthy and "web" in healthy.reason
    assert sick is not None and not sick.healthy and sick.reason.startswith("NoReadyBackends")


def test_ingress_renders_one_record_per_host_over_healthy_clusters() -> None:
    ingress = IngressIntent("shop", "front", "u", 1, ("a.example.org", "b.example.org"), record_ttl=30)
    out = render_ingress_endpoints(ingress, ("a.example.org", "b.example.org"),
                                   (entry(EAST, ip("192.0.2.1")), entry(WEST, ip("198.51.100.1"), healthy=False)))
    assert [(e.dns_name, e.record_type, e.targets, e.record_ttl) for e in out] == [
        ("a.example.org", "A", ("192.0.2.1",), 30), ("b.example.org", "A", ("192.0.2.1",), 30)]


def test_an_ingress_record_lists_a_member_forbidding_ingresses_and_leaves_out_one_not_serving_them() -> None:
    east = MemberCluster("east", "east", "east-1a", SecretKeyRef("fleetdns-system", "east"))
    base = MemberView(east, Reachability.CONNECTED)
    forbidden = evaluate_ingress_cluster(IngressView(**vars(base), problem=KindProblem("ingresses", 403, "Forbidden")))
    assert forbidden is not None and not forbidden.healthy and forbidden.reason.startswith("KindUnavailable")
    assert evaluate_ingress_cluster(IngressView(**vars(base), problem=KindProblem("ingresses", 404, "NotFound"))) \
        is None


def test_an_ingress_spec_publishes_its_rule_hosts_limited_to_the_listed_ones() -> None:
    ingress = MemberIngress("shop", "web", (), (), ("*.example.com", "a.example.com", "b.example.com"))
    source = IngressSource()
    assert source.generated_spec(ingress, AppRequest(domain="fleet"))["hosts"] == ["a.example.com", "b.example.com"]
    assert source.generated_spec(ingress, AppRequest(domain="fleet", hosts=("b.example.com",)))["hosts"] == [
        "b.example.com"]
    with pytest.raises(RequestError, match="hosts c.example.com are not hosts of this Ingress's rules"):
        source.generated_spec(ingress, AppRequest(domain="fleet", hosts=("c.example.com",)))
    with pytest.raises(RequestError, match="name no host to publish"):
        source.generated_spec(MemberIngress("shop", "web", (), (), ("*.example.com",)), AppRequest(domain="fleet"))
