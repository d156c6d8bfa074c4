"""Targets from intents: every address in an intent's status, the Host its check sends, why an intent has none, and
identical checks shared."""

from __future__ import annotations

import pytest

from prober.targets import ProbeKey, TargetIndex, parse_intent, subjects_of

pytestmark = pytest.mark.unit


def intent(kind: str = "ServiceDNSRecord", name: str = "web", namespace: str = "shop", health: dict | None = None,
           dns: list | None = None, fqdn: str = "web.shop.example.com", hosts: list | None = None) -> dict:
    spec: dict = {"healthCheck": health if health is not None else {"httpGet": {"port": 80, "path": "/healthz"}}}
    if hosts is not None:
        spec["hosts"] = hosts
    return {"metadata": {"namespace": namespace, "name": name}, "spec": spec,
            "status": {"fqdn": fqdn, "dns": dns if dns is not None else [
                {"cluster": "east", "loadBalancer": {"ingress": [{"ip": "198.18.1.1"}, {"hostname": "lb.aws"}]},
                 "resolvedAddresses": ["198.18.1.9"]},
                {"cluster": "west", "loadBalancer": {"ingress": [{"ip": "2001:db8:f::1"}]}},
            ]}}


def test_every_address_of_every_cluster_in_the_status_is_a_target_with_the_fqdn_as_host():
    parsed = parse_intent("ServiceDNSRecord", intent())
    assert parsed.check is not None and parsed.check.http_get is not None
    assert parsed.check.http_get.host == "web.shop.example.com"
    assert [(c.cluster, c.addresses) for c in parsed.clusters] == [
        ("east", ("198.18.1.1", "198.18.1.9")), ("west", ("2001:db8:f::1",))]
    keys = [(s.key.cluster, s.key.address, s.key.intent) for s in subjects_of(parsed)]
    assert keys == [("east", "198.18.1.1", "ServiceDNSRecord/web"), ("east", "198.18.1.9", "ServiceDNSRecord/web"),
                    ("west", "2001:db8:f::1", "ServiceDNSRecord/web")]


def test_an_ingress_intent_checks_its_first_host_and_an_explicit_host_wins():
    parsed = parse_intent("IngressDNSRecord", intent("IngressDNSRecord", hosts=["Shop.Example.com", "b.example.com"]))
    assert parsed.check is not None and parsed.check.http_get is not None
    assert parsed.check.http_get.host == "shop.example.com"
    explicit = parse_intent("ServiceDNSRecord", intent(health={"httpGet": {"port": 80, "host": "probe.example"}}))
    assert explicit.check is not None and explicit.check.http_get is not None
    assert explicit.check.http_get.host == "probe.example"


def test_intents_without_a_runnable_check_have_no_targets_and_say_why():
    assert subjects_of(parse_intent("ServiceDNSRecord", intent(health={}))) == ()  # {} is no healthCheck
    bad = parse_intent("ServiceDNSRecord", intent(health={"httpGet": {"port": 0}}))
    assert subjects_of(bad) == () and "port" in bad.problem
    no_host = parse_intent("ServiceDNSRecord", intent(fqdn=""))  # the aggregator has not written its status yet
    assert subjects_of(no_host) == () and no_host.waiting and not no_host.problem
    header = parse_intent("ServiceDNSRecord", intent(health={"httpGet": {"port": 80, "httpHeaders": [
        {"name": "X-A", "value": "1\r\nX-Injected: 1"}]}}))
    assert subjects_of(header) == () and "X-A" in header.problem
    tcp_no_fqdn = parse_intent("ServiceDNSRecord", intent(fqdn="", health={"tcpSocket": {"port": 443}}))
    assert len(subjects_of(tcp_no_fqdn)) == 3  # a TCP check needs no Host


def test_identical_checks_of_two_intents_share_one_probe_at_the_shorter_period_and_longer_timeout():
    index = TargetIndex()
    a = parse_intent("ServiceDNSRecord", intent(name="a", health={
        "httpGet": {"port": 80, "host": "shared.example"}, "periodSeconds": 10, "timeoutSeconds": 1}))
    b = parse_intent("ServiceDNSRecord", intent(name="b", health={
        "httpGet": {"port": 80, "host": "shared.example"}, "periodSeconds": 5, "timeoutSeconds": 3}))
    first = index.update(a.ident, subjects_of(a))
    assert len(first.added_probes) == 3 and len(first.added_subjects) == 3
    second = index.update(b.ident, subjects_of(b))
    assert second.added_probes == [] and len(second.added_subjects) == 3
    assert len(second.retimed_probes) == 3
    probe = index.probes[ProbeKey("198.18.1.1", a.check.check_id)]  # type: ignore[union-attr]
    assert (probe.period, probe.timeout, len(probe.subjects)) == (5.0, 3.0, 2)
    gone = index.update(b.ident, ())
    assert gone.removed_probes == [] and len(gone.removed_subjects) == 3 and len(gone.retimed_probes) == 3
    assert index.update(a.ident, ()).removed_probes and index.probes == {}


def test_a_changed_status_moves_only_the_addresses_that_changed():
    index = TargetIndex()
    before = parse_intent("ServiceDNSRecord", intent())
    index.update(before.ident, subjects_of(before))
    after = parse_intent("ServiceDNSRecord", intent(dns=[
        {"cluster": "east", "loadBalancer": {"ingress": [{"ip": "198.18.1.1"}]}}]))
    changes = index.update(after.ident, subjects_of(after))
    assert sorted(s.key.address for s in changes.removed_subjects) == ["198.18.1.9", "2001:db8:f::1"]
    assert changes.added_subjects == [] and len(changes.removed_probes) == 2
