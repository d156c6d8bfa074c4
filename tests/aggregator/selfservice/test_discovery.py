"""Auto-discovery's pure parts: which DiscoveryRule selects an object, what it asks for, what each rule's status
says, and what a rule holds when it cannot be read (docs/design/sources.md §3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from aggregator.model import IntentKey, IntentKind, MemberCluster, Policy, SecretKeyRef
from aggregator.registry.domains import NamespaceLabels
from aggregator.selfservice.discovery import (
    CANNOT_GENERATE,
    CLAIMED_BY_ANNOTATION,
    CLAIMED_BY_RULE,
    INTENT_EXISTS,
    NAMESPACE_UNKNOWN,
    READINESS_PROBE,
    Discovery,
    RuleClaim,
    RuleStatus,
    SourceKind,
    parse_discovery_rule,
    parse_rule_status,
    read_discovery_rule,
    rule_request,
    rule_status,
    rule_summary,
    selecting_rules,
)
from aggregator.sources import SOURCES
from aggregator.sources.service import MemberService
from tests.support.fakes import Member

pytestmark = pytest.mark.unit


# --- which rules select an object, what they ask, and their status ----------------------------------------------

def rule_obj(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}


def test_a_rule_selects_by_kind_labels_cluster_labels_and_host_namespace_labels() -> None:
    plain = parse_discovery_rule(rule_obj("a-plain"))
    services = parse_discovery_rule(rule_obj("b-services", kinds=["Service"]))
    gold = parse_discovery_rule(rule_obj("c-gold", clusterSelector={"matchLabels": {"tier": "gold"}}))
    shop = parse_discovery_rule(rule_obj("d-shop", namespaceSelector={"matchLabels": {"team": "shop"}}))
    rules = [plain, services, gold, shop]

    def names(kind: SourceKind, labels: dict[str, str], cluster: dict[str, str],
              namespace: dict[str, str] | None) -> list[str]:
        return [r.name for r in selecting_rules(rules, kind, labels, cluster, namespace)]

    assert names(SourceKind.SERVICE, {"app": "web"}, {"tier": "gold"}, {"team": "shop"}) == [
        "a-plain", "b-services", "c-gold", "d-shop"]
    assert names(SourceKind.HTTP_ROUTE, {"app": "web"}, {}, {}) == ["a-plain"]
    assert names(SourceKind.SERVICE, {"app": "api"}, {"tier": "gold"}, {"team": "shop"}) == []
    # an unknown host namespace: the namespaceSelectors are not judged (the caller reports it)
    assert names(SourceKind.INGRESS, {"app": "web"}, {}, None) == ["a-plain", "d-shop"]


def test_a_rule_asks_its_policy_ttl_and_domain_and_each_cluster_its_weight() -> None:
    rule = parse_discovery_rule(rule_obj("w", recordTTL=60, loadBalancing={
        "policy": "Weighted", "weights": [{"target": "east", "weight": 3}, {"target": "us-west", "weight": 2}]}))
    east = rule_request(rule, "east", "us-east", "fleet", None)
    assert (east.domain, east.record_ttl, east.policy, east.weight) == ("fleet", 60, Policy.WEIGHTED, 3)
    assert rule_request(rule, "west", "us-west", "fleet", None).weight == 2  # its region's weight
    assert rule_request(rule, "north", "eu", "fleet", None).weight == 0  # unlisted, as on an intent
    failover = parse_discovery_rule(rule_obj("f", domainRef="zone", loadBalancing={
        "policy": "Failover", "failoverOrder": ["west", "east"]}))
    request = rule_request(failover, "east", "us-east", "fleet", {"httpGet": {"path": "/", "port": 80}})
    assert (request.domain, request.failover_order, request.weight) == ("zone", ("west", "east"), None)
    assert request.health_check == {"httpGet": {"path": "/", "port": 80}}


def test_a_rule_written_before_the_crd_checked_it_is_kept_with_its_problem() -> None:
    obj = read_discovery_rule({"metadata": {"name": "old", "generation": 3}, "spec": {"selector": {}}})
    assert obj.rule is None and obj.generation == 3
    assert obj.problem.startswith("spec.selector must name at least one label")
    status = rule_status(obj, (0, []), {}, RuleStatus(discovered=4), "2026-01-01T00:00:00Z")
    assert status.discovered == 4  # what it published stays, as its intents do
    assert [(c.type, c.status, c.reason) for c in status.conditions] == [
        ("Accepted", "False", "InvalidSpec"), ("Ready", "False", "InvalidSpec")]
    assert "the intents this rule generated stay as they are" in status.conditions[0].message


def key(name: str) -> IntentKey:
    return IntentKey(IntentKind.SERVICE, "shop", name)


def test_the_status_counts_what_the_rule_publishes_and_says_why_it_does_not_publish_the_rest() -> None:
    claims = {
        key("mine"): [RuleClaim("a", "east", "Service"), RuleClaim("a", "west", "Service", note="pods disagree: …"),
                      RuleClaim("b", "east", "Service")],
        key("annotated"): [RuleClaim("a", "east", "Service")],
        key("by-hand"): [RuleClaim("a", "west", "Service")],
        key("no-domain"): [RuleClaim("a", "east", "Service", problem="no Domain: …")],
        key("nowhere"): [RuleClaim("a", "east", "Service", "host namespace shop: no such namespace on the host",
                                   NAMESPACE_UNKNOWN)],
    }
    winners = {key("mine"): "discovery/a", key("annotated"): "annotations"}
    discovered, problems = rule_summary("a", claims, winners.get, lambda k: k == key("by-hand"))
    assert discovered == 1
    assert [(p.name, p.reason, p.clusters) for p in problems] == [
        ("annotated", CLAIMED_BY_ANNOTATION, ("east",)),
        ("by-hand", INTENT_EXISTS, ("west",)),
        ("mine", READINESS_PROBE, ("west",)),
        ("no-domain", CANNOT_GENERATE, ("east",)),
        ("nowhere", NAMESPACE_UNKNOWN, ("east",)),
    ]
    discovered_b, problems_b = rule_summary("b", claims, winners.get, lambda k: False)
    assert discovered_b == 0
    assert [(p.name, p.reason) for p in problems_b] == [("mine", CLAIMED_BY_RULE)]
    assert "DiscoveryRule a selects it too" in problems_b[0].message

    obj = read_discovery_rule(rule_obj("a", clusterSelector={"matchLabels": {"tier": "gold"}}))
    clusters = {"east": {"tier": "gold"}, "west": {}}
    status = rule_status(obj, (discovered, problems), clusters, RuleStatus(), "2026-01-01T00:00:00Z")
    assert (status.discovered, status.clusters, status.problem_count, status.observed_generation) == (1, 1, 5, 2)
    ready = status.conditions[1]
    assert (ready.type, ready.status, ready.reason) == ("Ready", "True", "Discovering")
    assert ready.message == "publishes 1 app; looks at 1 member cluster; 5 selected objects are not published " \
                            "(status.problems)"
    # written, read back, and computed again: no change, so nothing is written again
    again = rule_status(obj, (discovered, problems), clusters, parse_rule_status(status.to_json()),
                        "2026-01-01T00:05:00Z")
    assert again == status


def test_the_status_lists_at_most_twenty_problems_and_counts_them_all() -> None:
    claims = {key(f"app-{i:02}"): [RuleClaim("a", "east", "Service", problem="x")] for i in range(25)}
    summary = rule_summary("a", claims, lambda k: None, lambda k: False)
    status = rule_status(read_discovery_rule(rule_obj("a")), summary, {"east": {}}, RuleStatus(), "t")
    assert len(status.problems) == 20 and status.problem_count == 25
    assert status.problems[0].name == "app-00"


# --- the claim source over in-memory members: what holds, what goes ------------------------------------------------

@dataclass
class Inputs:
    member: Member
    namespaces: dict[str, dict[str, str]] = field(default_factory=lambda: {"shop": {}})

    def members(self) -> list[Member]:
        return [self.member]

    def namespace_labels(self, namespace: str) -> NamespaceLabels:
        labels = self.namespaces.get(namespace)
        return NamespaceLabels(namespace, labels, "" if labels is not None else "no such namespace on the host")


def discovery_with(member: Member, inputs: Inputs, *rules: dict[str, Any]) -> Discovery:
    found = Discovery(None, None, SOURCES, inputs, "fleet")  # type: ignore[arg-type] - never started: no I/O
    found.informer.synced.set()
    for raw in rules:
        found.informer.store[raw["metadata"]["name"]] = read_discovery_rule(raw)
    return found


CHECK = {"httpGet": {"path": "/healthz", "port": 80}}


def test_a_rule_that_cannot_be_read_or_an_unknown_namespace_holds_what_the_rule_generated() -> None:
    cluster = MemberCluster("east", "us-east", "us-east-1a", SecretKeyRef("fleetdns-system", "member-east"))
    member = Member(cluster)
    member.services[("shop", "web")] = MemberService("shop", "web", True, (), labels={"app": "web"}, created="t1")
    member.services[("shop", "internal")] = MemberService("shop", "internal", False, (), labels={"app": "web"})
    inputs = Inputs(member)
    discovery = discovery_with(member, inputs, rule_obj("r", healthCheck=CHECK))
    web, internal = key("web"), key("internal")

    claims = discovery.claims(web, member)
    assert claims is not None and [(c.origin, c.cluster, c.created) for c in claims] == [("discovery/r", "east", "t1")]
    assert claims[0].spec["healthCheck"]["httpGet"] == {"path": "/healthz", "port": 80, "scheme": "HTTP"}
    assert discovery.claims(internal, member) == []  # not a LoadBalancer Service: nothing to publish

    # the rule turned unreadable (written under an older CRD): its app is held, not deleted
    discovery.informer.store["r"] = read_discovery_rule({"metadata": {"name": "r"}, "spec": {"selector": {}}})
    assert discovery.claims(web, member) is None
    # readable again, but the host namespace's labels are unknown: held too
    discovery.informer.store["r"] = read_discovery_rule(rule_obj("r", healthCheck=CHECK))
    inputs.namespaces.clear()
    assert discovery.claims(web, member) is None
    # an app never claimed in an unknown namespace: nothing, and the rule says why
    member.services[("shop", "api")] = MemberService("shop", "api", True, (), labels={"app": "web"})
    assert discovery.claims(key("api"), member) == []
    _, problems = rule_summary("r", discovery.made(), lambda k: None, lambda k: False)
    assert [(p.name, p.reason) for p in problems] == [("api", NAMESPACE_UNKNOWN)]
    # the rule deleted: its apps have no claim left (the generator deletes their intents)
    inputs.namespaces["shop"] = {}
    del discovery.informer.store["r"]
    assert discovery.claims(web, member) == []
    assert discovery.claims(key("api"), member) == []
    assert discovery.made() == {}
