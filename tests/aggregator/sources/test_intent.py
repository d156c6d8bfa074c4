"""The fields every intent kind shares are read by one parser: the four kinds agree on them, and on what an
unreadable one becomes (an InvalidIntent naming the field, never a dropped intent)."""

from __future__ import annotations

from typing import Any

import pytest

from aggregator.model import HostnameMode, IntentKey, Policy
from aggregator.sources import SOURCES
from aggregator.sources.intent import InvalidIntent
from fleetdns.healthcheck import parse_health_check

pytestmark = pytest.mark.unit

OWN = {"ServiceDNSRecord": {}, "IngressDNSRecord": {"hosts": ["web.example.com"]},
       "GatewayDNSRecord": {}, "RouteDNSRecord": {}}  # what each kind needs besides the shared fields
CHECK = {"httpGet": {"path": "/healthz", "port": 443, "scheme": "HTTPS"}}


def intent_object(kind: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "fleetdns.io/v1alpha1", "kind": kind,
            "metadata": {"namespace": "shop", "name": "web", "uid": "u-1", "generation": 3,
                         "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {"domainRef": "fleet", **OWN[kind], **spec},
            "status": {"fqdn": "web.example.com", "observedGeneration": 2}}


@pytest.mark.parametrize("kind", list(OWN))
def test_every_kind_reads_the_shared_fields_alike(kind: str) -> None:
    source = next(s for s in SOURCES if s.kind == kind)
    intent = source.read_intent(intent_object(kind, recordTTL=60, loadBalancerHostnames="CNAME",
                                              loadBalancing={"policy": "Failover", "failoverOrder": ["east", "west"]},
                                              healthCheck=CHECK))

    assert not isinstance(intent, InvalidIntent)
    assert intent.key == IntentKey(source.kind, "shop", "web")
    assert (intent.uid, intent.generation, intent.created) == ("u-1", 3, "2024-05-01T10:00:00Z")
    assert (intent.domain_ref, source.domain_ref(intent)) == ("fleet", "fleet")
    assert (intent.record_ttl, intent.load_balancer_hostnames) == (60, HostnameMode.CNAME)
    assert intent.load_balancing.policy is Policy.FAILOVER and intent.load_balancing.failover_order == ("east", "west")
    assert intent.health_check is not None and intent.health_check == parse_health_check(CHECK)
    assert (intent.status.fqdn, intent.status.observed_generation) == ("web.example.com", 2)


@pytest.mark.parametrize("kind", list(OWN))
@pytest.mark.parametrize(("spec", "problem"), [
    ({"recordTTL": "30"}, "spec.recordTTL must be an integer, not '30'"),
    ({"loadBalancerHostnames": "Both"}, "spec.loadBalancerHostnames must be Resolve or CNAME, not 'Both'"),
    ({"loadBalancing": {"policy": "Random"}}, "spec.loadBalancing.policy must be one of"),
])
def test_every_kind_reports_an_unreadable_shared_field_on_its_status(kind: str, spec: dict[str, Any],
                                                                     problem: str) -> None:
    source = next(s for s in SOURCES if s.kind == kind)
    intent = source.read_intent(intent_object(kind, **spec))

    assert isinstance(intent, InvalidIntent)
    assert intent.problem.startswith(problem)
    assert (intent.key, intent.generation, intent.status.fqdn) == (IntentKey(source.kind, "shop", "web"), 3,
                                                                   "web.example.com")
