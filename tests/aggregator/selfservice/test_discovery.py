"""Auto-discovery's pure parts: label selectors, the health check derived from the pods' readiness probes, which
rule wins an object and what each rule's status says (docs/design/sources.md §3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from aggregator.health.readiness import MemberView, Reachability
from aggregator.model import (
    IntentKey,
    IntentKind,
    MemberCluster,
    MemberService,
    Policy,
    SecretKeyRef,
    ServicePort,
    parse_member_service,
)
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
from aggregator.selfservice.pod_probes import (
    ProbeVerdict,
    common_probe,
    derive_health_check,
    pod_probe,
    read_verdict,
    selector_query,
)
from aggregator.sources import SOURCES
from aggregator.sources.base import MemberKind
from fleetdns.healthcheck import Scheme
from fleetdns.kubeapi import KubeError
from fleetdns.labelselector import SelectorError, parse_label_selector

pytestmark = pytest.mark.unit


# --- label selectors ---------------------------------------------------------------------------------------------

def test_a_selector_needs_every_label_and_expression_to_hold() -> None:
    selector = parse_label_selector({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["front", "edge"]},
        {"key": "internal", "operator": "DoesNotExist"},
        {"key": "env", "operator": "NotIn", "values": ["dev"]}]}, "spec.selector")
    assert selector.matches({"app": "web", "tier": "edge"})
    assert selector.matches({"app": "web", "tier": "front", "env": "prod"})
    assert not selector.matches({"app": "web", "tier": "back"})
    assert not selector.matches({"app": "web", "tier": "edge", "internal": "yes"})
    assert not selector.matches({"app": "web", "tier": "edge", "env": "dev"})
    assert not selector.matches({"tier": "edge"})
    assert str(selector) == "app=web,tier in (edge,front),!internal,env notin (dev)"


def test_an_absent_or_empty_selector_selects_everything_and_exists_needs_the_key() -> None:
    assert parse_label_selector(None, "x").matches({})
    assert parse_label_selector({}, "x").matches({"any": "thing"})
    exists = parse_label_selector({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, "x")
    assert exists.matches({"team": ""}) and not exists.matches({})


@pytest.mark.parametrize(("raw", "message"), [
    ("app=web", "spec.selector must be an object"),
    ({"matchLabels": {"app": 1}}, "spec.selector.matchLabels['app'] must be a string"),
    ({"matchExpressions": [{"key": "a", "operator": "Like", "values": ["x"]}]},
     "spec.selector.matchExpressions[0].operator must be one of In, NotIn, Exists, DoesNotExist"),
    ({"matchExpressions": [{"key": "a", "operator": "In"}]}, "values must not be empty for operator In"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}, "values must be empty"),
    ({"matchExpressions": [{"operator": "Exists"}]}, "spec.selector.matchExpressions[0].key is required"),
])
def test_a_bad_selector_names_the_field(raw: Any, message: str) -> None:
    with pytest.raises(SelectorError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_label_selector(raw, "spec.selector")


# --- the health check from the pods' readiness probes ----------------------------------------------------------

def pod(probe: dict[str, Any] | None, ports: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "ports": ports or [{"name": "http", "containerPort": 8080}]}
    if probe is not None:
        container["readinessProbe"] = probe
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "sidecar"}, container]}, **extra}


HTTP_PROBE = {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5, "failureThreshold": 2}


def service_ports(*entries: dict[str, Any]) -> tuple[ServicePort, ...]:
    return parse_member_service({"metadata": {"name": "web", "namespace": "shop"},
                                 "spec": {"type": "LoadBalancer", "ports": list(entries)}}).ports


def test_a_probe_on_a_container_port_number_is_sent_to_the_service_port_that_targets_it() -> None:
    verdict = common_probe([pod_probe(pod(HTTP_PROBE))] * 3)
    ports = service_ports({"name": "metrics", "port": 9090, "targetPort": 9090},
                          {"name": "web", "port": 80, "targetPort": 8080})
    derived = derive_health_check(verdict, ports)
    assert derived.check is not None and derived.check.http_get is not None
    assert (derived.check.http_get.port, derived.check.http_get.path, derived.check.http_get.scheme) == (
        80, "/ready", Scheme.HTTP)
    assert derived.check.http_get.host == ""  # the generated intent's own name is sent
    # the probe's timing comes along (kubelet's defaults where it sets none)
    assert (derived.check.period_seconds, derived.check.timeout_seconds, derived.check.failure_threshold,
            derived.check.success_threshold) == (5, 1, 2, 1)
    assert derived.note == ""


def test_a_named_probe_port_matches_a_target_port_by_name_or_by_the_number_it_names() -> None:
    named = common_probe([pod_probe(pod({"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTPS"}}))])
    assert named.probe is not None and (named.probe.port, named.probe.port_name) == (8080, "http")
    by_name = derive_health_check(named, service_ports({"port": 443, "targetPort": "http"}))
    by_number = derive_health_check(named, service_ports({"port": 8443, "targetPort": 8080}))
    assert by_name.check is not None and by_name.check.http_get is not None
    assert (by_name.check.http_get.port, by_name.check.http_get.scheme) == (443, Scheme.HTTPS)
    assert by_number.check is not None and by_number.check.http_get is not None
    assert by_number.check.http_get.port == 8443
    # a probe by number matches a targetPort naming that container port too
    numbered = common_probe([pod_probe(pod(HTTP_PROBE))])
    assert derive_health_check(numbered, service_ports({"port": 80, "targetPort": "http"})).check is not None


def test_a_service_port_without_target_port_targets_its_own_number() -> None:
    verdict = common_probe([pod_probe(pod({"httpGet": {"path": "/", "port": 8080}}))])
    derived = derive_health_check(verdict, service_ports({"port": 8080}))
    assert derived.check is not None and derived.check.port == 8080


def test_no_service_port_targeting_the_probe_means_no_check_and_says_why() -> None:
    verdict = common_probe([pod_probe(pod(HTTP_PROBE))])
    derived = derive_health_check(verdict, service_ports({"port": 80, "targetPort": 9000},
                                                         {"port": 8080, "targetPort": 8080, "protocol": "UDP"}))
    assert derived.check is None
    assert derived.note == "no Service port targets the readiness probe's container port http: no health check"


@pytest.mark.parametrize("probe", [
    None,
    {"exec": {"command": ["true"]}},
    {"tcpSocket": {"port": 8080}},
    {"httpGet": {"path": "/", "port": "admin"}},  # names no container port: kubelet could not probe it either
])
def test_pods_without_an_http_readiness_probe_give_no_check(probe: dict[str, Any] | None) -> None:
    verdict = common_probe([pod_probe(pod(probe)), pod_probe(pod(probe))])
    assert verdict.probe is None and verdict.pods == 2
    assert derive_health_check(verdict, service_ports({"port": 80, "targetPort": 8080})).check is None


def test_pods_that_disagree_give_the_most_common_probe_and_the_disagreement_is_reported() -> None:
    old = pod_probe(pod({"httpGet": {"path": "/ready", "port": 8080}}))
    new = pod_probe(pod({"httpGet": {"path": "/v2/ready", "port": 8080}}))
    verdict = common_probe([old, new, new, None])
    assert verdict.probe == new
    assert verdict.note == ("pods disagree: 2 of 4 with HTTP /v2/ready on container port http (8080) (used); "
                            "1 with HTTP /ready on container port http (8080); 1 with no HTTP readiness probe")
    # a tie goes to the first pod's probe; pods without a probe never win while one has a probe
    assert common_probe([old, new]).probe == old
    assert common_probe([None, None, old]).probe == old


def test_an_ingress_or_route_is_checked_on_port_80_or_443_of_its_ingress_by_the_probes_scheme() -> None:
    http = derive_health_check(common_probe([pod_probe(pod(HTTP_PROBE))]), None)
    https = derive_health_check(common_probe([pod_probe(pod({"httpGet": {"path": "/s", "port": 8080,
                                                                         "scheme": "HTTPS"}}))]), None)
    assert http.check is not None and http.check.http_get is not None and http.check.http_get.port == 80
    assert https.check is not None and https.check.http_get is not None
    assert (https.check.http_get.port, https.check.http_get.scheme, https.check.http_get.path) == (
        443, Scheme.HTTPS, "/s")


def test_a_probe_timeout_longer_than_its_period_is_cut_to_the_period() -> None:
    verdict = common_probe([pod_probe(pod({"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 2,
                                           "timeoutSeconds": 5}))])
    check = derive_health_check(verdict, None).check
    assert check is not None and (check.period_seconds, check.timeout_seconds) == (2, 2)


def test_pods_being_deleted_do_not_count_and_a_failed_list_gives_no_check_with_the_reason() -> None:
    leaving = pod({"httpGet": {"path": "/old", "port": 8080}}, metadata={"name": "x", "deletionTimestamp": "t"})
    staying = pod(HTTP_PROBE)
    verdict = read_verdict(lambda ns, sel: [leaving, staying], ("east", "shop", "app=web"))
    assert verdict.probe is not None and verdict.probe.path == "/ready" and verdict.pods == 1

    def forbidden(namespace: str, selector: str) -> list[dict[str, Any]]:
        raise KubeError(403, "Forbidden", "pods is forbidden")

    failed = read_verdict(forbidden, ("east", "shop", "app=web"))
    assert failed == ProbeVerdict(None, 0, "cannot list pods in east: 403 Forbidden", error=True)
    assert derive_health_check(failed, ()).check is None


def test_a_services_selector_becomes_an_equality_label_query() -> None:
    assert selector_query({"tier": "front", "app": "web"}.items()) == "app=web,tier=front"


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
class Member:
    """One member as discovery reads it: its Services."""

    cluster: MemberCluster
    services: dict[tuple[str, str], MemberService] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.cluster.name

    def view(self) -> MemberView:
        return MemberView(self.cluster, Reachability.CONNECTED)

    def get(self, kind: MemberKind, namespace: str, name: str) -> Any | None:
        return self.services.get((namespace, name)) if kind.name == "services" else None

    def ready_endpoints(self, namespace: str, service: str) -> int:
        return 0


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
