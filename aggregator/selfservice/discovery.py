"""Auto-discovery (docs/design/sources.md §3): cluster-scoped ``DiscoveryRule``s select member objects by labels
(and their host namespace's labels, and their MemberCluster's labels); every app selected, by (kind, namespace,
name) across clusters, becomes one claim for the intent generator (aggregator/selfservice/generator.py).

Pure: the rules, the matching and each rule's status are decided here from plain data; the engine feeds in the
member objects, the host namespaces and the MemberClusters. Who wins an object: its ``fleetdns.io/global``
annotation beats every rule; among rules, the first by name; a hand-written intent of the same name beats both
(the generator never touches it). The losers are reported on the rule's status, never silently dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from aggregator.model import (
    DEFAULT_TTL,
    Condition,
    IntentKey,
    LoadBalancing,
    MemberCluster,
    ParseError,
    Policy,
    parse_conditions,
    parse_load_balancing,
)
from aggregator.registry.domains import NamespaceLabels
from aggregator.render.status import now_rfc3339, stamp_all
from aggregator.selfservice.generator import ORIGIN_ANNOTATIONS, ORIGIN_DISCOVERY
from aggregator.selfservice.pod_probes import (
    DerivedCheck,
    PodProbes,
    PodsKey,
    combine,
    derive_health_check,
    health_check_spec,
    selector_query,
)
from aggregator.sources.base import MemberObjects, SourceRegistry
from aggregator.sources.request import AppRequest, Claim, RequestError
from fleetdns.apipaths import DISCOVERY_RULES, SERVICES, host_cannot_read
from fleetdns.dnsname import is_dns_label
from fleetdns.healthcheck import HealthCheck, HealthCheckError, parse_health_check
from fleetdns.informer import Informer
from fleetdns.kubeapi import KubeClient, KubeError
from fleetdns.labelselector import EVERYTHING, LabelSelector, SelectorError, parse_label_selector

logger = logging.getLogger("aggregator.selfservice.discovery")
HOSTS_ANNOTATION = "fleetdns.io/hosts"  # honoured on discovered objects too (TCPRoute and UDPRoute need it)

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

    kind: str  # the member object's kind
    namespace: str
    name: str
    reason: str
    message: str
    clusters: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name,
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
    if not isinstance(domain_ref, str) or domain_ref and not is_dns_label(domain_ref):
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


def sorted_rules(rules: Iterable[RuleObject]) -> list[DiscoveryRule]:
    """The usable rules in the order that decides ties: by name (the first by name wins an object)."""
    return sorted((r.rule for r in rules if r.rule is not None), key=lambda rule: rule.name)




# --- which rules select an object, and what they ask of its intent ------------------------------------------------

def selecting_rules(rules: Sequence[DiscoveryRule], kind: SourceKind, labels: Mapping[str, str],
                    cluster_labels: Mapping[str, str],
                    namespace_labels: Mapping[str, str] | None) -> list[DiscoveryRule]:
    """The rules (in name order) that select one member object: its kind, its labels, its MemberCluster's labels and
    its host namespace's labels (None: unknown; the namespaceSelectors are then not judged and the caller reports
    that no intent can be generated there)."""
    return [rule for rule in rules
            if kind in rule.kinds and rule.selector.matches(labels) and rule.cluster_selector.matches(cluster_labels)
            and (namespace_labels is None or rule.namespace_selector.matches(namespace_labels))]


def cluster_weight(load_balancing: LoadBalancing, cluster: str, region: str) -> int | None:
    """This cluster's weight under a rule's Weighted policy: its own entry, else its region's, else 0 (unlisted
    clusters weigh 0, as on an intent); None under any other policy. A region's weight goes to each of its
    clusters: the generated intent lists every cluster by name."""
    if load_balancing.policy is not Policy.WEIGHTED:
        return None
    weights = {w.target: w.weight for w in load_balancing.weights}
    return weights.get(cluster, weights.get(region, 0))


def rule_request(rule: DiscoveryRule, cluster: str, region: str, default_domain: str,
                 health_check: Mapping[str, Any] | None, hosts: tuple[str, ...] = ()) -> AppRequest:
    """What a rule asks of the intent of one object it selected in ``cluster``."""
    lb = rule.load_balancing
    return AppRequest(domain=rule.domain_ref or default_domain, hosts=hosts, policy=lb.policy,
                      failover_order=lb.failover_order, weight=cluster_weight(lb, cluster, region),
                      record_ttl=rule.record_ttl, health_check=health_check)


def origin_of(rule: str) -> str:
    """The generator's origin of a rule's claims (``discovery/<rule>``)."""
    return f"{ORIGIN_DISCOVERY}/{rule}"


# --- each rule's status, from the claims it made and who won them -------------------------------------------------

ACCEPTED = "Accepted"
READY = "Ready"
INVALID_SPEC = "InvalidSpec"
DISCOVERING = "Discovering"
CLAIMED_BY_ANNOTATION = "ClaimedByAnnotation"  # the object is annotated fleetdns.io/global: annotations beat rules
CLAIMED_BY_RULE = "ClaimedByRule"  # an earlier rule by name selects it too
INTENT_EXISTS = "IntentExists"  # a hand-written intent of that name: never replaced
CANNOT_GENERATE = "CannotGenerate"  # the request builds no intent (the message says why: no Domain, no hosts)
NAMESPACE_UNKNOWN = "NamespaceUnknown"  # the host namespace does not exist or its labels cannot be read
READINESS_PROBE = "ReadinessProbe"  # published; its derived check is not the plain probe (pods disagree, no port)


@dataclass(frozen=True)
class RuleClaim:
    """What one rule asked of one app in one cluster, remembered for the rule's status."""

    rule: str
    cluster: str
    object_kind: str
    problem: str = ""  # the claim builds nothing: why
    reason: str = CANNOT_GENERATE
    note: str = ""  # published, but the derived check is not the plain probe: why (pods disagree, no port)


def rule_summary(rule: str, claims: Mapping[IntentKey, Iterable[RuleClaim]],
                 winner: Callable[[IntentKey], str | None],
                 intent_exists: Callable[[IntentKey], bool]) -> tuple[int, list[RuleProblem]]:
    """The apps the rule publishes (the generated intent follows it) and the objects it selects but does not
    publish, with why: claimed by annotations or by an earlier rule, a hand-written intent, or a request that
    builds nothing."""
    discovered, problems = 0, []
    for key, made in sorted(claims.items()):
        mine = [c for c in made if c.rule == rule]
        if not mine:
            continue
        won = winner(key)
        clusters = tuple(sorted({c.cluster for c in mine}))
        kind = mine[0].object_kind

        def problem(reason: str, message: str, on: tuple[str, ...] = clusters) -> RuleProblem:
            return RuleProblem(kind, key.namespace, key.name, reason, message, on)  # noqa: B023 - used at once

        if won == origin_of(rule):
            discovered += 1
            bad = [c for c in mine if c.problem]
            if bad:  # some clusters' requests build nothing; the others publish
                problems.append(problem(bad[0].reason, bad[0].problem, tuple(sorted({c.cluster for c in bad}))))
            noted = [c for c in mine if c.note and not c.problem]
            if noted:
                problems.append(problem(READINESS_PROBE, noted[0].note, tuple(sorted({c.cluster for c in noted}))))
        elif won == ORIGIN_ANNOTATIONS:
            problems.append(problem(CLAIMED_BY_ANNOTATION, "annotated fleetdns.io/global: the annotations publish "
                                                           "it (annotations beat rules)"))
        elif won is not None and won.startswith(f"{ORIGIN_DISCOVERY}/"):
            other = won.partition("/")[2]
            problems.append(problem(CLAIMED_BY_RULE, f"DiscoveryRule {other} selects it too and publishes it (the "
                                                     f"first rule by name wins)"))
        elif any(c.problem for c in mine):
            first = next(c for c in mine if c.problem)
            problems.append(problem(first.reason, first.problem))
        elif intent_exists(key):
            problems.append(problem(INTENT_EXISTS, f"the {key.kind} {key.namespace}/{key.name} was written by hand: "
                                                   f"a generated intent never replaces it"))
    return discovered, problems


def rule_status(obj: RuleObject, summary: tuple[int, list[RuleProblem]], clusters: Mapping[str, Mapping[str, str]],
                old: RuleStatus, now: str) -> RuleStatus:
    """A rule's status: Accepted and Ready, the apps it publishes, the objects it selects but does not publish."""
    if obj.rule is None:
        message = f"{obj.problem}; the intents this rule generated stay as they are until it is fixed"
        conditions = (Condition(ACCEPTED, "False", INVALID_SPEC, message),
                      Condition(READY, "False", INVALID_SPEC, message))
        return RuleStatus(old.discovered, old.clusters, old.problems, old.problem_count,
                          stamp_all(conditions, obj.generation, old.conditions, now), obj.generation)
    rule = obj.rule
    discovered, problems = summary
    looked_at = sorted(name for name, labels in clusters.items() if rule.cluster_selector.matches(labels))
    message = (f"publishes {discovered} app{'' if discovered == 1 else 's'}; looks at "
               f"{len(looked_at)} member cluster{'' if len(looked_at) == 1 else 's'}")
    if problems:
        message += f"; {len(problems)} selected object{' is' if len(problems) == 1 else 's are'} not published " \
                   f"(status.problems)"
    conditions = (Condition(ACCEPTED, "True", ACCEPTED, f"kinds: {', '.join(sorted(map(str, rule.kinds)))}; "
                                                        f"selector: {rule.selector}"),
                  Condition(READY, "True", DISCOVERING, message))
    return RuleStatus(discovered, len(looked_at), tuple(problems[:MAX_LISTED_PROBLEMS]), len(problems),
                      stamp_all(conditions, obj.generation, old.conditions, now), obj.generation)


def parse_rule_status(raw: Mapping[str, Any]) -> RuleStatus:
    """The status a rule holds (what the leader compares with before writing)."""
    problems = []
    for entry in raw.get("problems") or []:
        if isinstance(entry, dict):
            problems.append(RuleProblem(str(entry.get("kind") or ""), str(entry.get("namespace") or ""),
                                        str(entry.get("name") or ""), str(entry.get("reason") or ""),
                                        str(entry.get("message") or ""),
                                        tuple(str(c) for c in entry.get("clusters") or [])))

    def integer(name: str) -> int:
        value = raw.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return RuleStatus(integer("discovered"), integer("clusters"), tuple(problems), integer("problemCount"),
                      parse_conditions(raw.get("conditions")), integer("observedGeneration"))


# --- the claim source: rules on the host, claims from the member caches, status ---------------------------------

STATUS_EVERY = 5.0  # seconds between looks at every rule's status (a claim change looks sooner)
STATUS_DEBOUNCE = 0.3  # after a change, so that the generator has decided who wins first
_PENDING = object()  # a derived check whose pods are being listed


class DiscoveryInputs(Protocol):
    """What discovery reads besides its own rules; the Engine implements it."""

    def members(self) -> Sequence[Any]:
        """The member connections (``name``, ``client``)."""
        ...

    def member_cluster(self, name: str) -> MemberCluster | None: ...

    def namespace_labels(self, namespace: str) -> NamespaceLabels: ...

    def intent(self, key: IntentKey) -> Any | None: ...

    def may_write(self) -> bool: ...

    def ready(self) -> tuple[bool, str]: ...


class GeneratorHooks(Protocol):
    """What discovery asks of the intent generator (aggregator/selfservice/generator.py)."""

    def touch(self, keys: Iterable[IntentKey]) -> None: ...

    def touch_all(self) -> None: ...

    def winning_origin(self, key: IntentKey) -> str | None: ...


class Discovery:
    """The DiscoveryRules (a host informer), the claims they make on generated intents (a claim source of the
    generator: ``claims``), the pods' readiness probes behind the derived checks, and each rule's status (written by
    the leader, only when it changes)."""

    def __init__(self, host: KubeClient, writer: KubeClient, sources: SourceRegistry, inputs: DiscoveryInputs,
                 default_domain: str = "", on_write: Callable[[], None] = lambda: None) -> None:
        self.sources = sources
        self.inputs = inputs
        self.default_domain = default_domain
        self.writer = writer  # fenced: writes only while leading
        self._on_write = on_write  # counts a status write (metrics)
        self.informer: Informer[RuleObject] = Informer(
            "host/discoveryrules", host, DISCOVERY_RULES.path(), read_discovery_rule, self._rule_changed,
            on_state=self._informer_state)
        self.probes = PodProbes(self._probe_ready)
        self._generator: GeneratorHooks | None = None
        self._refused = ""  # the rules cannot be listed (403/404): discovery is off, said once
        self._lock = threading.Lock()
        self._claims: dict[IntentKey, dict[str, tuple[RuleClaim, ...]]] = {}  # per cluster, what the rules asked
        self._pods_users: dict[PodsKey, set[IntentKey]] = {}
        self._services_seen: dict[tuple[PodsKey, str], Any] = {}  # (pods, Service) → the Service and its readiness
        self._written: dict[str, RuleStatus] = {}
        self._wake = threading.Event()
        self._rescan = threading.Event()
        self._stopping = threading.Event()

    # --- lifecycle

    def start(self, generator: GeneratorHooks) -> Discovery:
        self._generator = generator
        self.probes.start()
        self.informer.start()
        threading.Thread(target=self._status_loop, name="discovery-status", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self.informer.stop()
        self.probes.stop()

    @property
    def listed(self) -> bool:
        """The rules have listed once, or cannot be listed at all (no CRD, no RBAC: discovery is off)."""
        return self.informer.synced.is_set() or bool(self._refused)

    def rules(self) -> list[DiscoveryRule]:
        return [] if self._refused else sorted_rules(list(self.informer.store.values()))

    # --- what changes which intents

    def _rule_changed(self, old: RuleObject | None, new: RuleObject | None) -> None:
        if old is not None and new is not None and old == new:
            return  # our own status write coming back
        self.rescan()

    def namespace_changed(self) -> None:
        """A host namespace came, went or changed its labels: namespaceSelectors may select other objects now."""
        if self.rules():
            self.rescan()

    def clusters_changed(self) -> None:
        """A MemberCluster came, went or changed its labels: clusterSelectors may select other objects now."""
        if self.rules():
            self.rescan()

    def rescan(self) -> None:
        """Look for what the rules select now (off the calling thread, once for a burst of changes): the intents
        claimed before and every member object a rule selects are generated again."""
        self._rescan.set()
        self._wake.set()

    def _scan(self) -> None:
        rules = self.rules()
        keys: set[IntentKey] = set()
        with self._lock:
            keys.update(self._claims)
        for member in self.inputs.members():
            cluster = member.cluster
            for source in self.sources:
                for kind in source.exposed_kinds:
                    try:
                        object_kind = SourceKind(kind.resource.kind)
                    except ValueError:
                        continue
                    for obj in member.objects(kind):
                        labels = getattr(obj, "labels", {})
                        # the namespace's labels are judged by claims(), which reports an unknown namespace
                        if selecting_rules(rules, object_kind, labels, cluster.labels, None):
                            keys.add(IntentKey(source.kind, obj.namespace, obj.name))
        if self._generator is not None:
            self._generator.touch(keys)
        logger.info("DiscoveryRules looked at every member object", extra={
            "rules": len(rules), "apps": len(keys)})

    def _probe_ready(self, key: PodsKey) -> None:
        with self._lock:
            users = list(self._pods_users.get(key, ()))
        if users and self._generator is not None:
            self._generator.touch(users)

    def _informer_state(self, connected: bool, detail: str, status: int) -> None:
        if status in (403, 404):
            if not self._refused:
                logger.warning(f"{host_cannot_read(DISCOVERY_RULES, status)}; auto-discovery is off meanwhile",
                               extra={"status": status, "detail": detail})
            self._refused = f"{status} {detail}"
        elif connected and self._refused:
            logger.info("DiscoveryRules readable again")
            self._refused = ""
            self.rescan()

    # --- the claim source

    def claims(self, key: IntentKey, member: MemberObjects) -> list[Claim] | None:
        """Every rule's claim on intent ``key`` from one member's objects (None: the rules have not listed yet, or
        a derived check's pods are still being read; that member's last claims stand meanwhile)."""
        if not self.listed:
            return None
        rules = self.rules()
        cluster = member.view().cluster
        with self._lock:
            before_all = [c for per in self._claims.get(key, {}).values() for c in per]
        if not rules and not before_all:
            return []
        if before_all and self._held_by_invalid_rule(before_all):
            return None  # a rule that cannot be read keeps its intents as they are until it is fixed
        try:
            source = self.sources.for_kind(key.kind)
        except KeyError:
            return []
        made: list[Claim] = []
        notes: list[RuleClaim] = []
        namespace = self.inputs.namespace_labels(key.namespace) if rules else None
        for kind in source.exposed_kinds if rules else ():
            try:
                object_kind = SourceKind(kind.resource.kind)
            except ValueError:
                continue
            obj = member.get(kind, key.namespace, key.name)
            if obj is None or object_kind is SourceKind.SERVICE and not getattr(obj, "is_load_balancer", False):
                continue  # only a LoadBalancer Service is reachable from outside its cluster
            assert namespace is not None
            selecting = selecting_rules(rules, object_kind, getattr(obj, "labels", {}), cluster.labels,
                                        namespace.labels)
            if not selecting:
                continue
            if namespace.labels is None:
                if any(c.reason != NAMESPACE_UNKNOWN for c in before_all):
                    return None  # claimed before: an unknown namespace never deletes what was generated
                notes += [RuleClaim(r.name, cluster.name, str(object_kind),
                                    f"host namespace {key.namespace}: {namespace.unknown} (the intent is generated "
                                    f"there)", NAMESPACE_UNKNOWN) for r in selecting]
                continue
            derived: Any = None
            if any(r.health_check is None for r in selecting):
                derived = self._derived_check(key, member, object_kind, obj)
                if derived is _PENDING:
                    return None
            for rule in selecting:
                claim, note = self._claim(key, cluster, object_kind, obj, rule, source, derived)
                made.append(claim)
                notes.append(note)
        with self._lock:
            per_cluster = self._claims.setdefault(key, {})
            before = per_cluster.get(cluster.name)
            if notes:
                per_cluster[cluster.name] = tuple(notes)
            else:
                per_cluster.pop(cluster.name, None)
                if not per_cluster:
                    del self._claims[key]
        if before or notes:
            self._wake.set()
        return made

    def made(self) -> dict[IntentKey, tuple[RuleClaim, ...]]:
        """What the rules asked of each app, over every member (what the rules' status is made of)."""
        with self._lock:
            return self._made(None)

    def _made(self, clusters: Mapping[str, Any] | None) -> dict[IntentKey, tuple[RuleClaim, ...]]:
        return {key: tuple(c for cluster, made in per.items() if clusters is None or cluster in clusters for c in made)
                for key, per in self._claims.items()}

    def _held_by_invalid_rule(self, made: Sequence[RuleClaim]) -> bool:
        invalid = {obj.name for obj in list(self.informer.store.values()) if obj.rule is None}
        return bool(invalid) and any(c.rule in invalid for c in made)

    def _claim(self, key: IntentKey, cluster: MemberCluster, kind: SourceKind, obj: Any, rule: DiscoveryRule,
               source: Any, derived: DerivedCheck | None) -> tuple[Claim, RuleClaim]:
        check = health_check_spec(rule.health_check) if rule.health_check is not None else \
            health_check_spec(derived.check) if derived is not None and derived.check is not None else None
        note = derived.note if rule.health_check is None and derived is not None else ""
        created = str(getattr(obj, "created", ""))
        try:
            request = rule_request(rule, cluster.name, cluster.region, self.default_domain, check,
                                   _hosts(getattr(obj, "annotations", {})))
            spec = source.generated_spec(obj, request)
        except RequestError as error:
            return (Claim(key, cluster.name, str(kind), created, origin_of(rule.name), problem=str(error)),
                    RuleClaim(rule.name, cluster.name, str(kind), problem=str(error)))
        return (Claim(key, cluster.name, str(kind), created, origin_of(rule.name), spec, request.weight),
                RuleClaim(rule.name, cluster.name, str(kind), note=note))

    def _derived_check(self, key: IntentKey, member: MemberObjects, kind: SourceKind, obj: Any) -> Any:
        """The check from the app's pods' readiness probe (``_PENDING`` while they are being listed)."""
        client = next((m.client for m in self.inputs.members() if m.name == member.name), None)
        if client is None:
            return DerivedCheck(None, f"{member.name} cannot be read: no readiness probe")
        if kind is SourceKind.SERVICE:
            services = [(key.namespace, obj)]
        else:
            service_kind = next((k for k in self.sources.member_kinds() if k.resource == SERVICES), None)
            services = [(ns, svc) for ns, name in _backend_services(obj, key.namespace) if service_kind is not None
                        and (svc := member.get(service_kind, ns, name)) is not None]
        verdicts = []
        for namespace, service in services:
            selector = tuple(getattr(service, "selector", ()))
            if not selector:
                continue  # endpoints managed by hand: no pods to read
            pods_key = (member.name, namespace, selector_query(selector))
            name = str(getattr(service, "name", ""))
            # The Service or its ready endpoints changed (a rollout, pods that came after it): read its pods again.
            state = (service, member.ready_endpoints(namespace, name))
            with self._lock:
                self._pods_users.setdefault(pods_key, set()).add(key)
                seen = (pods_key, name)
                changed = seen in self._services_seen and self._services_seen[seen] != state
                self._services_seen[seen] = state
            if changed:
                self.probes.refresh(pods_key, client)
            verdict = self.probes.lookup(pods_key, client)
            if verdict is None:
                return _PENDING
            verdicts.append(verdict)
        if not verdicts:
            return DerivedCheck(None, "")
        ports = getattr(obj, "ports", ()) if kind is SourceKind.SERVICE else None
        return derive_health_check(combine(verdicts), ports)

    # --- status (leader only)

    def _status_loop(self) -> None:
        while not self._stopping.is_set():
            woken = self._wake.wait(STATUS_EVERY)
            if self._stopping.is_set():
                return
            if woken:
                self._stopping.wait(STATUS_DEBOUNCE)
                self._wake.clear()
            if self._rescan.is_set() and self.listed:
                self._rescan.clear()
                self._scan()
                self._stopping.wait(STATUS_DEBOUNCE)  # the generator decides first
            if not self.inputs.may_write():
                self._written.clear()  # another replica may write meanwhile
                continue
            if not self.inputs.ready()[0] or not self.listed:
                continue
            try:
                self.write_statuses()
            except Exception as error:  # noqa: BLE001 - the next pass tries again; discovery itself goes on
                logger.warning("DiscoveryRule status not written", extra={"error": str(error)})

    def write_statuses(self) -> None:
        """Bring every rule's status up to date (each written only when it differs from what it holds)."""
        clusters = {m.name: m.cluster.labels for m in self.inputs.members()}
        with self._lock:
            for key in [k for k, v in self._claims.items() if not set(v) & set(clusters)]:
                del self._claims[key]  # claims of members that are gone
            claims = self._made(clusters)
            used = {p for p, users in self._pods_users.items() if users & set(claims)}
            for pods_key in [p for p in self._pods_users if p not in used]:
                del self._pods_users[pods_key]
            for seen in [s for s in self._services_seen if s[0] not in used]:
                del self._services_seen[seen]
        self.probes.retain(used)
        winner = self._generator.winning_origin if self._generator is not None else (lambda key: None)
        now = now_rfc3339()
        for obj in sorted(self.informer.store.values(), key=lambda o: o.name):
            summary = rule_summary(obj.name, claims, winner, lambda key: self.inputs.intent(key) is not None)
            old = self._written.get(obj.name) or parse_rule_status(obj.status)
            new = rule_status(obj, summary, clusters, old, now)
            if new == old:
                continue
            try:
                self.writer.merge_patch(DISCOVERY_RULES.path(name=obj.name, subresource="status"),
                                        {"status": new.to_json()})
            except KubeError as error:
                if error.status == 404:
                    continue  # deleted meanwhile
                raise
            self._written[obj.name] = new
            self._on_write()
            logger.info("DiscoveryRule status written", extra={
                "rule": obj.name, "discovered": new.discovered, "problems": new.problem_count})


def _hosts(annotations: Mapping[str, str]) -> tuple[str, ...]:
    """``fleetdns.io/hosts`` on a discovered object: the names it asks for (TCPRoute and UDPRoute have none)."""
    return tuple(h.strip() for h in annotations.get(HOSTS_ANNOTATION, "").split(",") if h.strip())


def _backend_services(obj: Any, namespace: str) -> list[tuple[str, str]]:
    """The backend Services of an Ingress, a route or an OpenShift Route: (namespace, name)."""
    if hasattr(obj, "backends"):  # Gateway API routes: backendRefs may name another namespace
        return [(str(ns), str(name)) for ns, name in obj.backends]
    return [(namespace, str(name)) for name in getattr(obj, "backend_services", ())]
