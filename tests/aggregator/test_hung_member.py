"""A member API server that does not answer costs few connections, and is resumed at once when it answers.

Against real API servers, the aggregator as a process: a member reached through a TCP relay that can hang (accept
and never answer) and be resumed (what it held is forwarded, as a thawed server answers), counting the connections
it accepts. A fixed retry per informer made ~100 connections a minute to a hung member, forever. The shared gate
on its own: tests/fleetdns/test_backoff.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml

from aggregator.sources import SOURCES
from fleetdns.apipaths import MEMBER_CLUSTERS, SECRETS
from rig import Fleet
from rig.netns import Endpoint, Relay
from rig.ports import free_port
from rig.workloads import set_load_balancer_status
from tests.support.aggregator import (
    VIPS,
    create_service_intent,
    deploy_service,
    samples,
    unique,
    wait_for,
    wait_records,
)
from tests.support.world import FleetWorld, fleet_world

# --- the aggregator against a member that hangs (real API servers) ------------------------------------

MEMBER_KINDS = len(SOURCES.member_kinds())  # one informer each
ATTEMPT = 5.0  # a request to a server that accepts and never answers gives up after its 5 s connect timeout
WINDOW = 30.0


@pytest.fixture(scope="module")
def world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetWorld]:
    with fleet_world(fleet, tmp_path_factory.mktemp("member-backoff"), "agg-backoff") as w:
        yield w


@pytest.fixture
def relay(fleet: Fleet) -> Iterator[Relay]:
    """A TCP relay on loopback in front of east's API server (its certificate names 127.0.0.1, any port)."""
    east = fleet.members["east"]
    relay = Relay(Endpoint(None, "127.0.0.1", free_port()), Endpoint(None, east.host, east.port), "member-backoff")
    relay.start()
    yield relay
    relay.stop()


def register_through(world: FleetWorld, relay: Relay, member: str, region: str) -> None:
    """A MemberCluster whose kubeconfig reaches east's API server through ``relay``."""
    kubeconfig = yaml.safe_load(world.fleet.members["east"].embedded_kubeconfig())
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{relay.listen.port}"
    world.host.create(SECRETS.path("fleetdns-system"), SECRETS.manifest(
        member, stringData={"kubeconfig": yaml.safe_dump(kubeconfig)}))
    world.host.create(MEMBER_CLUSTERS.path(), MEMBER_CLUSTERS.manifest(member, spec={
        "region": region, "zone": f"{region}-a",
        "kubeconfigSecretRef": {"namespace": "fleetdns-system", "name": member, "key": "kubeconfig"}}))


def unregister(world: FleetWorld, member: str) -> None:
    world.host.delete(MEMBER_CLUSTERS.path(name=member))
    world.host.delete(SECRETS.path("fleetdns-system", member))


def retry_interval(world: FleetWorld, member: str) -> float | None:
    """The member's ``member_retry_interval_seconds`` (None when the aggregator does not expose it)."""
    found = samples(world.aggregator, "fleetdns_aggregator_member_retry_interval_seconds")
    return next((value for labels, value in found if labels.get("cluster") == member), None)


def member_connected(world: FleetWorld, member: str) -> bool:
    return any(labels == {"cluster": member, "state": "Connected"} and value == 1.0
               for labels, value in samples(world.aggregator, "fleetdns_aggregator_member_state"))


def connections_within(relay: Relay, since: int, seconds: float, bound: int) -> tuple[int, float]:
    """Connections the relay accepted in a window of ``seconds`` (the measurement itself, polled throughout),
    ending early once past ``bound``; and the seconds observed."""
    started = time.monotonic()
    while time.monotonic() - started < seconds and relay.connections - since <= bound:
        time.sleep(0.1)
    return relay.connections - since, time.monotonic() - started


@pytest.mark.apiserver
def test_a_member_that_accepts_and_never_answers_gets_a_few_connections_not_one_per_kind_every_few_seconds(
        world: FleetWorld, relay: Relay) -> None:
    """Each informer and the probe may try once before the first failure closes the member's gate; after that
    one request at a time, each held ``ATTEMPT`` seconds by the hung server: at most WINDOW / ATTEMPT more."""
    relay.hang()
    member = unique("hung")
    before = relay.connections
    register_through(world, relay, member, unique("hung"))
    try:
        bound = MEMBER_KINDS + 1 + int(WINDOW / ATTEMPT)
        count, seconds = connections_within(relay, before, WINDOW, bound)
        print(f"hung from the start: {count} connections in {seconds:.1f} s (bound {bound} in {WINDOW:g} s)")
        assert count <= bound, f"a hung member got {count} connections in {seconds:.1f} s (bound {bound})"
        assert (retry_interval(world, member) or 0) > 0, "the member's retry interval is exposed while it hangs"
        assert "API server not answering" in world.aggregator.log()
    finally:
        unregister(world, member)


@pytest.mark.apiserver
def test_a_member_that_hung_long_enough_to_back_off_is_resumed_within_its_retry_interval(
        world: FleetWorld, relay: Relay) -> None:
    """Connected through the relay. First a blip: its connections reset and refused until the member's gate
    has closed, then resumed: a change made meanwhile is published within 2 s. Then hung until its retry
    interval has grown past 3 s (the connections it gets meanwhile counted), while its Service's address changes
    again; then it answers. Every informer resumes at the first answer: the change reaches the member's region
    name within the retry interval (+20 % jitter) plus 5 s for the re-list and the reconcile."""
    member, region, name = unique("relayed"), unique("relayed"), unique("web")
    ns = world.ns
    register_through(world, relay, member, region)
    try:
        deploy_service(world.fleet, ns, name, {"east": {"ip": VIPS["east"], "ready": True}})
        create_service_intent(world.host, ns, name)
        regional = f"{name}.{ns}.fleet.svc.{region}.example.com"
        wait_records(world.host, ns, f"service-{name}", lambda r: r.get((regional, "A")) == {VIPS["east"]}, timeout=30)
        wait_for(lambda: member_connected(world, member), what="the relayed member connected")

        relay.pause()
        set_load_balancer_status(world.api("east"), ns, name, ips=["192.0.2.98"])
        wait_for(lambda: (retry_interval(world, member) or 0) > 0 or not member_connected(world, member),
                 what="the blip noticed")
        relay.resume()
        resumed = time.monotonic()
        wait_records(world.host, ns, f"service-{name}", lambda r: r.get((regional, "A")) == {"192.0.2.98"},
                     timeout=2.0)
        blip = time.monotonic() - resumed

        before = relay.connections
        hung = time.monotonic()
        relay.hang()  # its watches are reset; every try from now on is held unanswered
        bound = 1 + int(40.0 / ATTEMPT)  # one try at a time, each held ATTEMPT seconds, over at most 40 s
        wait_for(lambda: (retry_interval(world, member) or 0) >= 3.0 or relay.connections - before > bound,
                 timeout=40, what="the member's retry interval grown to 3 s")
        count = relay.connections - before
        assert count <= bound, f"a hung member got {count} connections in {time.monotonic() - hung:.0f} s " \
                               f"(bound {bound})"
        set_load_balancer_status(world.api("east"), ns, name, ips=["192.0.2.99"])

        interval = retry_interval(world, member) or 0.0
        resumed = time.monotonic()
        relay.resume()
        wait_records(world.host, ns, f"service-{name}", lambda r: r.get((regional, "A")) == {"192.0.2.99"},
                     timeout=1.2 * interval + 5)
        took = time.monotonic() - resumed
        wait_for(lambda: member_connected(world, member), timeout=5, what="every watch of the member up again")
        print(f"blip: change published {blip:.2f} s after the member answered; "
              f"hung {resumed - hung:.1f} s, {count} connections, retry interval {interval:.1f} s, "
              f"change published {took:.2f} s after the member answered")
    finally:
        unregister(world, member)
