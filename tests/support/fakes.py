"""In-memory stand-ins for what the engine hands the aggregator's stages: a member's objects
(``MemberObjects``), the caches a reconcile reads (``ReconcileInputs``) and Domain lookup (``Domains``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aggregator.health.readiness import KindProblem, MemberView, Reachability
from aggregator.model import DNSEndpointObject, Domain, IntentKey, IntentKind, LoadBalancerAddress, MemberCluster
from aggregator.sources.base import MemberKind, MemberObjects
from aggregator.sources.intent import Intent, InvalidIntent
from aggregator.sources.service import MemberService


@dataclass
class Member:
    """One member as the sources, discovery and the generator read it: its Services, their ready endpoints, and
    whether its cache can be read."""

    cluster: MemberCluster
    services: dict[tuple[str, str], MemberService] = field(default_factory=dict)
    ready: dict[tuple[str, str], int] = field(default_factory=dict)
    reachability: Reachability = Reachability.CONNECTED

    @property
    def name(self) -> str:
        return self.cluster.name

    def serve(self, namespace: str, name: str, ip: str, ready: int = 1) -> None:
        """A LoadBalancer Service at ``ip`` with ``ready`` ready endpoints."""
        self.services[(namespace, name)] = MemberService(namespace, name, True, (LoadBalancerAddress(ip=ip),))
        self.ready[(namespace, name)] = ready

    def annotate(self, namespace: str, name: str, annotations: dict[str, str], created: str) -> None:
        """A Service (no address) carrying self-service ``annotations``, created at ``created``."""
        self.services[(namespace, name)] = MemberService(namespace, name, True, (), annotations=annotations,
                                                         created=created)

    def view(self) -> MemberView:
        return MemberView(self.cluster, self.reachability)

    def get(self, kind: MemberKind, namespace: str, name: str) -> Any | None:
        return self.services.get((namespace, name)) if kind.name == "services" else None

    def ready_endpoints(self, namespace: str, service: str) -> int:
        return self.ready.get((namespace, service), 0)

    def kind_problem(self, kind: MemberKind) -> KindProblem | None:
        return None


@dataclass
class Caches:
    """The engine's caches, in memory: what the watches would have delivered so far. ``listed`` False is a
    restarted replica whose intents have not listed yet."""

    intents: dict[IntentKey, Intent | InvalidIntent] = field(default_factory=dict)
    member_list: list[Member] = field(default_factory=list)
    domains: dict[tuple[str, str], Domain] = field(default_factory=dict)
    endpoints: dict[tuple[str, str], DNSEndpointObject] = field(default_factory=dict)
    listed: bool = True

    def synced(self, kind: IntentKind) -> bool:
        return self.listed

    def intent(self, key: IntentKey) -> Intent | InvalidIntent | None:
        return self.intents.get(key)

    def members(self) -> Sequence[MemberObjects]:
        return self.member_list

    def member_cluster(self, name: str) -> MemberCluster | None:
        return None

    def domain(self, namespace: str, name: str) -> Domain | None:
        return self.domains.get((namespace, name))

    def dns_endpoint(self, namespace: str, name: str) -> DNSEndpointObject | None:
        return self.endpoints.get((namespace, name))


class Domains:
    """Domain lookup for a source: ``domain`` for every domainRef (only ``ref``, when given); None: no Domain."""

    def __init__(self, domain: str | None = "example.com", ref: str | None = None) -> None:
        self.domain, self.ref = domain, ref

    def find(self, namespace: str, name: str) -> Domain | None:
        if self.domain is None or (self.ref is not None and name != self.ref):
            return None
        return Domain(namespace, name, self.domain)

    def searched(self, namespace: str) -> str:
        return f"{namespace} or fleetdns-system"
