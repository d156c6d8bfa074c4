"""Pure parts of the aggregator: parsing, naming, health policy, rendering, status, queue, flags."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from aggregator.controller.workqueue import RETRY_BASE_DELAY, RETRY_MAX_DELAY, WorkQueue, backoff_delay
from aggregator.health.readiness import Reachability
from aggregator.model import (
    ClusterStatus,
    IngressIntent,
    IntentKey,
    IntentKind,
    IntentStatus,
    LoadBalancerAddress,
    MemberCluster,
    MemberIngress,
    MemberService,
    SecretKeyRef,
    ServiceIntent,
    parse_domain,
    parse_endpoint_slice,
    parse_member_ingress,
    parse_member_service,
    parse_service_intent,
)
from aggregator.render.records import address_records
from aggregator.render.status import Outcome, build_status, cluster_changes
from aggregator.settings import parse_settings
from aggregator.sources.ingress import IngressView, evaluate_ingress_cluster, render_ingress_endpoints
from aggregator.sources.naming import ingress_host_names, service_names
from aggregator.sources.service import ServiceView, evaluate_service_cluster, render_service_endpoints
from fleetdns.config import ConfigError
from fleetdns.dnsname import InvalidDNSNameError, check_publishable
from fleetdns.endpoint import Endpoint

pytestmark = pytest.mark.unit

EAST = MemberCluster("east", "us-east", "us-east-1a", SecretKeyRef("fleetdns-system", "east"))
EAST_B = MemberCluster("east-b", "us-east", "us-east-1b", SecretKeyRef("fleetdns-system", "east-b"))
WEST = MemberCluster("west", "us-west", "us-west-1a", SecretKeyRef("fleetdns-system", "west"))


def ip(*addresses: str) -> tuple[LoadBalancerAddress, ...]:
    return tuple(LoadBalancerAddress(ip=a) for a in addresses)


def entry(cluster: MemberCluster, addresses: tuple[LoadBalancerAddress, ...], healthy: bool = True) -> ClusterStatus:
    return ClusterStatus(cluster.name, cluster.region, cluster.zone, addresses, healthy, "test")


def intent(**fields: object) -> ServiceIntent:
    return ServiceIntent(namespace="shop", name="web", uid="u", generation=1, domain_ref="fleet",
                         **fields)  # type: ignore[arg-type]


def by_name(endpoints: list[Endpoint]) -> dict[tuple[str, str], tuple[str, ...]]:
    return {(e.dns_name, e.record_type): e.targets for e in endpoints}


# --- parsing ------------------------------------------------------------------------------------

def test_endpoint_slice_counts_ready_true_and_absent_as_ready() -> None:
    parsed = parse_endpoint_slice({
        "metadata": {"namespace": "shop", "name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                      {"addresses": ["10.0.0.2"], "conditions": {}},
                      {"addresses": ["10.0.0.3"]},
                      {"addresses": ["10.0.0.4"], "conditions": {"ready": False}}]})
    assert (parsed.service_name, parsed.ready_endpoints) == ("web", 3)


def test_service_addresses_are_parsed_sorted_and_bad_ips_dropped() -> None:
    parsed = parse_member_service({
        "metadata": {"namespace": "shop", "name": "web"}, "spec": {"type": "LoadBalancer"},
        "status": {"loadBalancer": {"ingress": [{"hostname": "LB.Example.NET."}, {"ip": "2001:db8::1"},
                                                {"ip": "192.0.2.1"}, {"ip": "not-an-ip"}]}}})
    assert parsed.is_load_balancer
    assert parsed.addresses == (LoadBalancerAddress(ip="192.0.2.1"), LoadBalancerAddress(ip="2001:db8::1"),
                                LoadBalancerAddress(hostname="lb.example.net"))


def test_ingress_backends_come_from_rules_and_default_backend() -> None:
    parsed = parse_member_ingress({
        "metadata": {"namespace": "shop", "name": "front"},
        "spec": {"defaultBackend": {"service": {"name": "fallback"}},
                 "rules": [{"http": {"paths": [{"backend": {"service": {"name": "api"}}},
                                               {"backend": {"resource": {"kind": "Bucket"}}}]}}]}})
    assert parsed.backend_services == ("api", "fallback")


def test_service_intent_defaults_ttl_to_30_and_keeps_an_explicit_one() -> None:
    parsed = parse_service_intent({"metadata": {"namespace": "shop", "name": "web", "generation": 2},
                                   "spec": {"domainRef": "fleet"}})
    assert parsed.record_ttl == 30 and parsed.generation == 2 and not parsed.allow_service_without_endpoints
    explicit = parse_service_intent({"metadata": {"namespace": "shop", "name": "web"},
                                     "spec": {"domainRef": "fleet", "recordTTL": 180}})
    assert explicit.record_ttl == 180


def test_domain_reads_spec_and_kubefeds_top_level_form() -> None:
    assert parse_domain({"metadata": {"name": "d"}, "spec": {"domain": "example.com"}}).domain == "example.com"
    assert parse_domain({"metadata": {"name": "d"}, "domain": "old.example", "nameServer": "ns1"}).name_server == "ns1"


# --- naming ---------------------------------------------------------------------------------------

def test_kubefed_names() -> None:
    names = service_names(intent(), "Example.COM.")
    assert names.global_name == "web.shop.fleet.svc.example.com"
    assert names.region_name("us-east") == "web.shop.fleet.svc.us-east.example.com"
    assert names.zone_name("us-east", "us-east-1a") == "web.shop.fleet.svc.us-east-1a.us-east.example.com"
    assert names.dns_prefix_name("www") == "www.example.com"


def test_external_name_replaces_the_service_name() -> None:
    assert service_names(intent(external_name="shop-api"), "example.com").global_name == \
        "shop-api.shop.fleet.svc.example.com"


def test_a_name_too_long_to_serve_is_refused() -> None:
    with pytest.raises(InvalidDNSNameError):
        service_names(intent(), ".".join(["a" * 60] * 4))


def test_ingress_hosts_are_normalised_and_deduplicated() -> None:
    assert ingress_host_names(("Shop.Example.org.", "shop.example.org", "api.example.org")) == (
        "api.example.org", "shop.example.org")


def test_a_wildcard_host_is_refused_saying_coredns_cannot_serve_it() -> None:
    with pytest.raises(InvalidDNSNameError, match="wildcard.*list each host explicitly"):
        ingress_host_names(("shop.example.org", "*.example.org"))


def name_of_length(total: int) -> str:
    """``w.bbb….bbb.example.com`` of exactly ``total`` octets, every label short enough."""
    middle = total - len("w.") - len(".example.com")
    labels = ["b" * 40] * (middle // 41) + (["b" * (middle % 41 - 1)] if middle % 41 > 1 else [])
    name = ".".join(["w", *labels, "example.com"])
    name = name if len(name) == total else "ww" + name[1:]  # one octet short when the last label came out empty
    assert len(name) == total
    return name


# ExternalDNS's TXT registry stores the ownership of `web.example.com` at `cname-web.example.com`:
# the first label may have 63 - 6 = 57 octets, the name 253 - 6 = 247.
@pytest.mark.parametrize("name", [
    "a" * 57 + ".example.com",
    name_of_length(247),
    "_acme-challenge.example.com",
])
def test_check_publishable_accepts_names_with_room_for_the_registry_prefix(name: str) -> None:
    assert check_publishable(name.upper() + ".") == name


@pytest.mark.parametrize(("name", "says"), [
    ("a" * 58 + ".example.com", "first label .* is 58 characters; at most 57 .* 'cname-'"),
    (name_of_length(248), "is 248 characters; at most 247"),
    ("*.example.com", "wildcard"),
    ("shop.*.example.com", "'\\*' is only allowed as the leftmost label"),
    ("bad_label-.example.com", "may hold only letters"),
])
def test_check_publishable_refuses_what_stock_coredns_or_the_registry_cannot_take(name: str, says: str) -> None:
    with pytest.raises(InvalidDNSNameError, match=says):
        check_publishable(name)


def test_service_names_leave_room_for_the_registry_prefix() -> None:
    service_names(intent(external_name="e" * 57), "example.com")
    with pytest.raises(InvalidDNSNameError, match="at most 57"):
        service_names(intent(external_name="e" * 58), "example.com")
    with pytest.raises(InvalidDNSNameError, match="at most 57"):
        service_names(intent(dns_prefix="p" * 58), "example.com")
    long_domain = ".".join(["d" * 60] * 3)  # global name 22 + 182 = 204 octets; a zone name goes past 247
    names = service_names(intent(), long_domain)
    with pytest.raises(InvalidDNSNameError, match="at most 247"):
        names.zone_name("r" * 20, "z" * 30)


# --- policy ---------------------------------------------------------------------------------------

LB = MemberService("shop", "web", True, ip("192.0.2.1"))


@pytest.mark.parametrize(("view", "allow", "healthy", "reason"), [
    (ServiceView(EAST, Reachability.CONNECTED, service=LB, ready_endpoints=2), False, True, "ReadyEndpoints"),
    (ServiceView(EAST, Reachability.CONNECTED, service=LB, ready_endpoints=0), False, False, "NoReadyEndpoints"),
    (ServiceView(EAST, Reachability.CONNECTED, service=LB, ready_endpoints=0), True, True, "EndpointsNotRequired"),
    (ServiceView(EAST, Reachability.CONNECTED, service=MemberService("shop", "web", True, ()), ready_endpoints=1),
     False, False, "NoLoadBalancerAddress"),
    (ServiceView(EAST, Reachability.CONNECTED, service=MemberService("shop", "web", False, ip("10.0.0.1")),
                ready_endpoints=1), False, False, "ServiceNotLoadBalancer"),
    (ServiceView(EAST, Reachability.IN_GRACE, service=LB, ready_endpoints=1), False, True, "ReadyEndpoints"),
    (ServiceView(EAST, Reachability.LOST), False, False, "MemberUnreachable"),
    (ServiceView(EAST, Reachability.UNAVAILABLE, detail="Secret missing"), False, False, "MemberUnavailable"),
])
def test_service_health_rule(view: ServiceView, allow: bool, healthy: bool, reason: str) -> None:
    result = evaluate_service_cluster(view, allow)
    assert result is not None
    assert (result.healthy, result.reason.split(":")[0].split(" ")[0]) == (healthy, reason)


def test_within_the_grace_period_the_entry_is_unchanged_so_a_blip_rewrites_no_status() -> None:
    live = evaluate_service_cluster(ServiceView(EAST, Reachability.CONNECTED, service=LB, ready_endpoints=1), False)
    kept = evaluate_service_cluster(ServiceView(EAST, Reachability.IN_GRACE, service=LB, ready_endpoints=1), False)
    assert kept is not None and kept == live


def test_member_not_reached_since_start_keeps_its_published_entry_within_the_grace_period() -> None:
    published = entry(EAST, ip("192.0.2.1"))
    kept = evaluate_service_cluster(ServiceView(EAST, Reachability.CONNECTING, last_known=published), False)
    assert kept == published  # the MemberCluster, not every intent, says the member is not reached yet
    assert evaluate_service_cluster(ServiceView(EAST, Reachability.CONNECTING), False) is None


def test_cluster_without_the_service_is_not_listed() -> None:
    assert evaluate_service_cluster(ServiceView(EAST, Reachability.CONNECTED), False) is None


def test_ingress_is_healthy_while_one_backend_has_ready_endpoints() -> None:
    ingress = MemberIngress("shop", "front", ip("192.0.2.1"), ("api", "web"))
    healthy = evaluate_ingress_cluster(IngressView(EAST, Reachability.CONNECTED, ingress=ingress,
                                                   backend_ready={"api": 0, "web": 1}))
    sick = evaluate_ingress_cluster(IngressView(EAST, Reachability.CONNECTED, ingress=ingress,
                                                backend_ready={"api": 0, "web": 0}))
    assert healthy is not None and healthy.healthy and "web" in healthy.reason
    assert sick is not None and not sick.healthy and sick.reason.startswith("NoReadyBackends")


# --- rendering ------------------------------------------------------------------------------------

def test_all_healthy_gives_a_records_per_global_region_and_zone() -> None:
    names = service_names(intent(), "example.com")
    out = by_name(render_service_endpoints(intent(), names, (
        entry(EAST, ip("192.0.2.1")), entry(EAST_B, ip("192.0.2.2")), entry(WEST, ip("198.51.100.1")))))
    g = names.global_name
    assert out == {
        (g, "A"): ("192.0.2.1", "192.0.2.2", "198.51.100.1"),
        (names.region_name("us-east"), "A"): ("192.0.2.1", "192.0.2.2"),
        (names.zone_name("us-east", "us-east-1a"), "A"): ("192.0.2.1",),
        (names.zone_name("us-east", "us-east-1b"), "A"): ("192.0.2.2",),
        (names.region_name("us-west"), "A"): ("198.51.100.1",),
        (names.zone_name("us-west", "us-west-1a"), "A"): ("198.51.100.1",),
    }


def test_zone_without_healthy_target_is_a_cname_to_its_region_and_region_to_global() -> None:
    names = service_names(intent(dns_prefix="www"), "example.com")
    out = by_name(render_service_endpoints(intent(dns_prefix="www"), names, (
        entry(EAST, ip("192.0.2.1"), healthy=False), entry(EAST_B, ip("192.0.2.2")),
        entry(WEST, ip("198.51.100.1"), healthy=False))))
    assert out[(names.zone_name("us-east", "us-east-1a"), "CNAME")] == (names.region_name("us-east"),)
    assert out[(names.region_name("us-east"), "A")] == ("192.0.2.2",)
    assert out[(names.region_name("us-west"), "CNAME")] == (names.global_name,)
    assert out[(names.zone_name("us-west", "us-west-1a"), "CNAME")] == (names.region_name("us-west"),)
    assert out[("www.example.com", "CNAME")] == (names.global_name,)


def test_nothing_healthy_renders_nothing() -> None:
    names = service_names(intent(dns_prefix="www"), "example.com")
    assert render_service_endpoints(intent(dns_prefix="www"), names, (entry(EAST, ip("192.0.2.1"), False),)) == []


def test_ipv6_addresses_give_aaaa_records() -> None:
    out = by_name(address_records("a.example.com", [entry(EAST, ip("192.0.2.1", "2001:db8::1"))], 60))
    assert out == {("a.example.com", "A"): ("192.0.2.1",), ("a.example.com", "AAAA"): ("2001:db8::1",)}


def test_hostnames_count_only_without_ips_and_give_one_cname() -> None:
    hostname = (LoadBalancerAddress(hostname="lb-west.example.net"),)
    mixed = by_name(address_records("a.example.com", [entry(EAST, ip("192.0.2.1")), entry(WEST, hostname)], 60))
    assert mixed == {("a.example.com", "A"): ("192.0.2.1",)}
    only = by_name(address_records("a.example.com", [
        entry(WEST, hostname), entry(EAST, (LoadBalancerAddress(hostname="lb-east.example.net"),))], 60))
    assert only == {("a.example.com", "CNAME"): ("lb-east.example.net",)}


def test_ingress_renders_one_record_per_host_over_healthy_clusters() -> None:
    ingress = IngressIntent("shop", "front", "u", 1, ("a.example.org", "b.example.org"), record_ttl=30)
    out = render_ingress_endpoints(ingress, ("a.example.org", "b.example.org"),
                                   (entry(EAST, ip("192.0.2.1")), entry(WEST, ip("198.51.100.1"), healthy=False)))
    assert [(e.dns_name, e.record_type, e.targets, e.record_ttl) for e in out] == [
        ("a.example.org", "A", ("192.0.2.1",), 30), ("b.example.org", "A", ("192.0.2.1",), 30)]


# --- status ---------------------------------------------------------------------------------------

def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    outcome = Outcome("example.com", "web.example.com", (entry(EAST, ip("192.0.2.1")),), 1)
    first = build_status(outcome, 1, build_status(outcome, 0, build_status(outcome, 0, _empty(), "t0"), "t0"), "t1")
    assert [c.last_transition_time for c in first.conditions] == ["t0", "t0"]
    degraded = Outcome("example.com", "web.example.com", (entry(EAST, ip("192.0.2.1")), entry(WEST, (), False)), 1)
    second = build_status(degraded, 1, first, "t2")
    assert [(c.type, c.status, c.last_transition_time) for c in second.conditions] == [
        ("Ready", "True", "t0"), ("Degraded", "True", "t2")]


def test_cluster_changes_name_joins_and_leaves_with_reasons() -> None:
    before = build_status(Outcome("", "", (entry(EAST, ip("192.0.2.1")),), 1), 1, _empty(), "t")
    after = build_status(Outcome("", "", (entry(EAST, ip("192.0.2.1"), False), entry(WEST, ip("192.0.2.9"))), 1),
                         1, before, "t")
    joined, left = cluster_changes(before, after)
    assert [c.cluster for c in joined] == ["west"] and [c.cluster for c in left] == ["east"]


def _empty() -> IntentStatus:
    return IntentStatus()


# --- work queue -----------------------------------------------------------------------------------

def test_queue_deduplicates_and_never_hands_a_key_to_two_workers() -> None:
    queue: WorkQueue[IntentKey] = WorkQueue()
    key = IntentKey(IntentKind.SERVICE, "shop", "web")
    queue.add(key)
    queue.add(key)
    assert len(queue) == 1
    got = queue.get(timeout=1)
    assert got is not None and got[0] == key
    queue.add(key)  # changed while processing: waits until done
    assert queue.get(timeout=0.05) is None
    queue.done(key)
    assert queue.get(timeout=1) is not None


def test_queue_add_after_delivers_later() -> None:
    queue: WorkQueue[str] = WorkQueue()
    started = time.monotonic()
    queue.add_after("later", 0.2)
    assert queue.get(timeout=1) is not None
    assert time.monotonic() - started >= 0.19


def test_backoff_doubles_from_half_a_second_and_holds_its_cap() -> None:
    assert [backoff_delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert (RETRY_BASE_DELAY, RETRY_MAX_DELAY) == (0.5, 300.0)
    assert backoff_delay(9) == 256.0 and backoff_delay(10) == 300.0
    assert backoff_delay(10_000) == 300.0  # no overflow however long an intent keeps failing


def test_rate_limited_delays_grow_per_key_and_forget_resets() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=10, max_delay=35)
    assert [queue.add_rate_limited("broken") for _ in range(4)] == [10, 20, 35, 35]
    assert queue.failures("broken") == 4
    assert queue.add_rate_limited("other") == 10  # per key: one failing intent does not slow the others
    queue.forget("broken")
    assert queue.failures("broken") == 0
    assert queue.add_rate_limited("broken") == 10


def test_rate_limited_key_is_delivered_after_its_delay_and_only_once() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=0.1, max_delay=1.0)
    started = time.monotonic()
    queue.add_rate_limited("k")
    got = queue.get(timeout=2)
    assert got is not None and got[0] == "k" and time.monotonic() - started >= 0.09
    queue.done("k")
    # a retry pending and a change meanwhile: the change is handed out at once ...
    queue.add_rate_limited("k")
    queue.add("k")
    got = queue.get(timeout=0.05)
    assert got is not None and got[0] == "k"
    # ... the retry comes due while it is processed: no second worker gets the key
    assert queue.get(timeout=0.4) is None
    queue.done("k")
    assert queue.get(timeout=1) is not None  # the retry, once, after done
    queue.done("k")
    assert queue.get(timeout=0.4) is None


def test_queue_shutdown_wakes_waiting_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    results: list[object] = []
    worker = threading.Thread(target=lambda: results.append(queue.get()))
    worker.start()
    queue.shutdown()
    worker.join(2)
    assert results == [None]


# --- settings -------------------------------------------------------------------------------------

def test_defaults() -> None:
    settings = parse_settings([])
    assert (settings.member_grace_period, settings.health_port, settings.leader_election) == (30.0, 8081, True)
    assert (settings.lease_name, settings.leader_election_namespace) == ("fleetdns-aggregator", "fleetdns-system")


def test_flags_read_their_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETDNS_AGGREGATOR_MEMBER_GRACE_PERIOD", "1m30s")
    monkeypatch.setenv("FLEETDNS_AGGREGATOR_LEADER_ELECTION", "false")
    settings = parse_settings([])
    assert settings.member_grace_period == 90.0 and not settings.leader_election


@pytest.mark.parametrize(("argv", "flag"), [
    (["--member-grace-period=soon"], "--member-grace-period"),
    (["--health-listen=8081"], "--health-listen"),
    (["--leader-election=maybe"], "--leader-election"),
    (["--lease-name=Not_Valid"], "--lease-name"),
    (["--renew-deadline=20s"], "--renew-deadline"),
    (["--workers=0"], "--workers"),
    (["--kubeconfig=/no/such/file"], "--kubeconfig"),
    (["--log-level=loud"], "--log-level"),
    (["--self-service-domain=fleet.prod"], "--self-service-domain"),  # a domainRef is a DNS label (the CRDs check)
])
def test_invalid_flags_name_the_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(argv)
    assert error.value.flag == flag


def test_invalid_flag_exits_with_code_2_and_names_flag_and_value() -> None:
    result = subprocess.run([sys.executable, "-m", "aggregator", "--member-grace-period=soon"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--member-grace-period='soon'" in result.stderr
