"""The intent generator's pure parts: the merge of every cluster's claims (oldest object wins, conflicts named, the
same claims in any order give the same intent) and its decision to write."""

from __future__ import annotations

import itertools

import pytest

from aggregator.model import IntentKey, IntentKind
from aggregator.selfservice.annotations import parse_request
from aggregator.selfservice.generator import (
    ANNOTATION_CONFLICTS,
    Generated,
    GeneratedIntent,
    merge,
    needs_write,
    spec_patch,
)
from aggregator.sources.request import Claim, common_spec
from fleetdns.labels import ANNOTATION_SOURCE_CLUSTERS

pytestmark = pytest.mark.unit
KEY = IntentKey(IntentKind.SERVICE, "shop", "web")
T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", "2026-01-02T00:00:00Z"


def claim(cluster: str, created: str, origin: str = "annotations", weight: int | None = None, problem: str = "",
          kind: str = "Service", **annotations: str) -> Claim:
    """The claim an annotated Service makes (annotations given without the fleetdns.io/ prefix, '_' for '-')."""
    raw = {"fleetdns.io/global": "true"} | {f"fleetdns.io/{k.replace('_', '-')}": v for k, v in annotations.items()}
    spec = {} if problem else common_spec(parse_request(raw, "fleet"))
    return Claim(KEY, cluster, kind, created, origin, spec, weight, problem)


# --- merging every cluster's claims --------------------------------------------------------------------


def test_the_oldest_object_decides_whatever_order_the_claims_come_in() -> None:
    claims = [claim("west", T0, policy="Failover", failover_order="west,east"),
              claim("east", T1, policy="Weighted", weight=3), claim("central", T2, ttl="60")]
    results = {repr(merge(KEY, order).generated) for order in itertools.permutations(claims)}
    assert len(results) == 1
    generated = merge(KEY, claims).generated
    assert generated is not None
    assert generated.spec["loadBalancing"] == {"policy": "Failover", "failoverOrder": ["west", "east"]}
    assert generated.spec["recordTTL"] == 30
    assert generated.annotations[ANNOTATION_SOURCE_CLUSTERS] == "central,east,west"
    assert generated.annotations[ANNOTATION_CONFLICTS] == (
        "fleetdns.io/failover-order: west=[\"west\",\"east\"] (oldest, used), east=(none), central=(none); "
        "fleetdns.io/policy: west=Failover (oldest, used), east=Weighted, central=RoundRobin; "
        "fleetdns.io/ttl: west=30 (oldest, used), central=60")


def test_objects_of_the_same_second_are_ordered_by_cluster_name() -> None:
    generated = merge(KEY, [claim("west", T0, ttl="60"), claim("east", T0, ttl="90")]).generated
    assert generated is not None and generated.spec["recordTTL"] == 90


def test_a_newer_object_never_overrides_and_agreeing_values_are_no_conflict() -> None:
    before = merge(KEY, [claim("east", T0, ttl="60")]).generated
    after = merge(KEY, [claim("east", T0, ttl="60"), claim("west", T2, ttl="60")]).generated
    assert before is not None and after is not None
    assert after.spec == before.spec and ANNOTATION_CONFLICTS not in after.annotations


def test_weights_are_per_cluster_under_weighted_never_a_conflict() -> None:
    generated = merge(KEY, [claim("east", T0, policy="Weighted", weight=3),
                            claim("west", T1, policy="Weighted", weight=0),
                            claim("north", T2, policy="Weighted")]).generated
    assert generated is not None
    assert generated.spec["loadBalancing"]["weights"] == [
        {"target": "east", "weight": 3}, {"target": "north", "weight": 1}, {"target": "west", "weight": 0}]
    assert ANNOTATION_CONFLICTS not in generated.annotations


def test_annotations_beat_rules_and_the_first_rule_by_name_beats_the_others() -> None:
    rule_b, rule_a = claim("east", T0, origin="discovery/b", ttl="60"), claim("east", T0, origin="discovery/a")
    merged = merge(KEY, [rule_b, rule_a])
    assert merged.origin == "discovery/a" and merged.generated is not None
    assert merged.generated.labels == {"fleetdns.io/generated-by": "discovery", "fleetdns.io/source-kind": "Service",
                                       "fleetdns.io/discovery-rule": "a"}
    assert merge(KEY, [rule_b, rule_a, claim("west", T2, ttl="90")]).origin == "annotations"


def test_a_request_that_cannot_be_used_builds_nothing_but_is_reported_and_never_decides() -> None:
    bad = claim("east", T0, problem="fleetdns.io/ttl: 'x' must be ...")
    only_bad = merge(KEY, [bad])
    assert only_bad.generated is None and only_bad.invalid == (bad,) and only_bad.clusters == ("east",)
    merged = merge(KEY, [bad, claim("west", T2, ttl="60")])
    assert merged.generated is not None and merged.generated.spec["recordTTL"] == 60
    assert merged.generated.annotations[ANNOTATION_SOURCE_CLUSTERS] == "east,west"


# --- writing only on change ----------------------------------------------------------------------------


def held_as(generated: Generated, spec: dict, version: str = "7") -> GeneratedIntent:
    return GeneratedIntent(generated.key, "uid-1", version, dict(generated.labels), dict(generated.annotations), spec)


def test_the_api_servers_defaults_are_no_change_but_a_hand_edit_is() -> None:
    generated = merge(KEY, [claim("east", T0, health_check_path="/healthz")]).generated
    assert generated is not None
    defaulted = generated.spec | {"loadBalancerHostnames": "Resolve", "healthCheck": {
        "httpGet": {"path": "/healthz", "port": 80, "scheme": "HTTP"}, "periodSeconds": 10}}
    assert not needs_write(held_as(generated, defaulted), generated, None)
    edited = defaulted | {"recordTTL": 5}
    assert needs_write(held_as(generated, edited), generated, None)


def test_a_field_no_longer_generated_is_removed_and_the_crd_defaults_come_back_by_themselves() -> None:
    before = merge(KEY, [claim("east", T0, health_check_path="/healthz")]).generated
    after = merge(KEY, [claim("east", T0)]).generated
    assert before is not None and after is not None
    held = held_as(before, before.spec | {"loadBalancerHostnames": "Resolve"})
    assert needs_write(held, after, None)  # the spec hash tells: the stored spec is still a superset
    assert spec_patch(held.spec, after.spec) == {
        "healthCheck": None, "loadBalancerHostnames": None, "domainRef": "fleet", "recordTTL": 30,
        "loadBalancing": {"policy": "RoundRobin"}}


def test_a_field_the_api_server_dropped_after_our_own_write_is_not_written_again() -> None:
    generated = merge(KEY, [claim("east", T0)]).generated
    assert generated is not None
    pruned = {k: v for k, v in generated.spec.items() if k != "domainRef"}
    assert not needs_write(held_as(generated, pruned, "9"), generated, "9")
    assert needs_write(held_as(generated, pruned, "10"), generated, "9")  # someone else changed it since
