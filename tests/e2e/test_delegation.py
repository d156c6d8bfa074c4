"""The global zone delegated from its parent, through the whole real chain: a Domain with spec.delegation on the host,
the aggregator following each region's CoreDNS Service in the members, the parent zone (example.com) served by its
own CoreDNS, zone files and etcd, fed by its own ExternalDNS and webhook reading only the delegation
(``--label-filter=fleetdns.io/publish=parent``), and each region's CoreDNS answering on port 53 of its own loopback
address (what the glue names). dnspython walks the way a resolver does; Unbound, a real one, serves the clients."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest

from fleetdns.apipaths import DNS_ENDPOINTS, DOMAINS, EVENTS
from fleetdns.kubeapi import KubeClient
from rig.delegated import CORE_DNS, DOMAIN, SYSTEM, ZONE
from rig.federation import Federation
from rig.ports import DNS_PORT, free_loopback_address
from rig.region import Region
from rig.unbound import Unbound
from rig.waiting import wait_for
from rig.workloads import set_endpoints, set_load_balancer_status

pytestmark = [pytest.mark.apiserver, pytest.mark.externaldns, pytest.mark.coredns, pytest.mark.etcd]

SETTLE = 60.0  # first publication through two ExternalDNS
FOLLOW = 15.0  # a Service's new address reaches the parent's glue within this


@dataclass
class World:
    fed: Federation
    parent: Region
    host: KubeClient
    addresses: dict[str, str]  # member -> the address its CoreDNS answers on (port 53)
    resolver: Unbound  # a real recursive resolver starting at the parent: what clients ask

    def ask(self, server: str, port: int, name: str, rdtype: str = "A") -> dns.message.Message:
        return dns.query.udp(dns.message.make_query(name, rdtype), server, port=port, timeout=2)

    def ask_parent(self, name: str, rdtype: str = "A") -> dns.message.Message:
        coredns = self.parent.coredns
        assert coredns is not None
        return self.ask(coredns.host, coredns.port, name, rdtype)

    def set_nameserver_address(self, member: str, *ips: str) -> None:
        set_load_balancer_status(self.fed.fleet.members[member].api_client(), SYSTEM, CORE_DNS, ips=list(ips))

    def delegated(self) -> dict[str, Any]:
        conditions = (self.host.get(DOMAINS.path(SYSTEM, DOMAIN)).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c.get("type") == "Delegated"), {})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    fed = Federation(tmp_path_factory.mktemp("delegation"), zone=ZONE, delegated=True)
    try:
        fed.start()
        assert fed.delegation is not None and fed.delegation.parent is not None
        yield World(fed, fed.delegation.parent, KubeClient(fed.host), fed.delegation.addresses, fed.resolver)
    finally:
        fed.stop()


def referral(response: dns.message.Message) -> tuple[set[str], dict[str, set[str]]]:
    """(the NS targets in the authority section, the glue in the additional section: name -> addresses)."""
    ns = {rr.to_text() for rrset in response.authority if rrset.rdtype == dns.rdatatype.NS for rr in rrset}
    glue: dict[str, set[str]] = {}
    for rrset in response.additional:
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            glue.setdefault(rrset.name.to_text(), set()).update(rr.to_text() for rr in rrset)
    return ns, glue


def glue_of(world: World, name: str) -> dict[str, set[str]]:
    response = world.ask_parent(name)
    return referral(response)[1] if not response.answer else {}


def answers(response: dns.message.Message, rdtype: str = "A") -> set[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    return {rr.to_text() for rrset in response.answer if rrset.rdtype == wanted for rr in rrset}


def test_a_query_starting_at_the_parent_is_referred_to_the_regions_and_answered(world: World) -> None:
    fed = world.fed
    ns = f"d-{uuid.uuid4().hex[:6]}"
    fed.run_service("east", ns, "web", "192.0.2.80", ["10.0.0.1"])
    fed.create_service_intent(ns, "web", "fleet")
    app = f"web.{ns}.fleet.svc.{ZONE}"
    expected_glue = {f"ns-{member}.{ZONE}.": {address} for member, address in world.addresses.items()}

    # 1. The parent knows nothing of the app: it refers the resolver to the zone's nameservers, with their glue.
    wait_for(lambda: glue_of(world, app) == expected_glue, SETTLE, "the parent's referral with every region's glue")
    response = world.ask_parent(app)
    ns_set, glue = referral(response)
    assert response.answer == [] and not response.flags & dns.flags.AA
    assert ns_set == {f"ns-{member}.{ZONE}." for member in world.addresses}
    assert glue == expected_glue
    # 2. Each glue address answers on port 53, authoritatively: the app, the zone's NS and its nameservers.
    for member, address in world.addresses.items():
        wait_for(lambda address=address: answers(world.ask(address, DNS_PORT, app)) == {"192.0.2.80"}, SETTLE,
                 f"the app answered at {member}'s glue address")
        answer = world.ask(address, DNS_PORT, app)
        assert answer.flags & dns.flags.AA
        wait_for(lambda address=address: answers(world.ask(address, DNS_PORT, ZONE, "NS"), "NS") ==
                 {f"ns-{m}.{ZONE}." for m in world.addresses}, SETTLE, "the zone's own NS at its apex")
        for other, other_address in world.addresses.items():
            assert answers(world.ask(address, DNS_PORT, f"ns-{other}.{ZONE}")) == {other_address}
    condition = world.delegated()
    assert condition["status"] == "True" and condition["reason"] == "Published"
    # The regions never publish the parent's records; the parent never publishes the app.
    assert answers(world.ask(world.addresses["east"], DNS_PORT, ZONE, "SOA"), "SOA")
    assert not world.ask_parent(app).answer


def test_the_glue_follows_a_regions_address_and_a_lost_address_keeps_the_last_glue(world: World) -> None:
    east, west = world.addresses["east"], world.addresses["west"]
    name = f"probe.{ZONE}"
    wait_for(lambda: glue_of(world, name).get(f"ns-east.{ZONE}.") == {east}, SETTLE, "east's glue published")

    # The cloud gives east's CoreDNS a new address: the parent's glue and the zone's own answer follow.
    moved = free_loopback_address()
    started = time.monotonic()
    world.set_nameserver_address("east", moved)
    wait_for(lambda: glue_of(world, name).get(f"ns-east.{ZONE}.") == {moved}, FOLLOW, "the glue following east")
    followed = time.monotonic() - started
    assert glue_of(world, name)[f"ns-west.{ZONE}."] == {west}
    wait_for(lambda: answers(world.ask(west, DNS_PORT, f"ns-east.{ZONE}")) == {moved}, FOLLOW,
             "the zone's own answer for ns-east")
    print(f"glue followed a new address in {followed:.1f}s")

    # East's Service loses its address: the last glue stays and the Domain says why.
    world.set_nameserver_address("east")
    condition = wait_for(lambda: (c := world.delegated()).get("reason") == "AddressesKept" and c, FOLLOW,
                         "Delegated=False naming the nameserver without an address")
    assert condition["status"] == "False"
    assert condition["message"] == (f"ns-east.{ZONE} keeps its last published addresses ({moved}): Service "
                                    f"{SYSTEM}/{CORE_DNS} in member east has no load-balancer address")
    published = world.host.get(DNS_ENDPOINTS.path(SYSTEM, f"fleetdns-delegation-{DOMAIN}"))["spec"]["endpoints"]
    assert {"dnsName": f"ns-east.{ZONE}", "recordType": "A", "targets": [moved], "recordTTL": 60} in published
    assert glue_of(world, name) == {f"ns-east.{ZONE}.": {moved}, f"ns-west.{ZONE}.": {west}}

    def events() -> set[tuple[str, str]]:
        listed = world.host.get(EVENTS.path(SYSTEM), {"fieldSelector": f"involvedObject.name={DOMAIN}"})
        return {(e["type"], e["reason"]) for e in listed.get("items") or []}
    wait_for(lambda: events() >= {("Normal", "Published"), ("Warning", "AddressesKept")}, FOLLOW,
             "the Domain's Events")

    # Its address comes back: published again, and the Domain says so.
    world.set_nameserver_address("east", east)
    wait_for(lambda: world.delegated().get("reason") == "Published", FOLLOW, "Delegated=True again")
    wait_for(lambda: glue_of(world, name).get(f"ns-east.{ZONE}.") == {east}, FOLLOW, "east's glue restored")


def test_a_client_behind_a_real_resolver_follows_the_delegation_and_sees_a_failover_within_the_ttl(
        world: World) -> None:
    """Unbound starts at the parent, follows its referral to a region's CoreDNS, caches the answer for its
    recordTTL (5 s here) and, after the app fails over, hands the client the new address once the cached one
    expires: the client-visible failover is the TTL left on the cache plus the chain's."""
    fed, ns = world.fed, f"r-{uuid.uuid4().hex[:6]}"
    fed.run_service("east", ns, "web", "192.0.2.81", ["10.0.0.1"])
    fed.run_service("west", ns, "web", "192.0.2.82", ["10.0.0.2"])
    fed.create_service_intent(ns, "web", "fleet", ttl=5, spec={
        "loadBalancing": {"policy": "Failover", "failoverOrder": ["east", "west"]}})
    app = f"web.{ns}.fleet.svc.{ZONE}"
    wait_for(lambda: world.resolver.resolve(app)[0] == {"192.0.2.81"}, SETTLE,
             "the client getting east's address through the resolver")
    cached, ttl_left = world.resolver.resolve(app)
    assert cached == {"192.0.2.81"} and 0 < ttl_left <= 5, ttl_left  # served from its cache, the TTL counting down

    started = time.monotonic()
    set_endpoints(fed.fleet.members["east"].api_client(), ns, "web", ["10.0.0.1"], ready=False)
    wait_for(lambda: world.resolver.resolve(app)[0] == {"192.0.2.82"}, 5 + 10,
             "the client getting west's address once its cached answer expired", interval=0.1)
    seen = time.monotonic() - started
    print(f"client behind Unbound saw the failover after {seen:.1f}s (recordTTL 5 s)")
    assert seen <= 5 + 5, seen  # the TTL, plus the chain's seconds (bench/resolver_failover.py measures both)


def ask_as_a_stub_resolver(world: World, name: str) -> set[str]:
    """What a client's stub resolver gets from Unbound, asking as glibc does by default (5 s, two attempts): the
    answer's values, or the name of the last error."""
    error: Exception | None = None
    for _ in range(2):
        try:
            return world.resolver.resolve(name, timeout=5)[0]
        except Exception as failure:  # noqa: BLE001 - a failed query is what is counted
            error = failure
    return {type(error).__name__}


def test_a_whole_region_lost_leaves_clients_behind_a_resolver_answered_by_the_other(world: World) -> None:
    """East's whole DNS stack stops (CoreDNS, zone files, etcd, webhook, ExternalDNS): the resolver finds east's
    nameserver refusing and asks west's, as the delegation lists both; no client query fails. Then east returns."""
    fed, ns = world.fed, f"l-{uuid.uuid4().hex[:6]}"
    fed.run_service("east", ns, "web", "192.0.2.83", ["10.0.0.1"])
    fed.create_service_intent(ns, "web", "fleet", ttl=1)  # the resolver asks a nameserver again every second
    app = f"web.{ns}.fleet.svc.{ZONE}"
    wait_for(lambda: all(answers(world.ask(address, DNS_PORT, app)) == {"192.0.2.83"}
                         for address in world.addresses.values()), SETTLE, "the app answered by both regions")
    east = fed.regions["east"]
    east.stop()
    try:
        slowest, failed, asked = 0.0, [], 0
        deadline = time.monotonic() + 8  # eight expiries of the cached answer: each one asks a nameserver again
        while time.monotonic() < deadline:
            started = time.monotonic()
            got = ask_as_a_stub_resolver(world, app)
            slowest = max(slowest, time.monotonic() - started)
            asked += 1
            if got != {"192.0.2.83"}:
                failed.append(got)
            time.sleep(0.1)
        print(f"east lost: {asked} client queries, {len(failed)} failed, slowest {slowest * 1000:.0f} ms")
        assert not failed and asked > 20, (failed, asked)
    finally:
        east.start()
    wait_for(lambda: answers(world.ask(world.addresses["east"], DNS_PORT, app)) == {"192.0.2.83"}, SETTLE,
             "east answering again")
