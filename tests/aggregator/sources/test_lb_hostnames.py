"""Hostname load balancers (EKS-style): each cluster's hostname resolved to its addresses.

Integration: a real CoreDNS serves the load-balancer hostnames from a zone the tests edit, real host/east/west
API servers, the aggregator as a real process pointed at that CoreDNS (``--dns-resolver``). Unit: the cache's
lifetimes, refreshes, expiry and re-queues on a clock the test steps; the entry rule; the flags.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aggregator.model import ClusterStatus, IntentKey, IntentKind, LoadBalancerAddress
from aggregator.render.records import address_records
from aggregator.settings import parse_settings
from aggregator.sources.lb_hostnames import (
    MAX_LIFETIME,
    MIN_LIFETIME,
    REFRESH_AT,
    RETRY_MAX,
    HostnameCache,
    Resolution,
    State,
    resolve_entry,
)
from fleetdns.config import ConfigError
from fleetdns.kubeapi import KubeClient
from rig import Fleet
from rig.aggregator import AggregatorProcess
from rig.coredns import EditableZone
from tests.support.aggregator import (
    condition,
    create_domain,
    create_service_intent,
    deploy_service,
    intent,
    new_namespace,
    prepare_fleet,
    samples,
    unique,
    wait_for,
    wait_records,
)

LB_ZONE = "elb.test"
P = "{name}.{ns}.fleet.svc"
SETTLE = 30.0  # generous sanity bound for the aggregator to follow a change (it takes about a second)


class World:
    def __init__(self, fleet: Fleet, host: KubeClient, namespace: str, zone: EditableZone,
                 aggregator: AggregatorProcess) -> None:
        self.fleet, self.host, self.ns, self.zone, self.aggregator = fleet, host, namespace, zone, aggregator

    def lookups(self) -> dict[str, float]:
        """The aggregator's hostname lookups by result, from its /metrics."""
        return {labels["result"]: value
                for labels, value in samples(self.aggregator, "fleetdns_aggregator_lb_hostname_lookups_total")}

    def names(self, service: str) -> dict[str, str]:
        p = P.format(name=service, ns=self.ns)
        return {"global": f"{p}.example.com", "east": f"{p}.east.example.com", "west": f"{p}.west.example.com"}

    def load_balancers(self, name: str) -> tuple[str, str]:
        """Hostnames of this test's load balancers in east and west (as a cloud provider names them)."""
        return f"{name}-east.{LB_ZONE}", f"{name}-west.{LB_ZONE}"

    def deploy(self, name: str, east: dict[str, object], west: dict[str, object]) -> None:
        deploy_service(self.fleet, self.ns, name, {"east": {"ready": True, **east}, "west": {"ready": True, **west}})

    def entries(self, name: str) -> dict[str, dict[str, Any]]:
        status = intent(self.host, self.ns, "servicednsrecords", name).get("status") or {}
        return {entry["cluster"]: entry for entry in status.get("dns") or []}

    def wait_entries(self, name: str, ready: Callable[[dict[str, dict[str, Any]]], bool]) -> dict[str, dict[str, Any]]:
        """The intent's status entries once ``ready`` holds (the status is written after the DNSEndpoint)."""
        def check() -> dict[str, dict[str, Any]] | None:
            entries = self.entries(name)
            return entries if ready(entries) else None
        return wait_for(check, timeout=SETTLE, what=f"status of {name}")


@pytest.fixture(scope="module")
def world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One zone and one aggregator for the module; every test uses its own intents and hostnames."""
    host = prepare_fleet(fleet)
    namespace = new_namespace(fleet, "agg-lbhn")
    create_domain(host, namespace)
    with EditableZone(LB_ZONE, ttl=300, workdir=tmp_path_factory.mktemp("lb-zone")) as zone:
        aggregator = AggregatorProcess(fleet.host.kubeconfig, [
            f"--namespace={namespace}", f"--lease-name={namespace}", "--log-format=text",
            f"--dns-resolver={zone.address}"], tmp_path_factory.mktemp("aggregator"))
        with aggregator:
            yield World(fleet, host, namespace, zone, aggregator)
            assert aggregator.process is not None and aggregator.process.running, aggregator.log()[-3000:]


# --- against the real components ---------------------------------------------------------------

@pytest.mark.apiserver
@pytest.mark.coredns
def test_hostname_load_balancers_of_several_clusters_publish_every_clusters_addresses(world: World) -> None:
    name = unique("multi")
    east_lb, west_lb = world.load_balancers(name)
    world.zone.set(east_lb, "192.0.2.31")
    world.zone.set(west_lb, "198.51.100.41", "2001:db8::41")
    world.deploy(name, east={"hostname": east_lb}, west={"hostname": west_lb})
    create_service_intent(world.host, world.ns, name)
    n = world.names(name)

    found = wait_records(world.host, world.ns, f"service-{name}",
                         lambda r: r.get((n["global"], "A")) == {"192.0.2.31", "198.51.100.41"}, timeout=SETTLE)
    assert found[(n["global"], "AAAA")] == {"2001:db8::41"}
    assert found[(n["east"], "A")] == {"192.0.2.31"}
    assert found[(n["west"], "A")] == {"198.51.100.41"} and found[(n["west"], "AAAA")] == {"2001:db8::41"}
    assert not [key for key in found if key[1] == "CNAME" and key[0] in (n["global"], n["east"], n["west"])]
    entries = world.wait_entries(name, lambda e: len(e) == 2 and all(c["healthy"] for c in e.values()))
    assert entries["east"]["resolvedAddresses"] == ["192.0.2.31"]
    assert entries["west"]["resolvedAddresses"] == ["198.51.100.41", "2001:db8::41"]
    assert entries["west"]["loadBalancer"]["ingress"] == [{"hostname": west_lb}]


@pytest.mark.apiserver
@pytest.mark.coredns
def test_ips_and_resolved_hostnames_of_different_clusters_share_the_answer(world: World) -> None:
    name = unique("mixed")
    _, west_lb = world.load_balancers(name)
    world.zone.set(west_lb, "198.51.100.42")
    world.deploy(name, east={"ip": "192.0.2.32"}, west={"hostname": west_lb})
    create_service_intent(world.host, world.ns, name)
    n = world.names(name)
    wait_records(world.host, world.ns, f"service-{name}",
                 lambda r: r.get((n["global"], "A")) == {"192.0.2.32", "198.51.100.42"}, timeout=SETTLE)


@pytest.mark.apiserver
@pytest.mark.coredns
def test_a_new_address_behind_a_hostname_is_published_within_the_record_ttl(world: World) -> None:
    """The zone's TTL is 300 s; the intent's recordTTL (3 s) bounds how long the published answer lags."""
    name = unique("moves")
    east_lb, west_lb = world.load_balancers(name)
    world.zone.set(east_lb, "192.0.2.33")
    world.zone.set(west_lb, "198.51.100.43")
    world.deploy(name, east={"hostname": east_lb}, west={"hostname": west_lb})
    create_service_intent(world.host, world.ns, name, recordTTL=3)
    n = world.names(name)
    wait_records(world.host, world.ns, f"service-{name}",
                 lambda r: r.get((n["global"], "A")) == {"192.0.2.33", "198.51.100.43"}, timeout=SETTLE)

    world.zone.set(east_lb, "192.0.2.133")
    wait_records(world.host, world.ns, f"service-{name}",
                 lambda r: r.get((n["global"], "A")) == {"192.0.2.133", "198.51.100.43"}, timeout=SETTLE)
    world.wait_entries(name, lambda e: e.get("east", {}).get("resolvedAddresses") == ["192.0.2.133"])

    world.zone.set(west_lb)  # the load balancer's name is gone (NXDOMAIN): west leaves once its addresses expire
    found = wait_records(world.host, world.ns, f"service-{name}",
                         lambda r: r.get((n["global"], "A")) == {"192.0.2.133"}, timeout=SETTLE)
    assert (n["west"], "CNAME") in found  # KubeFed's fallback of an empty region, not the load balancer's name
    west = world.wait_entries(name, lambda e: e.get("west", {}).get("healthy") is False)["west"]
    assert west["reason"].startswith(f"HostnameNotResolved: {west_lb}: NXDOMAIN"), west
    assert "last addresses expired" in west["reason"], west


@pytest.mark.apiserver
@pytest.mark.coredns
def test_cname_form_keeps_one_cname_to_a_hostname(world: World) -> None:
    name = unique("cname")
    east_lb, west_lb = world.load_balancers(name)
    world.zone.set(east_lb, "192.0.2.34")
    world.zone.set(west_lb, "198.51.100.44")
    world.deploy(name, east={"hostname": east_lb}, west={"hostname": west_lb})
    create_service_intent(world.host, world.ns, name, loadBalancerHostnames="CNAME")
    n = world.names(name)
    # each member's Service reaches the aggregator on its own watch: wait until both have (the global CNAME goes
    # to the first cluster in name order, east, once east is known)
    found = wait_records(world.host, world.ns, f"service-{name}",
                         lambda r: r.get((n["global"], "CNAME")) == {east_lb}
                         and r.get((n["west"], "CNAME")) == {west_lb}, timeout=SETTLE)
    assert (n["global"], "A") not in found
    entries = world.wait_entries(name, lambda e: len(e) == 2 and all(c["healthy"] for c in e.values()))
    assert "resolvedAddresses" not in entries["east"]


@pytest.mark.apiserver
@pytest.mark.coredns
def test_an_unresolvable_hostname_keeps_its_cluster_out_with_a_reason_and_the_other_published(world: World) -> None:
    name = unique("nxlb")
    east_lb, west_lb = world.load_balancers(name)
    world.zone.set(east_lb, "192.0.2.35")  # west's name was never in the zone
    before = world.lookups()
    world.deploy(name, east={"hostname": east_lb}, west={"hostname": west_lb})
    create_service_intent(world.host, world.ns, name)
    n = world.names(name)

    west = world.wait_entries(name, lambda e: "NXDOMAIN" in e.get("west", {}).get("reason", ""))["west"]
    assert west["healthy"] is False and str(west["reason"]).startswith(f"HostnameNotResolved: {west_lb}: NXDOMAIN")
    found = wait_records(world.host, world.ns, f"service-{name}",
                         lambda r: r.get((n["global"], "A")) == {"192.0.2.35"}, timeout=SETTLE)
    assert found[(n["west"], "CNAME")] == {n["global"]}
    obj = intent(world.host, world.ns, "servicednsrecords", name)
    assert condition(obj, "Ready")["status"] == "True"
    assert condition(obj, "Degraded")["reason"] == "ClustersUnhealthy"
    # An operator sees the failing lookups next to the good ones on /metrics.
    after = world.lookups()
    assert after.get("failed", 0) > before.get("failed", 0) and after.get("resolved", 0) > before.get("resolved", 0)


# --- the cache, on a stepped clock ---------------------------------------------------------------

WEB = IntentKey(IntentKind.SERVICE, "shop", "web")
API = IntentKey(IntentKind.SERVICE, "shop", "api")
LB = "lb-1.elb.test"


@pytest.mark.unit
def test_a_new_hostname_is_pending_and_due_at_once_and_its_answer_requeues_its_users() -> None:
    cache = HostnameCache()
    assert cache.use(WEB, {LB}, 30, now=100.0) == {LB: Resolution(LB, State.PENDING)}
    cache.use(API, {LB}, 30, now=100.0)
    assert cache.due(100.0) == [LB]
    assert cache.due(100.0) == []  # in flight: not handed out twice
    assert cache.succeeded(LB, ("192.0.2.1", "2001:db8::1"), 60, now=100.1) == [API, WEB]
    assert cache.use(WEB, {LB}, 30, now=101.0)[LB] == Resolution(LB, State.RESOLVED, ("192.0.2.1", "2001:db8::1"))


@pytest.mark.unit
def test_an_answer_lives_for_the_smallest_of_its_dns_ttl_and_its_users_record_ttls() -> None:
    cache = HostnameCache()
    cache.use(WEB, {LB}, 30, now=0.0)
    cache.due(0.0)
    cache.succeeded(LB, ["192.0.2.1"], 60, now=0.0)
    assert cache.next_event() == pytest.approx(REFRESH_AT * 30)  # recordTTL 30 < DNS TTL 60
    cache.use(API, {LB}, 8, now=1.0)  # a user with a shorter recordTTL brings the refresh forward at once
    assert cache.next_event() == pytest.approx(REFRESH_AT * 8)
    assert cache.due(REFRESH_AT * 8) == [LB]
    cache.succeeded(LB, ["192.0.2.1"], 4, now=10.0)  # DNS TTL 4 < every recordTTL
    assert cache.next_event() == pytest.approx(10.0 + REFRESH_AT * 4)
    cache.due(20.0)
    cache.succeeded(LB, ["192.0.2.1"], 0, now=20.0)  # TTL 0: never more often than the floor
    assert cache.next_event() == pytest.approx(20.0 + REFRESH_AT * MIN_LIFETIME)
    cache.use(WEB, set(), 30, now=21.0)
    cache.use(API, {LB}, 604800, now=21.0)
    cache.due(30.0)
    cache.succeeded(LB, ["192.0.2.1"], 86400, now=30.0)  # long TTLs: still re-checked within the cap
    assert cache.next_event() == pytest.approx(30.0 + REFRESH_AT * MAX_LIFETIME)


@pytest.mark.unit
def test_the_same_addresses_again_requeue_nothing_and_new_ones_requeue_the_users() -> None:
    cache = HostnameCache()
    cache.use(WEB, {LB}, 30, now=0.0)
    cache.due(0.0)
    cache.succeeded(LB, ["192.0.2.2", "192.0.2.1"], 30, now=0.0)
    assert cache.due(REFRESH_AT * 30) == [LB]
    assert cache.succeeded(LB, ["192.0.2.1", "192.0.2.2"], 30, now=REFRESH_AT * 30) == []
    cache.due(50.0)
    assert cache.succeeded(LB, ["192.0.2.3"], 30, now=50.0) == [WEB]


@pytest.mark.unit
def test_a_failing_refresh_keeps_the_last_addresses_until_they_expire_then_requeues_the_users() -> None:
    cache = HostnameCache()
    cache.use(WEB, {LB}, 20, now=0.0)
    cache.due(0.0)
    cache.succeeded(LB, ["192.0.2.1"], 300, now=0.0)  # lifetime 20 s: refresh at 15 s, expiry at 20 s
    assert cache.due(15.0) == [LB]
    assert cache.failed(LB, "no answer within 2s", now=17.0) == []  # kept: nothing changes for the intents
    assert cache.resolution(LB) == Resolution(LB, State.RESOLVED, ("192.0.2.1",), "no answer within 2s", 1)
    assert cache.next_event() == pytest.approx(18.0)  # retried after 1 s
    assert cache.due(18.0) == [LB]
    cache.failed(LB, "no answer within 2s", now=19.5)
    assert cache.next_event() == pytest.approx(20.0)  # retry (2 s later) capped at the expiry
    assert cache.expire(19.9) == []
    assert cache.expire(20.0) == [LB]
    assert cache.users(LB) == [WEB]
    expired = cache.resolution(LB)
    assert expired is not None and expired.state is State.FAILED and expired.addresses == ()
    assert expired.detail == "no answer within 2s; last addresses expired"
    assert cache.due(20.0) == [LB]  # still retried
    assert cache.succeeded(LB, ["192.0.2.1"], 300, now=20.5) == [WEB]  # back: the users are re-queued again


@pytest.mark.unit
def test_lost_addresses_keep_one_reason_whichever_of_expiry_and_failure_comes_first_and_across_retries() -> None:
    """A reason that changes wording between retries would rewrite the status of every intent using the name."""
    for failure_first in (True, False):
        cache = HostnameCache()
        cache.use(WEB, {LB}, 20, now=0.0)
        cache.due(0.0)
        cache.succeeded(LB, ["192.0.2.1"], 300, now=0.0)  # expires at 20 s
        if failure_first:  # the refresh's NXDOMAIN arrives after the expiry, before expire() ran
            assert cache.failed(LB, "NXDOMAIN", now=20.2) == [WEB]
        else:
            assert cache.expire(20.0) == [LB]
            cache.failed(LB, "NXDOMAIN", now=20.2)
        details = {cache.resolution(LB).detail}  # type: ignore[union-attr]
        for retry in (21.0, 23.0, 27.0):
            assert cache.failed(LB, "NXDOMAIN", now=retry) == []
            details.add(cache.resolution(LB).detail)  # type: ignore[union-attr]
        assert details == {"NXDOMAIN; last addresses expired"}, failure_first


@pytest.mark.unit
def test_a_hostname_that_never_resolves_fails_at_once_and_is_retried_with_a_capped_backoff() -> None:
    cache = HostnameCache()
    cache.use(WEB, {LB}, 30, now=0.0)
    now, delays = 0.0, []
    for _ in range(8):
        assert cache.due(now) == [LB]
        changed = cache.failed(LB, "NXDOMAIN (no such name)", now)
        assert changed == ([WEB] if now == 0.0 else [])  # Pending -> Failed once; the same failure again: nothing
        nxt = cache.next_event()
        assert nxt is not None
        delays.append(nxt - now)
        now = nxt
    assert delays == [1.0, 2.0, 4.0, 8.0, RETRY_MAX, RETRY_MAX, RETRY_MAX, RETRY_MAX]
    assert cache.resolution(LB) == Resolution(LB, State.FAILED, (), "NXDOMAIN (no such name)", 8)
    assert cache.succeeded(LB, [], 30, now) == []  # an answer without addresses is one more failure
    assert cache.resolution(LB).detail == "no A or AAAA record"  # type: ignore[union-attr]


@pytest.mark.unit
def test_hostnames_nobody_uses_are_forgotten() -> None:
    cache = HostnameCache()
    cache.use(WEB, {LB, "lb-2.elb.test"}, 30, now=0.0)
    cache.use(API, {LB}, 30, now=0.0)
    cache.use(WEB, {LB}, 30, now=1.0)  # WEB's Service changed its load balancer: lb-2 is unused now
    assert len(cache) == 1 and cache.users(LB) == [API, WEB]
    assert cache.forget_users(LB, [API]) is True  # API was deleted
    assert cache.forget_users(LB, [WEB]) is False  # and WEB: nothing left to refresh
    assert len(cache) == 0 and cache.next_event() is None
    assert cache.succeeded(LB, ["192.0.2.1"], 30, now=2.0) == []  # an answer in flight meanwhile is dropped


# --- the entry rule (what each cluster contributes) ----------------------------------------------

def entry(cluster: str, *addresses: LoadBalancerAddress, healthy: bool = True, resolved: tuple[str, ...] = (),
          reason: str = "ReadyEndpoints: 1 ready") -> ClusterStatus:
    return ClusterStatus(cluster, cluster, f"{cluster}-1a", addresses, healthy, reason, resolved)


HOST = LoadBalancerAddress(hostname=LB)
RESOLVED = {LB: Resolution(LB, State.RESOLVED, ("192.0.2.1", "2001:db8::1"))}


@pytest.mark.unit
def test_a_resolved_hostname_gives_its_cluster_the_addresses() -> None:
    resolved = resolve_entry(entry("east", HOST), RESOLVED, None)
    assert resolved == entry("east", HOST, resolved=("192.0.2.1", "2001:db8::1"))
    records = {(e.record_type, e.targets) for e in address_records("a.example.com", [resolved], 30)}
    assert records == {("A", ("192.0.2.1",)), ("AAAA", ("2001:db8::1",))}


@pytest.mark.unit
def test_while_a_hostname_is_first_resolved_the_last_published_addresses_stand_in() -> None:
    pending = {LB: Resolution(LB, State.PENDING)}
    published = entry("east", HOST, resolved=("192.0.2.9",))
    assert resolve_entry(entry("east", HOST), pending, published) == published
    other = entry("east", LoadBalancerAddress(hostname="lb-new.elb.test"), resolved=("192.0.2.9",))
    out = resolve_entry(entry("east", HOST), pending, other)  # a different load balancer: nothing to stand in
    assert not out.healthy and out.reason == f"HostnameNotResolved: {LB}: resolving (first lookup)"


@pytest.mark.unit
def test_a_cluster_without_any_address_leaves_the_answer_but_its_ips_still_count() -> None:
    failed = {LB: Resolution(LB, State.FAILED, (), "NXDOMAIN (no such name)")}
    out = resolve_entry(entry("east", HOST), failed, None)
    assert not out.healthy and out.reason == f"HostnameNotResolved: {LB}: NXDOMAIN (no such name)"
    mixed = resolve_entry(entry("east", LoadBalancerAddress(ip="192.0.2.7"), HOST), failed, None)
    assert mixed.healthy and mixed.reason == "ReadyEndpoints: 1 ready"
    down = resolve_entry(entry("east", HOST, healthy=False, reason="NoReadyEndpoints: none"), failed, None)
    assert down.reason == "NoReadyEndpoints: none"  # its own reason stays the one that matters


# --- flags ---------------------------------------------------------------------------------------

@pytest.mark.unit
def test_dns_resolver_flag_takes_ip_and_port_lists_and_refuses_names() -> None:
    settings = parse_settings(["--dns-resolver=127.0.0.1:5353,10.96.0.10", "--dns-resolver=[2001:db8::53]:53"])
    assert settings.dns_resolvers == (("127.0.0.1", 5353), ("10.96.0.10", 53), ("2001:db8::53", 53))
    assert parse_settings([]).resolve_lb_hostnames is True and parse_settings([]).dns_resolvers == ()
    assert parse_settings(["--resolve-lb-hostnames=false"]).resolve_lb_hostnames is False
    with pytest.raises(ConfigError, match=r"--dns-resolver='dns\.example:53': expected IP or IP:PORT"):
        parse_settings(["--dns-resolver=dns.example:53"])
    with pytest.raises(ConfigError, match="--resolve-lb-hostnames='sometimes'"):
        parse_settings(["--resolve-lb-hostnames=sometimes"])
