"""Auto-discovery (docs/design/sources.md §3): cluster-scoped ``DiscoveryRule``s select member objects by labels
(and their host namespace's labels, and their MemberCluster's labels); every app selected, by (kind, namespace,
name) across clusters, becomes one claim for the intent generator (aggregator/selfservice/generator.py).

Pure: the rules, the matching and each rule's status are decided here from plain data; the engine feeds in the
member objects, the host namespaces and the MemberClusters. Who wins an object: its ``fleetdns.io/global``
annotation beats every rule; among rules, the first by name; a hand-written intent of the same name beats both
(the generator never touches it). The losers are reported on the rule's status, never silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aggregator.model import (
    DEFAULT_TTL,
    Condition,
    IntentKind,
    LoadBalancing,
    ParseError,
    parse_conditions,
    parse_load_balancing,
)
from aggregator.selfservice.selectors import EVERYTHING, LabelSelector, SelectorError, parse_label_selector
from fleetdns.healthcheck import HealthCheck, HealthCheckError, parse_health_check

GENERATED_BY_DISCOVERY = "discovery"  # the value of fleetdns.io/generated-by on the intents rules generate
LABEL_DISCOVERY_RULE = "fleetdns.io/discovery-rule"  # the rule that generated an intent
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_LISTED_PROBLEMS = 20  # status.problems lists this many; status.problemCount counts all


class DiscoveryRuleError(ValueError):
    """A DiscoveryRule that cannot be used; the message names the field (the CRD refuses these at admission)."""


class SourceKind(StrEnum):
    """``spec.kinds``: the member objects a rule looks at, each published through one intent kind."""

    SERVICE = "Service"
    INGRESS = "Ingress"
    HTTP_ROUTE = "HTTPRoute"
    GRPC_ROUTE = "GRPCRoute"
    TLS_ROUTE = "TLSRoute"
    TCP_ROUTE = "TCPRoute"
    UDP_ROUTE = "UDPRoute"
    ROUTE = "Route"  # OpenShift

    @property
    def intent_kind(self) -> IntentKind:
        if self is SourceKind.SERVICE:
            return IntentKind.SERVICE
        if self is SourceKind.INGRESS:
            return IntentKind.INGRESS
        if self is SourceKind.ROUTE:
            return IntentKind.ROUTE
        return IntentKind.GATEWAY

    @property
    def has_hostnames(self) -> bool:
        """TCPRoute and UDPRoute name no host: they need ``fleetdns.io/hosts`` to be published."""
        return self not in (SourceKind.TCP_ROUTE, SourceKind.UDP_ROUTE)


ALL_KINDS = frozenset(SourceKind)


@dataclass(frozen=True)
class DiscoveryRule:
    """A parsed ``spec``: which objects, and the defaults of the intents generated for them."""

    name: str
    selector: LabelSelector
    kinds: frozenset[SourceKind] = ALL_KINDS
    namespace_selector: LabelSelector = EVERYTHING
    cluster_selector: LabelSelector = EVERYTHING
    domain_ref: str = ""  # "" → the aggregator's --self-service-domain
    record_ttl: int = DEFAULT_TTL
    load_balancing: LoadBalancing = field(default_factory=LoadBalancing)
    health_check: HealthCheck | None = None  # None → derived from the backend pods' readiness probe
    generation: int = 0


@dataclass(frozen=True)
class RuleProblem:
    """One ``status.problems[]`` entry: an object the rule selects but does not publish, and why."""

    kind: SourceKind
    namespace: str
    name: str
    reason: str
    message: str
    clusters: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "namespace": self.namespace, "name": self.name,
                "clusters": list(self.clusters), "reason": self.reason, "message": self.message}


@dataclass(frozen=True)
class RuleStatus:
    """What the aggregator writes on a DiscoveryRule (only when it differs from what the rule holds)."""

    discovered: int = 0
    clusters: int = 0
    problems: tuple[RuleProblem, ...] = ()
    problem_count: int = 0
    conditions: tuple[Condition, ...] = ()
    observed_generation: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"discovered": self.discovered, "clusters": self.clusters,
                "problems": [p.to_json() for p in self.problems], "problemCount": self.problem_count,
                "conditions": [c.to_json() for c in self.conditions], "observedGeneration": self.observed_generation}


@dataclass(frozen=True)
class RuleObject:
    """A DiscoveryRule as the host holds it: the rule (None when it cannot be read: ``problem`` says why) and the
    status last written on it."""

    name: str
    rule: DiscoveryRule | None
    problem: str = ""
    generation: int = 0
    status: dict[str, Any] = field(default_factory=dict, compare=False)  # ours: a status-only change is no change


def parse_discovery_rule(obj: Mapping[str, Any]) -> DiscoveryRule:
    """``spec`` → DiscoveryRule; DiscoveryRuleError names the field (the CRD refuses all of this at admission:
    this guards objects written before it did)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise DiscoveryRuleError("spec is required")
    try:
        selector = parse_label_selector(spec.get("selector"), "spec.selector")
        namespace_selector = parse_label_selector(spec.get("namespaceSelector"), "spec.namespaceSelector")
        cluster_selector = parse_label_selector(spec.get("clusterSelector"), "spec.clusterSelector")
        load_balancing = parse_load_balancing(spec.get("loadBalancing"))
        health_check = _health_check(spec.get("healthCheck"))
    except (SelectorError, ParseError, HealthCheckError) as error:
        raise DiscoveryRuleError(str(error)) from None
    if spec.get("selector") is None or selector.selects_everything:
        raise DiscoveryRuleError("spec.selector must name at least one label (matchLabels or matchExpressions): an "
                                 "empty selector would publish every object of every member fleet-wide")
    domain_ref = spec.get("domainRef") or ""
    if not isinstance(domain_ref, str) or domain_ref and not _DNS_LABEL.match(domain_ref):
        raise DiscoveryRuleError(f"spec.domainRef must be the name of a Domain (a DNS label), not {domain_ref!r}")
    ttl = spec.get("recordTTL", DEFAULT_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= 604800:
        raise DiscoveryRuleError(f"spec.recordTTL must be 1-604800 seconds, not {ttl!r}")
    generation = meta.get("generation")
    return DiscoveryRule(str(meta.get("name") or ""), selector, _kinds(spec.get("kinds")), namespace_selector,
                         cluster_selector, domain_ref, ttl, load_balancing, health_check,
                         generation if isinstance(generation, int) else 0)


def read_discovery_rule(obj: Mapping[str, Any]) -> RuleObject:
    """What the host informer keeps: never fails on a bad spec (dropping the rule would withdraw its intents);
    the problem is reported on its status and its intents stay as they are."""
    meta = obj.get("metadata") or {}
    generation = meta.get("generation")
    name, generation = str(meta.get("name") or ""), generation if isinstance(generation, int) else 0
    raw_status = obj.get("status")
    status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
    try:
        return RuleObject(name, parse_discovery_rule(obj), "", generation, status)
    except DiscoveryRuleError as error:
        return RuleObject(name, None, str(error), generation, status)


def _kinds(raw: Any) -> frozenset[SourceKind]:
    if raw is None:
        return ALL_KINDS
    if not isinstance(raw, list) or not raw:
        raise DiscoveryRuleError(f"spec.kinds must list at least one of {', '.join(SourceKind)}")
    kinds = set()
    for index, value in enumerate(raw):
        try:
            kinds.add(SourceKind(value))
        except ValueError:
            raise DiscoveryRuleError(f"spec.kinds[{index}] must be one of {', '.join(SourceKind)}, "
                                     f"not {value!r}") from None
    return frozenset(kinds)


def _health_check(raw: Any) -> HealthCheck | None:
    check = parse_health_check(raw)
    if check is not None and check.http_get is not None and check.http_get.host:
        raise DiscoveryRuleError("spec.healthCheck.httpGet.host cannot be set on a DiscoveryRule: every generated "
                                 "intent sends its own name as Host (and SNI)")
    return check


def rule_conditions(status: Mapping[str, Any]) -> tuple[Condition, ...]:
    """The conditions a rule's status holds (to keep their lastTransitionTime when nothing changed)."""
    return parse_conditions(status.get("conditions"))


def sorted_rules(rules: Iterable[RuleObject]) -> list[DiscoveryRule]:
    """The usable rules in the order that decides ties: by name (the first by name wins an object)."""
    return sorted((r.rule for r in rules if r.rule is not None), key=lambda rule: rule.name)
