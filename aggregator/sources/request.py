"""What an app asks of the intent generated for it, whoever asked: the ``fleetdns.io/*`` annotations on its member
object (annotations.py) or a DiscoveryRule (discovery.py). Neutral on purpose: each source turns an ``AppRequest``
into its intent kind's spec (``Source.generated_spec``, aggregator/sources/base.py) and the generator merges the
specs of every cluster (generator.py), each cluster's as one ``Claim``.

``common_spec`` is the one home of the fields every intent kind shares (domainRef, recordTTL, loadBalancing,
healthCheck), written as the CRDs take them. ``loadBalancing.weights`` is never part of one cluster's spec: each
cluster asks only for its own weight (``AppRequest.weight``), and the generator builds the list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aggregator.model import DEFAULT_TTL, IntentKey, Policy


class RequestError(ValueError):
    """A request no intent can be generated from; the message says what to change."""


@dataclass(frozen=True)
class AppRequest:
    """An app's request, parsed, checked and with its defaults applied."""

    domain: str = ""  # the Domain (by name) its names hang under: spec.domainRef (required for generated intents)
    hosts: tuple[str, ...] = ()  # names the app lists (normalised); empty: the object's own names
    policy: Policy = Policy.ROUND_ROBIN
    failover_order: tuple[str, ...] = ()  # only with Failover (required there)
    weight: int | None = None  # this cluster's weight under Weighted (None: 1)
    record_ttl: int = DEFAULT_TTL
    health_check: Mapping[str, Any] | None = None  # spec.healthCheck as the CRD takes it (already checked)


DEFAULT_WEIGHT = 1


def common_spec(request: AppRequest) -> dict[str, Any]:
    """The fields every generated intent has, as the CRDs take them (without ``loadBalancing.weights``)."""
    if not request.domain:
        raise RequestError("no Domain: a generated intent publishes only names under a Domain; name one "
                           "(annotation fleetdns.io/domain, or the aggregator's --self-service-domain)")
    load_balancing: dict[str, Any] = {"policy": str(request.policy)}
    if request.policy is Policy.FAILOVER:
        if not request.failover_order:
            raise RequestError("policy Failover needs a failover order: the clusters or regions, first first")
        load_balancing["failoverOrder"] = list(request.failover_order)
    elif request.failover_order:
        raise RequestError(f"a failover order is used only with policy Failover, not {request.policy}")
    spec: dict[str, Any] = {"domainRef": request.domain, "recordTTL": request.record_ttl,
                            "loadBalancing": load_balancing}
    if request.health_check is not None:
        spec["healthCheck"] = dict(request.health_check)
    return spec


@dataclass(frozen=True)
class Claim:
    """One member object's request for one generated intent (what the generator merges; see generator.py)."""

    key: IntentKey  # the intent to generate: kind, namespace, name
    cluster: str  # the member the object is in
    object_kind: str  # the member object's kind (Service, Ingress, HTTPRoute, Route): fleetdns.io/source-kind
    created: str  # the object's metadata.creationTimestamp (RFC 3339): the oldest object decides
    origin: str  # "annotations" or "discovery/<rule>"
    spec: Mapping[str, Any] = field(default_factory=dict)  # the intent spec it asks for, without weights
    weight: int | None = None  # this cluster's weight under Weighted (None: 1)
    problem: str = ""  # why the request cannot be used: it holds an existing intent, builds nothing

    @property
    def label(self) -> str:
        """The object, for messages: ``east Service shop/web``."""
        return f"{self.cluster} {self.object_kind} {self.key.namespace}/{self.key.name}"
