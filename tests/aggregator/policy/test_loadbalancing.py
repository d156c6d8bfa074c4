"""Policy selection, pure: RoundRobin, Weighted (weights scaled, region targets, AAAA), Failover (order, back),
a policy applied per name, never emptying an answer, targets naming nothing, fail open, and spec.loadBalancing
parsed."""

from __future__ import annotations

import pytest

from aggregator.model import (
    Answer,
    AnswerCluster,
    ClusterHealth,
    ClusterStatus,
    LoadBalancerAddress,
    LoadBalancing,
    ParseError,
    Policy,
    Verdict,
    parse_load_balancing,
)
from aggregator.policy.loadbalancing import Selector, address_weights, scaled
from aggregator.render.records import address_records
from aggregator.sources.ingress import render_ingress_endpoints
from aggregator.sources.service import ServiceIntent, parse_service_intent, render_service_endpoints, service_names
from fleetdns.endpoint import Endpoint
from fleetdns.weights import WEIGHTS_PROPERTY, parse_weights
from tests.support.model import PLACES, V4, V6, cluster, failover, weighted

pytestmark = pytest.mark.unit


def answering(selector: Selector, *clusters: ClusterStatus) -> list[str]:
    return [c.cluster for c in selector.pick(clusters).clusters]


def weights_of(records: list[Endpoint], record_type: str = "A") -> dict[str, int]:
    endpoint = next(e for e in records if e.record_type == record_type)
    value = endpoint.provider_specific_value(WEIGHTS_PROPERTY)
    assert value is not None, endpoint
    return parse_weights(value)


# --- RoundRobin -------------------------------------------------------------------------------------

def test_round_robin_answers_every_healthy_cluster_without_weights() -> None:
    clusters = (cluster("east"), cluster("east-b", False), cluster("west"))
    selector = Selector(LoadBalancing(), clusters)
    assert answering(selector, *clusters) == ["east", "west"]
    records = address_records("a.example.com", selector.pick(clusters), 30)
    assert [(e.targets, e.provider_specific) for e in records] == [((V4["east"], V4["west"]), ())]


# --- Weighted ---------------------------------------------------------------------------------------

def test_weights_80_20_are_scaled_so_the_largest_is_255() -> None:
    clusters = (cluster("east"), cluster("west"))
    selector = Selector(weighted(("east", 80), ("west", 20)), clusters)
    records = address_records("a.example.com", selector.pick(clusters), 30)
    assert weights_of(records) == {V4["east"]: 255, V4["west"]: 64}
    assert [(c.cluster, c.weight) for c in selector.selection.answer.clusters] == [("east", 255), ("west", 64)]


def test_scaling_rounds_half_up_and_keeps_every_weight_at_least_1() -> None:
    assert scaled({"a": 100.0, "b": 50.0}) == {"a": 255, "b": 128}  # 127.5
    assert scaled({"a": 255.0, "b": 0.1}) == {"a": 255, "b": 1}


def test_a_region_weight_is_split_over_its_healthy_clusters_not_named_directly() -> None:
    clusters = (cluster("east"), cluster("east-b"), cluster("west"))
    selector = Selector(weighted(("us-east", 100), ("west", 100)), clusters)
    assert weights_of(address_records("a.example.com", selector.pick(clusters), 30)) == {
        V4["east"]: 128, V4["east-b"]: 128, V4["west"]: 255}
    down = (cluster("east"), cluster("east-b", False), cluster("west"))
    assert weights_of(address_records("a.example.com", Selector(weighted(("us-east", 100), ("west", 100)), down)
                                      .pick(down), 30)) == {V4["east"]: 255, V4["west"]: 255}


def test_a_cluster_named_directly_takes_its_own_weight_out_of_its_region() -> None:
    clusters = (cluster("east"), cluster("east-b"), cluster("west"))
    selector = Selector(weighted(("us-east", 90), ("east", 0)), clusters)
    assert answering(selector, *clusters) == ["east-b"]  # east drained, west unlisted: weight 0


def test_aaaa_answers_get_their_own_weights() -> None:
    clusters = (cluster("east", True, V4["east"], V6["east"], "2001:db8:f::11"), cluster("west", True, V4["west"]))
    selector = Selector(weighted(("east", 50), ("west", 50)), clusters)
    records = address_records("a.example.com", selector.pick(clusters), 30)
    assert weights_of(records, "A") == {V4["east"]: 255, V4["west"]: 255}
    assert weights_of(records, "AAAA") == {V6["east"]: 255, "2001:db8:f::11": 255}  # west has no IPv6
    assert address_weights({"east": 60.0, "west": 20.0}, {"east": ["2001:db8::1", "2001:db8::2"], "west": [
        "2001:db8::3"]}, 6) == {"2001:db8::1": 255, "2001:db8::2": 255, "2001:db8::3": 170}


def test_weighted_with_every_listed_target_down_answers_every_healthy_cluster_and_says_so() -> None:
    clusters = (cluster("east", False), cluster("west"))
    selector = Selector(weighted(("east", 100)), clusters)
    assert answering(selector, *clusters) == ["west"]
    records = address_records("a.example.com", selector.pick(clusters), 30)
    assert records[0].provider_specific == ()
    condition = selector.selection.condition
    assert (condition.status, condition.reason) == ("False", "NoEligibleTarget") and "west" in condition.message


# --- Failover ---------------------------------------------------------------------------------------

def test_failover_answers_the_first_target_with_a_healthy_cluster_and_moves_back() -> None:
    healthy = (cluster("east"), cluster("west"))
    assert answering(Selector(failover("east", "west"), healthy), *healthy) == ["east"]
    east_down = (cluster("east", False), cluster("west"))
    selector = Selector(failover("east", "west"), east_down)
    assert answering(selector, *east_down) == ["west"]
    assert selector.selection.answer.reason == "west: first target in failoverOrder with a healthy cluster; " \
                                               "before it: east (no healthy cluster)"
    assert answering(Selector(failover("east", "west"), healthy), *healthy) == ["east"]


def test_failover_to_a_region_answers_all_its_healthy_clusters() -> None:
    clusters = (cluster("east"), cluster("east-b"), cluster("west", False))
    selector = Selector(failover("west", "us-east"), clusters)
    assert answering(selector, *clusters) == ["east", "east-b"]


def test_failover_never_empties_an_answer() -> None:
    clusters = (cluster("east"), cluster("west", False))
    selector = Selector(failover("west"), clusters)
    assert answering(selector, *clusters) == ["east"]
    assert selector.selection.condition.reason == "NoEligibleTarget"


def test_every_name_applies_the_policy_to_its_own_candidates() -> None:
    intent = ServiceIntent("shop", "web", "u", 1, domain_ref="fleet", load_balancing=failover("east", "west"))
    names = service_names(intent, "example.com")
    clusters = (cluster("east"), cluster("west"))
    out = {(e.dns_name, e.record_type): e.targets for e in render_service_endpoints(
        intent, names, clusters, Selector(intent.load_balancing, clusters))}
    assert out[(names.global_name, "A")] == (V4["east"],)
    assert out[(names.region_name("us-west"), "A")] == (V4["west"],)  # west is the only candidate of its name
    hosts = render_ingress_endpoints(intent, ("a.example.org", "b.example.org"), clusters,  # type: ignore[arg-type]
                                     Selector(intent.load_balancing, clusters))
    assert {e.targets for e in hosts} == {(V4["east"],)}


# --- targets ----------------------------------------------------------------------------------------

def test_targets_naming_no_cluster_or_region_are_reported() -> None:
    clusters = (cluster("east"), cluster("west"))
    fleet = {"east": "us-east", "west": "us-west"}
    selector = Selector(failover("eu-central", "east", "nowhere"), clusters, fleet=fleet)
    condition = selector.selection.condition
    assert (condition.status, condition.reason) == ("False", "UnknownTargets")
    assert "eu-central, nowhere" in condition.message
    assert answering(selector, *clusters) == ["east"]


def test_a_name_that_is_both_a_cluster_and_a_region_means_the_cluster() -> None:
    fleet = {"east": "east", "east-b": "east", "west": "us-west"}
    clusters = (ClusterStatus("east", "east", "z", (LoadBalancerAddress(ip=V4["east"]),), True, ""),
                ClusterStatus("east-b", "east", "z", (LoadBalancerAddress(ip=V4["east-b"]),), True, ""))
    selector = Selector(failover("east"), clusters, fleet=fleet)
    assert answering(selector, *clusters) == ["east"]
    assert "the MemberCluster is meant" in selector.selection.condition.message


# --- fail open --------------------------------------------------------------------------------------

def last_answer(*clusters: tuple[str, tuple[str, ...]]) -> Answer:
    return Answer("", Policy.ROUND_ROBIN, tuple(AnswerCluster(c, a) for c, a in clusters), "every healthy cluster")


def test_with_no_healthy_cluster_the_last_healthy_set_keeps_answering() -> None:
    clusters = (cluster("east", False), cluster("west", False))
    selector = Selector(LoadBalancing(), clusters, last=last_answer(("east", (V4["east"],)),
                                                                   ("west", (V4["west"],))))
    assert selector.fail_open
    assert address_records("a.example.com", selector.pick(clusters), 30)[0].targets == (V4["east"], V4["west"])
    assert [c.cluster for c in selector.selection.answer.clusters] == ["east", "west"]


def test_fail_open_leaves_out_clusters_that_are_gone() -> None:
    clusters = (cluster("west", False),)  # east's Service (or member) is gone: not listed
    selector = Selector(LoadBalancing(), clusters, last=last_answer(("east", (V4["east"],)),
                                                                   ("west", (V4["west"],))))
    assert address_records("a.example.com", selector.pick(clusters), 30)[0].targets == (V4["west"],)


def test_an_intent_never_healthy_publishes_nothing() -> None:
    clusters = (cluster("east", False),)
    selector = Selector(LoadBalancing(), clusters, last=None)
    assert not selector.fail_open and address_records("a.example.com", selector.pick(clusters), 30) == []


def test_fail_open_keeps_the_addresses_published_last_even_when_the_quorum_withdrew_them() -> None:
    """Every address Down: the cluster is out, but fail open answers what was published last."""
    down = ClusterStatus("east", "us-east", "us-east-1a", (LoadBalancerAddress(ip=V4["east"]),), False,
                         "HealthCheckFailed: Down from 2 of 3 regions",
                         health_check=ClusterHealth(Verdict.DOWN, (V4["east"],), ()))
    selector = Selector(LoadBalancing(), (down,), last=last_answer(("east", (V4["east"],))))
    assert address_records("a.example.com", selector.pick((down,)), 30)[0].targets == (V4["east"],)


def records_by_type(records: list[Endpoint]) -> dict[str, tuple[str, ...]]:
    return {e.record_type: e.targets for e in records}


def test_an_a_query_never_goes_empty_when_only_the_ipv4_addresses_are_seen_down() -> None:
    """East fully Down; west's IPv4 address Down while its IPv6 still answers: the name keeps west's last IPv4
    address for A (fail open per family) instead of answering A with nothing, and AAAA stays west's IPv6."""
    east_down = ClusterStatus("east", "us-east", "us-east-1a", (LoadBalancerAddress(ip=V4["east"]),), False,
                              "HealthCheckFailed: Down from 2 of 3 regions",
                              health_check=ClusterHealth(Verdict.DOWN, (V4["east"],), ()))
    west_v6_only = ClusterStatus("west", "us-west", "us-west-1a", (LoadBalancerAddress(ip=V4["west"]),
                                                                   LoadBalancerAddress(ip=V6["west"])), True, "",
                                 health_check=ClusterHealth(Verdict.UP, (V4["west"],), ()))
    clusters = (east_down, west_v6_only)
    selector = Selector(LoadBalancing(), clusters, last=last_answer(("west", (V4["west"], V6["west"]))))
    assert records_by_type(address_records("a.example.com", selector.pick(clusters), 30)) == {
        "A": (V4["west"],), "AAAA": (V6["west"],)}
    assert not selector.fail_open  # west is healthy: the whole-set fail open is not in force
    assert "IPv4" in selector.selection.answer.reason
    # the answer remembered keeps both families, so a later full fail open keeps them too
    assert selector.selection.answer.clusters[0].addresses == (V4["west"], V6["west"])
    # once a healthy cluster has an IPv4 address again, only the healthy ones answer
    healed = Selector(LoadBalancing(), (cluster("east", True, V4["east"]), west_v6_only),
                      last=selector.selection.answer)
    assert records_by_type(address_records("a.example.com", healed.pick((cluster("east", True, V4["east"]),
                                                                         west_v6_only)), 30)) == {
        "A": (V4["east"],), "AAAA": (V6["west"],)}


def partly_down(name: str) -> ClusterStatus:
    """Cluster ``name`` (dual-stack) whose IPv4 address the quorum sees Down while its IPv6 still answers: the
    moment between its two checks when the app fails, or a broken IPv4 path."""
    region, zone = PLACES[name]
    return ClusterStatus(name, region, zone, (LoadBalancerAddress(ip=V4[name]), LoadBalancerAddress(ip=V6[name])),
                         True, "", health_check=ClusterHealth(Verdict.UP, (V4[name],), ()))


def test_failover_never_answers_a_family_with_nothing_while_another_target_has_it_whole() -> None:
    """Found by the chain's fault test: west first in failoverOrder, its IPv4 seen Down a moment before its IPv6,
    answered AAAA only, so A queries got NODATA (cached by resolvers as "no such record"). A target whose every
    address of a family is Down yields to one that answers both families, and says so; once both are whole again,
    the order holds."""
    east = cluster("east", True, V4["east"], V6["east"])
    clusters = (east, partly_down("west"))
    selector = Selector(failover("west", "east"), clusters)
    assert records_by_type(address_records("a.example.com", selector.pick(clusters), 30)) == {
        "A": (V4["east"],), "AAAA": (V6["east"],)}
    assert "left out: west (every IPv4 address seen Down)" in selector.selection.answer.reason
    whole = (east, cluster("west", True, V4["west"], V6["west"]))
    assert answering(Selector(failover("west", "east"), whole), *whole) == ["west"]


def test_a_partly_down_cluster_still_answers_when_no_other_has_the_family() -> None:
    """East has no IPv4 at all: west, partly down, stays first (its IPv6), and AAAA comes from it; the family it
    lost is kept by fail open per family, not by moving to a cluster that cannot answer it either."""
    east_v6 = cluster("east", True, V6["east"])
    clusters = (east_v6, partly_down("west"))
    selector = Selector(failover("west", "east"), clusters)
    assert answering(selector, *clusters) == ["west"]


def test_round_robin_keeps_a_partly_down_cluster_for_the_family_it_still_answers() -> None:
    """RoundRobin leaves no family empty while east is whole: west's IPv6 still answers AAAA beside east's."""
    east = cluster("east", True, V4["east"], V6["east"])
    clusters = (east, partly_down("west"))
    records = address_records("a.example.com", Selector(LoadBalancing(), clusters).pick(clusters), 30)
    assert records_by_type(records) == {"A": (V4["east"],), "AAAA": (V6["east"], V6["west"])}


def test_a_family_no_healthy_cluster_has_at_all_is_not_kept() -> None:
    """East (IPv4) not ready; west healthy behind a load-balancer hostname only: the name becomes west's CNAME, as
    before. Fail open per family keeps only what the probers withdrew from healthy clusters."""
    west_hostname = ClusterStatus("west", "us-west", "us-west-1a",
                                  (LoadBalancerAddress(hostname="lb-west.example.net"),), True, "")
    clusters = (cluster("east", False), west_hostname)
    selector = Selector(LoadBalancing(), clusters, last=last_answer(("east", (V4["east"],))))
    records = address_records("a.example.com", selector.pick(clusters), 30)
    assert records_by_type(records) == {"CNAME": ("lb-west.example.net",)}
    assert not selector.kept_families


# --- parsing ----------------------------------------------------------------------------------------

def test_load_balancing_and_health_check_are_parsed() -> None:
    intent = parse_service_intent({"metadata": {"name": "web", "namespace": "shop"}, "spec": {
        "domainRef": "fleet", "loadBalancing": {"policy": "Weighted", "weights": [{"target": "east", "weight": 80}]},
        "healthCheck": {"httpGet": {"port": 443, "scheme": "HTTPS", "path": "/healthz"}, "periodSeconds": 1}}})
    assert intent.load_balancing == weighted(("east", 80))
    assert intent.health_check is not None and intent.health_check.period_seconds == 1
    assert parse_service_intent({"metadata": {}, "spec": {"domainRef": "f"}}).load_balancing.policy is \
        Policy.ROUND_ROBIN


@pytest.mark.parametrize(("raw", "says"), [
    ({"policy": "Random"}, "spec.loadBalancing.policy"),
    ({"policy": "Weighted", "weights": [{"target": "east", "weight": 300}]}, "weights[0].weight"),
    ({"policy": "Weighted", "weights": [{"target": "east", "weight": 1}, {"target": "east", "weight": 2}]}, "twice"),
])
def test_a_load_balancing_spec_the_crd_would_refuse_names_the_field(raw: dict, says: str) -> None:
    with pytest.raises(ParseError) as error:
        parse_load_balancing(raw)
    assert says in str(error.value)
