"""Client views and the location policies, pure: great-circle ranking with its 50 km band, failover to the next
nearest, the latency band and its hysteresis, the documented fallbacks, the DNSEndpoint shape per view, the
status answers and their events, and the view each region gets."""

from __future__ import annotations

import pytest

from aggregator.model import (
    Answer,
    AnswerCluster,
    ClusterStatus,
    IntentStatus,
    LoadBalancerAddress,
    LoadBalancing,
    Policy,
    parse_status,
)
from aggregator.policy.loadbalancing import Selector
from aggregator.policy.proximity import (
    NO_LATENCY_DATA,
    NO_LOCATION,
    Locality,
    View,
    distance_km,
    mean_location,
    views_of,
)
from aggregator.render.events import answer_moved
from aggregator.render.status import Outcome, build_status
from aggregator.sources.ingress import IngressIntent, render_ingress_endpoints
from aggregator.sources.service import ServiceIntent, render_service_endpoints, service_names
from fleetdns.dnsview import VIEW_PROPERTY, Location
from tests.support.model import V4 as VIPS
from tests.support.model import dns_view

pytestmark = pytest.mark.unit
NEW_YORK, NEWARK, BOSTON = Location(40.7128, -74.0060), Location(40.7357, -74.1724), Location(42.3601, -71.0589)
SAN_FRANCISCO, LONDON, TOKYO = Location(37.7749, -122.4194), Location(51.5072, -0.1276), Location(35.6762, 139.6503)
REGIONS = {"east": "us-east", "east-b": "us-east", "boston": "us-east", "west": "us-west"}
LOCATIONS = {"east": NEW_YORK, "east-b": NEWARK, "boston": BOSTON, "west": SAN_FRANCISCO}
EUROPE = View("europe", LONDON, "eu")
ASIA = View("asia", TOKYO, "ap")


def cluster(name: str, healthy: bool = True) -> ClusterStatus:
    return ClusterStatus(name, REGIONS[name], f"{REGIONS[name]}-1a", (LoadBalancerAddress(ip=VIPS[name]),), healthy,
                         "ReadyEndpoints: 1 ready" if healthy else "HealthCheckFailed: Down from 2 of 3 regions")


def ms(*pairs: tuple[str, float]) -> dict[str, int]:
    return {VIPS[name]: int(value * 1000) for name, value in pairs}


def selector(policy: Policy, clusters: tuple[ClusterStatus, ...], views: tuple[View, ...] = (EUROPE, ASIA),
             rtts: dict[str, dict[str, int]] | None = None, locations: dict[str, Location] | None = None,
             last: tuple[Answer, ...] = ()) -> Selector:
    locality = Locality(views, LOCATIONS if locations is None else locations, rtts or {})
    return Selector(LoadBalancing(policy), clusters, {c.cluster: c.region for c in clusters},
                    next((a for a in last if not a.view), None), locality, last)


def answers(chosen: Selector, *clusters: ClusterStatus) -> dict[str, list[str]]:
    return {v.view: [c.cluster for c in v.pick.clusters] for v in chosen.pick_views(clusters)}


def view_answer(chosen: Selector, view: str) -> Answer:
    return next(a for a in chosen.selection.answers if a.view == view)


# --- GeoProximity --------------------------------------------------------------------------------------------

def test_great_circle_distances_match_the_known_ones() -> None:
    assert distance_km(NEW_YORK, LONDON) == pytest.approx(5570, abs=15)
    assert distance_km(SAN_FRANCISCO, TOKYO) == pytest.approx(8270, abs=20)
    assert distance_km(LONDON, LONDON) == 0
    # across the antimeridian the short way round
    assert distance_km(Location(0, 179.5), Location(0, -179.5)) == pytest.approx(111, abs=1)


def test_each_view_gets_its_nearest_cluster_and_clusters_within_50_km_count_as_equally_near() -> None:
    clusters = (cluster("east"), cluster("east-b"), cluster("boston"), cluster("west"))
    home = View("new-york", Location(40.75, -73.99))  # Manhattan: east 4 km, east-b 15 km, boston 300 km
    chosen = selector(Policy.GEO_PROXIMITY, clusters, (EUROPE, ASIA, home))
    assert answers(chosen, *clusters) == {"europe": ["boston"], "asia": ["west"], "new-york": ["east", "east-b"]}
    assert view_answer(chosen, "new-york").reason == "nearest: east 4 km, east-b 15 km (within 50 km)"
    assert view_answer(chosen, "asia").reason == "nearest: west 8,275 km"
    assert chosen.selection.condition.reason == "Applied"


def test_a_view_fails_over_to_the_next_nearest_healthy_cluster_and_says_why() -> None:
    clusters = (cluster("east", healthy=False), cluster("east-b", healthy=False), cluster("west"))
    chosen = selector(Policy.GEO_PROXIMITY, clusters)
    assert answers(chosen, *clusters) == {"europe": ["west"], "asia": ["west"]}
    reason = view_answer(chosen, "europe").reason
    assert reason.startswith("failed over from east (HealthCheckFailed: Down from 2 of 3 regions); east-b (")
    assert reason.endswith("nearest healthy: west 8,616 km")
    assert view_answer(chosen, "asia").reason == "nearest: west 8,275 km"  # nothing nearer was passed over


def test_the_default_answer_of_a_location_policy_is_every_healthy_cluster() -> None:
    clusters = (cluster("east"), cluster("west"), cluster("boston", healthy=False))
    chosen = selector(Policy.GEO_PROXIMITY, clusters)
    assert [c.cluster for c in chosen.pick(clusters).clusters] == ["east", "west"]
    assert chosen.selection.answer.view == "" and chosen.selection.answer.policy is Policy.GEO_PROXIMITY


def test_a_view_without_a_location_or_clusters_without_one_answer_the_default_and_say_so() -> None:
    clusters = (cluster("east"), cluster("west"))
    nowhere = View("nowhere")
    chosen = selector(Policy.GEO_PROXIMITY, clusters, (EUROPE, nowhere))
    assert answers(chosen, *clusters) == {"europe": ["east"], "nowhere": ["east", "west"]}
    assert view_answer(chosen, "nowhere").fallback == NO_LOCATION
    assert view_answer(chosen, "europe").fallback == ""
    condition = chosen.selection.condition
    assert (condition.status, condition.reason) == ("False", NO_LOCATION)
    assert "views that cannot be ranked by distance: nowhere" in condition.message

    unplaced = selector(Policy.GEO_PROXIMITY, clusters, (EUROPE,), locations={})
    assert view_answer(unplaced, "europe").clusters == (AnswerCluster("east", (VIPS["east"],)),
                                                        AnswerCluster("west", (VIPS["west"],)))
    assert "no healthy cluster has a location (MemberCluster spec.location)" in view_answer(unplaced, "europe").reason


# --- LowestLatency -------------------------------------------------------------------------------------------

def test_the_fastest_clusters_within_20_percent_plus_2_ms_answer() -> None:
    clusters = (cluster("east"), cluster("east-b"), cluster("west"))
    rtts = {"eu": ms(("east", 30), ("east-b", 37.9), ("west", 38.1))}  # 30 ms * 1.2 + 2 ms = 38 ms
    chosen = selector(Policy.LOWEST_LATENCY, clusters, (EUROPE,), rtts)
    assert answers(chosen, *clusters) == {"europe": ["east", "east-b"]}
    assert view_answer(chosen, "europe").reason == "fastest from eu: east 30.0 ms, east-b 37.9 ms (within 20 % + 2 ms)"


def test_near_equal_paths_do_not_flap_and_a_clearly_faster_one_wins() -> None:
    clusters = (cluster("east"), cluster("west"))
    last: tuple[Answer, ...] = ()
    history = []
    # The two paths swap places again and again, each time within 50 % + 5 ms of each other: no move.
    for east, west in ((10, 15), (15, 10), (11, 15.5), (19.9, 10), (10, 15), (16, 10)):
        chosen = selector(Policy.LOWEST_LATENCY, clusters, (EUROPE,), {"eu": ms(("east", east), ("west", west))},
                          last=last)
        last = chosen.selection.answers
        history.append([c.cluster for c in view_answer(chosen, "europe").clusters])
    assert history == [["east"]] * 6
    assert view_answer(chosen, "europe").reason == \
        "kept from eu: east 16.0 ms (within 50 % + 5 ms of the fastest, west 10.0 ms)"
    # East falls past 50 % + 5 ms of the fastest (10 ms -> 20 ms): the answer moves, and stays moved.
    for east, west in ((20.1, 10), (12, 10), (10, 14)):
        chosen = selector(Policy.LOWEST_LATENCY, clusters, (EUROPE,), {"eu": ms(("east", east), ("west", west))},
                          last=last)
        last = chosen.selection.answers
        history.append([c.cluster for c in view_answer(chosen, "europe").clusters])
    assert history[6:] == [["west"]] * 3


def test_a_kept_cluster_that_goes_down_is_left_at_once() -> None:
    clusters = (cluster("east"), cluster("west"))
    first = selector(Policy.LOWEST_LATENCY, clusters, (EUROPE,), {"eu": ms(("east", 10), ("west", 16))})
    assert answers(first, *clusters) == {"europe": ["east"]}
    down = (cluster("east", healthy=False), cluster("west"))
    chosen = selector(Policy.LOWEST_LATENCY, down, (EUROPE,), {"eu": ms(("east", 10), ("west", 16))},
                      last=first.selection.answers)
    assert answers(chosen, *down) == {"europe": ["west"]}
    assert view_answer(chosen, "europe").reason.startswith("failed over from east (HealthCheckFailed")


def test_without_fresh_rtts_a_view_goes_by_distance_else_every_healthy_cluster() -> None:
    clusters = (cluster("east"), cluster("west"))
    only_asia = {"ap": ms(("east", 150), ("west", 100))}  # nothing measured from eu (stale or no prober there)
    chosen = selector(Policy.LOWEST_LATENCY, clusters, (EUROPE, ASIA), only_asia)
    assert answers(chosen, *clusters) == {"europe": ["east"], "asia": ["west"]}
    europe = view_answer(chosen, "europe")
    assert europe.fallback == NO_LATENCY_DATA and europe.reason == (
        "no fresh RTT from region eu to any healthy cluster; by distance instead: nearest: east 5,570 km")
    condition = chosen.selection.condition
    assert (condition.status, condition.reason) == ("False", NO_LATENCY_DATA)
    assert "views without a fresh RTT from their region to any healthy cluster: europe" in condition.message

    blind = selector(Policy.LOWEST_LATENCY, clusters, (EUROPE,), {}, locations={})
    assert answers(blind, *clusters) == {"europe": ["east", "west"]}
    assert view_answer(blind, "europe").reason.endswith("and no location to go by: every healthy cluster answers")


def test_a_fallback_answer_is_not_kept_by_the_hysteresis() -> None:
    clusters = (cluster("east"), cluster("west"))
    fallback = selector(Policy.LOWEST_LATENCY, clusters, (EUROPE,), {}, locations={})  # every healthy cluster
    chosen = selector(Policy.LOWEST_LATENCY, clusters, (EUROPE,), {"eu": ms(("east", 10), ("west", 16))},
                      last=fallback.selection.answers)
    assert answers(chosen, *clusters) == {"europe": ["east"]}


def test_while_failing_open_each_view_answers_from_the_last_healthy_set() -> None:
    healthy = (cluster("east"), cluster("west"))
    before = selector(Policy.GEO_PROXIMITY, healthy)
    down = (cluster("east", healthy=False), cluster("west", healthy=False))
    chosen = selector(Policy.GEO_PROXIMITY, down, last=before.selection.answers)
    assert chosen.fail_open
    assert answers(chosen, *down) == {"europe": ["east"], "asia": ["west"]}
    assert view_answer(chosen, "europe").reason.startswith("fail open (no cluster is healthy)")


# --- records, status, events ---------------------------------------------------------------------------------

def intent(policy: Policy) -> ServiceIntent:
    return ServiceIntent("shop", "web", "uid", 1, domain_ref="fleet", load_balancing=LoadBalancing(policy))


def test_the_global_name_gets_one_endpoint_per_view_and_region_names_keep_their_own_answer() -> None:
    clusters = (cluster("east"), cluster("west"))
    names = service_names(intent(Policy.GEO_PROXIMITY), "example.com")
    chosen = selector(Policy.GEO_PROXIMITY, clusters)
    shape = [(e.dns_name, e.record_type, e.targets, e.set_identifier, e.provider_specific_value(VIEW_PROPERTY))
             for e in render_service_endpoints(intent(Policy.GEO_PROXIMITY), names, clusters, chosen)]
    glob = names.global_name
    assert [row for row in shape if row[0] == glob] == [
        (glob, "A", (VIPS["east"], VIPS["west"]), "", None),
        (glob, "A", (VIPS["west"],), "asia", "asia"),
        (glob, "A", (VIPS["east"],), "europe", "europe"),
    ]
    assert all(row[3] == "" for row in shape if row[0] != glob)  # region and zone names: no views

    plain = render_service_endpoints(intent(Policy.ROUND_ROBIN), names, clusters,
                                     selector(Policy.ROUND_ROBIN, clusters))
    assert all(e.set_identifier == "" and not e.provider_specific for e in plain)


def test_every_ingress_host_gets_the_views() -> None:
    clusters = (cluster("east"), cluster("west"))
    ingress = IngressIntent("shop", "shop", "uid", 1, ("a.example.com", "b.example.com"),
                            load_balancing=LoadBalancing(Policy.GEO_PROXIMITY))
    records = render_ingress_endpoints(ingress, ingress.hosts, clusters, selector(Policy.GEO_PROXIMITY, clusters))
    assert sorted((e.dns_name, e.set_identifier) for e in records) == [
        ("a.example.com", ""), ("a.example.com", "asia"), ("a.example.com", "europe"),
        ("b.example.com", ""), ("b.example.com", "asia"), ("b.example.com", "europe")]


def test_the_status_lists_each_views_answer_and_reads_back_the_same() -> None:
    clusters = (cluster("east"), cluster("west"))
    chosen = selector(Policy.GEO_PROXIMITY, clusters, (EUROPE, View("nowhere")))
    status = build_status(Outcome("example.com", "web", clusters, 3, selection=chosen.selection), 1, IntentStatus(),
                          "2025-01-01T00:00:00Z")
    written = status.to_json()["answers"]
    assert [(a["view"], [c["cluster"] for c in a["clusters"]], a.get("fallback")) for a in written] == [
        ("", ["east", "west"], None), ("europe", ["east"], None), ("nowhere", ["east", "west"], NO_LOCATION)]
    assert parse_status(status.to_json()).answers == status.answers


def test_a_view_whose_answer_moves_makes_one_answer_moved_event() -> None:
    healthy = (cluster("east"), cluster("west"))
    old = build_status(Outcome("example.com", "web", healthy, 3,
                               selection=selector(Policy.GEO_PROXIMITY, healthy).selection), 1, IntentStatus(), "t0")
    down = (cluster("east", healthy=False), cluster("west"))
    new = build_status(Outcome("example.com", "web", down, 3,
                               selection=selector(Policy.GEO_PROXIMITY, down).selection), 1, old, "t1")
    moved = answer_moved(old, new)
    assert moved is not None and moved[0] == "Warning"
    assert moved[1].startswith("view europe: answer moved from east to west: failed over from east (")
    assert "asia" not in moved[1]  # its answer did not move
    back = build_status(Outcome("example.com", "web", healthy, 3,
                                selection=selector(Policy.GEO_PROXIMITY, healthy).selection), 1, new, "t2")
    assert answer_moved(new, back) == ("Normal", "view europe: answer moved from west to east: nearest: east 5,570 km")


# --- which views are served ----------------------------------------------------------------------------------

def test_each_region_has_a_view_at_its_clusters_mean_location_after_the_dns_views() -> None:
    views = views_of([dns_view("office", "192.0.2.0/24", location={"latitude": 1, "longitude": 2})],
                     {"us-west": [SAN_FRANCISCO], "us-east": [NEW_YORK, BOSTON], "moon": []})
    assert [(v.name, v.latency_from) for v in views] == [
        ("office", ""), ("region-moon", "moon"), ("region-us-east", "us-east"), ("region-us-west", "us-west")]
    east = views[2].location
    assert east is not None and distance_km(east, NEW_YORK) == pytest.approx(distance_km(east, BOSTON), abs=0.1)
    assert views[1].location is None
    across = mean_location([Location(10, 179), Location(10, -179)])
    assert across is not None and abs(across.longitude) == pytest.approx(180, abs=1e-6)
