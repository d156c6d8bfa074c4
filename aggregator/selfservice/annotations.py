"""Self-service by annotations (docs/design/sources.md §2): the ``fleetdns.io/*`` annotations an app team puts on
its own member object (a Service, an Ingress, a route), parsed and checked into an ``AppRequest``, and the claims
they make on generated intents (``AnnotationClaims``, one of the generator's claim sources).

``fleetdns.io/global: "true"`` opts in; every other annotation has a default. Each bad annotation gets its own
message (``AnnotationError.problems``) naming the annotation, the value and what is accepted; a bad request is still
a claim (it holds an existing intent as it is, and is reported), it only builds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aggregator.model import DEFAULT_TTL, IntentKey, Policy
from aggregator.sources.base import MemberObjects, SourceRegistry
from aggregator.sources.request import AppRequest, Claim, RequestError
from fleetdns.dnsname import InvalidDNSNameError, check_publishable, is_dns_label, is_dns_subdomain
from fleetdns.healthcheck import HealthCheckError, Scheme, parse_health_check

PREFIX = "fleetdns.io/"
GLOBAL = "fleetdns.io/global"
DOMAIN = "fleetdns.io/domain"
HOSTS = "fleetdns.io/hosts"
POLICY = "fleetdns.io/policy"
WEIGHT = "fleetdns.io/weight"
FAILOVER_ORDER = "fleetdns.io/failover-order"
TTL = "fleetdns.io/ttl"
CHECK_PATH = "fleetdns.io/health-check-path"
CHECK_PORT = "fleetdns.io/health-check-port"
CHECK_SCHEME = "fleetdns.io/health-check-scheme"
KNOWN = (GLOBAL, DOMAIN, HOSTS, POLICY, WEIGHT, FAILOVER_ORDER, TTL, CHECK_PATH, CHECK_PORT, CHECK_SCHEME)
ORIGIN = "annotations"  # the claims' origin (and the generated intents' fleetdns.io/generated-by)
MAX_TTL = 604800  # the CRDs' bound: one week
# Which annotation sets which spec field (conflict messages name the annotation the team wrote)
_FIELDS = (("domainRef", DOMAIN), ("hosts", HOSTS), ("loadBalancing.policy", POLICY),
           ("loadBalancing.failoverOrder", FAILOVER_ORDER), ("recordTTL", TTL),
           ("healthCheck.httpGet.port", CHECK_PORT), ("healthCheck.httpGet.scheme", CHECK_SCHEME),
           ("healthCheck", CHECK_PATH))


class AnnotationError(RequestError):
    """Annotations that cannot be used: one message per bad annotation."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


def opted_in(annotations: Mapping[str, str]) -> bool:
    """The object asks to be published fleet-wide: ``fleetdns.io/global`` is there and is not ``"false"`` (any
    other value than ``"true"`` is an error reported on the claim, not a silent opt-out)."""
    value = annotations.get(GLOBAL)
    return value is not None and value.strip().lower() != "false"


def describe_field(path: str) -> str:
    """The annotation that sets the spec field ``path`` (dotted, under spec), for conflict messages."""
    for prefix, annotation in _FIELDS:
        if path == prefix or path.startswith(prefix + "."):
            return annotation
    return f"spec.{path}"


def parse_request(annotations: Mapping[str, str], default_domain: str = "") -> AppRequest:
    """The request an opted-in object's annotations make; AnnotationError lists every bad annotation."""
    problems: list[str] = []

    def note(annotation: str, value: str, accepted: str) -> None:
        problems.append(f"{annotation}: {value!r} {accepted}")

    global_value = annotations.get(GLOBAL, "").strip().lower()
    if global_value != "true":
        note(GLOBAL, annotations.get(GLOBAL, ""), 'must be "true" (publish fleet-wide) or "false"')
    for key in sorted(annotations):
        if key.startswith(PREFIX) and key not in KNOWN:
            problems.append(f"{key}: unknown annotation (known: {', '.join(KNOWN)})")

    domain = annotations.get(DOMAIN, default_domain).strip()
    if domain and not is_dns_label(domain):
        note(DOMAIN, domain, "must name a Domain as an intent's domainRef does: a DNS label (lower-case letters, "
                             "digits and '-', at most 63)")
        domain = ""
    elif not domain:
        problems.append(f"{DOMAIN}: missing, and the aggregator has no --self-service-domain default: name the "
                        "Domain this app's names hang under")

    hosts: list[str] = []
    for raw in _items(annotations.get(HOSTS, "")):
        try:
            host = check_publishable(raw)
        except InvalidDNSNameError as error:
            problems.append(f"{HOSTS}: {error}")
            continue
        if host in hosts:
            note(HOSTS, raw, "is listed twice")
        hosts.append(host)
    if HOSTS in annotations and not hosts and not any(p.startswith(HOSTS) for p in problems):
        note(HOSTS, annotations[HOSTS], "lists no name (comma-separated DNS names)")

    policy = Policy.ROUND_ROBIN
    if POLICY in annotations:
        try:
            policy = Policy(annotations[POLICY].strip())
        except ValueError:
            note(POLICY, annotations[POLICY], f"is not a policy (one of {', '.join(Policy)})")

    order = _items(annotations.get(FAILOVER_ORDER, ""))
    for target in order:
        if not is_dns_subdomain(target):
            note(FAILOVER_ORDER, target, "must name a MemberCluster or a region (lower-case letters, digits, '-', '.')")
    if len(set(order)) != len(order):
        note(FAILOVER_ORDER, annotations[FAILOVER_ORDER], "lists a target twice")
    if policy is Policy.FAILOVER and not order:
        problems.append(f"{FAILOVER_ORDER}: missing; policy Failover needs the clusters or regions in the order "
                        "answers go to them, e.g. \"east,west\"")
    elif order and policy is not Policy.FAILOVER and POLICY in annotations:
        note(FAILOVER_ORDER, annotations[FAILOVER_ORDER], f"is used only with {POLICY}: Failover, not {policy}")
    elif order and POLICY not in annotations:
        problems.append(f"{FAILOVER_ORDER}: used only with {POLICY}: Failover (missing)")

    weight = _number(annotations, WEIGHT, 0, 255, "must be a whole number 0-255 (0 drains this cluster)", problems)
    ttl = _number(annotations, TTL, 1, MAX_TTL, f"must be a whole number of seconds 1-{MAX_TTL}", problems)
    health_check = _health_check(annotations, problems)
    if problems:
        raise AnnotationError(problems)
    return AppRequest(domain=domain, hosts=tuple(hosts), policy=policy,
                      failover_order=tuple(order) if policy is Policy.FAILOVER else (), weight=weight,
                      record_ttl=ttl if ttl is not None else DEFAULT_TTL, health_check=health_check)


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _number(annotations: Mapping[str, str], annotation: str, low: int, high: int, accepted: str,
            problems: list[str]) -> int | None:
    if annotation not in annotations:
        return None
    raw = annotations[annotation].strip()
    if raw.isascii() and raw.isdigit() and low <= int(raw) <= high:  # isdigit alone accepts "²"; int() does not
        return int(raw)
    problems.append(f"{annotation}: {annotations[annotation]!r} {accepted}")
    return None


def _health_check(annotations: Mapping[str, str], problems: list[str]) -> dict[str, Any] | None:
    """An HTTP(S) check through the VIP: path required; port 80 (HTTP) or 443 (HTTPS) unless given."""
    path = annotations.get(CHECK_PATH)
    if path is None:
        stray = [a for a in (CHECK_PORT, CHECK_SCHEME) if a in annotations]
        if stray:
            problems.append(f"{', '.join(stray)}: used only with {CHECK_PATH} (missing)")
        return None
    scheme_raw = annotations.get(CHECK_SCHEME, "HTTP").strip()
    try:
        scheme = Scheme(scheme_raw.upper())
    except ValueError:
        problems.append(f"{CHECK_SCHEME}: {scheme_raw!r} must be HTTP or HTTPS")
        return None
    default_port = 443 if scheme is Scheme.HTTPS else 80
    port = _number(annotations, CHECK_PORT, 1, 65535, "must be a port number 1-65535", problems) or default_port
    if not path.startswith("/"):
        problems.append(f"{CHECK_PATH}: {path!r} must start with '/'")
        return None
    check = {"httpGet": {"path": path, "port": port, "scheme": str(scheme)}}
    try:
        parse_health_check(check)
    except HealthCheckError as error:
        problems.append(f"{CHECK_PATH}: {error}")
        return None
    return check


class AnnotationClaims:
    """The claims opted-in member objects make through their annotations (a claim source of the generator)."""

    def __init__(self, sources: SourceRegistry, default_domain: str = "") -> None:
        self.sources = sources
        self.default_domain = default_domain

    def claims(self, key: IntentKey, member: MemberObjects) -> list[Claim]:
        try:
            source = self.sources.for_kind(key.kind)
        except KeyError:
            return []
        found = []
        for kind in source.exposed_kinds:
            obj = member.get(kind, key.namespace, key.name)
            if obj is None or not opted_in(obj.annotations):
                continue
            try:
                request = parse_request(obj.annotations, self.default_domain)
                spec = source.generated_spec(obj, request)
            except RequestError as error:
                found.append(Claim(key, member.name, kind.resource.kind, obj.created, ORIGIN, problem=str(error)))
                continue
            found.append(Claim(key, member.name, kind.resource.kind, obj.created, ORIGIN, spec, request.weight))
        return found
