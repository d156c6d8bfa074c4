"""The intent as the host holds it: the fields every kind shares (``Intent``) and their one parser
(``parse_intent``); each kind's dataclass adds only its own fields (aggregator/sources/<kind>).

A malformed intent is not skipped but becomes an ``InvalidIntent`` (``Source.read_intent``): skipping it
would look like a deletion.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar, TypeVar

from aggregator.model import (
    DEFAULT_TTL,
    HostnameMode,
    IntentKey,
    IntentKind,
    IntentStatus,
    LoadBalancing,
    ParseError,
    as_dict,
    parse_hostname_mode,
    parse_load_balancing,
    parse_status,
)
from fleetdns.healthcheck import HealthCheck, HealthCheckError, parse_health_check

IntentT = TypeVar("IntentT", bound="Intent")


@dataclass(frozen=True)
class Intent:
    """What every intent kind has: its identity, the spec fields the CRDs share, and the status we wrote."""

    kind: ClassVar[IntentKind]
    namespace: str
    name: str
    uid: str
    generation: int
    _: KW_ONLY
    domain_ref: str = ""  # spec.domainRef: the Domain its names hang under ("" none; a ServiceDNSRecord needs one)
    record_ttl: int = DEFAULT_TTL
    load_balancer_hostnames: HostnameMode = HostnameMode.RESOLVE
    load_balancing: LoadBalancing = field(default_factory=LoadBalancing)
    health_check: HealthCheck | None = None
    status: IntentStatus = field(default_factory=IntentStatus)
    created: str = ""  # metadata.creationTimestamp: the first claim of a name wins (docs/design/sources.md §4)

    @property
    def key(self) -> IntentKey:
        return IntentKey(self.kind, self.namespace, self.name)


def parse_intent(cls: type[IntentT], obj: dict[str, Any], **own: Any) -> IntentT:
    """An intent of ``cls`` from the API's JSON: the shared fields parsed here, ``own`` (the kind's fields)
    parsed by its source. The CRDs refuse bad specs at admission; a ParseError names the field of an older one."""
    meta, spec = as_dict(obj.get("metadata")), as_dict(obj.get("spec"))
    domain_ref = spec.get("domainRef") or ""
    if not isinstance(domain_ref, str):
        raise ParseError(f"spec.domainRef must name a Domain, not {domain_ref!r}")
    return cls(
        str(meta.get("namespace") or ""), str(meta.get("name") or ""), str(meta.get("uid") or ""),
        int(meta.get("generation") or 0), domain_ref=domain_ref,
        record_ttl=_integer(spec.get("recordTTL"), "spec.recordTTL", DEFAULT_TTL),
        load_balancer_hostnames=parse_hostname_mode(spec),
        load_balancing=parse_load_balancing(spec.get("loadBalancing")), health_check=_health_check(spec),
        status=parse_status(obj.get("status")), created=str(meta.get("creationTimestamp") or ""), **own)


def _health_check(spec: dict[str, Any]) -> HealthCheck | None:
    try:
        return parse_health_check(spec.get("healthCheck"))
    except HealthCheckError as error:
        raise ParseError(str(error)) from None


def _integer(raw: Any, name: str, default: int) -> int:
    """An integer field (absent: ``default``); anything else is a ParseError naming the field."""
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ParseError(f"{name} must be an integer, not {raw!r}")
    return raw or default


@dataclass(frozen=True)
class InvalidIntent:
    """An intent the API server holds but the aggregator cannot read (a spec written before the CRD
    validated it, or under an older CRD): reported on its status as ``InvalidSpec``; its DNSEndpoint is
    left as it is, never deleted (dropping it from the cache would look like a deletion)."""

    kind: IntentKind
    namespace: str
    name: str
    uid: str
    generation: int
    problem: str  # names the field and what is wrong with it
    status: IntentStatus = field(default_factory=IntentStatus)
    # metadata.creationTimestamp: its published names keep their place (aggregator/registry/claims.py)
    created: str = ""

    @property
    def key(self) -> IntentKey:
        return IntentKey(self.kind, self.namespace, self.name)


def invalid_intent(kind: IntentKind, obj: dict[str, Any], problem: str) -> InvalidIntent:
    """The readable part of an intent whose spec cannot be parsed: enough to report it on its status."""
    meta = as_dict(obj.get("metadata"))
    generation = meta.get("generation")
    return InvalidIntent(kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""),
                         str(meta.get("uid") or ""), generation if isinstance(generation, int) else 0, problem,
                         parse_status(obj.get("status")), str(meta.get("creationTimestamp") or ""))
