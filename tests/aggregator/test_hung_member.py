"""A member API server that does not answer costs few connections, and is resumed at once when it answers.

Unit: the shared gate (``fleetdns.backoff``) on real threads with short delays. Against real API servers,
the aggregator as a process: a member reached through a TCP relay that can hang (accept and never answer)
and be resumed (what it held is forwarded, as a thawed server answers), counting the connections it
accepts. A fixed retry per informer made ~100 connections a minute to a hung member, forever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import yaml

from aggregator.sources import SOURCES
from fleetdns.apipaths import MEMBER_CLUSTERS, SECRETS
from fleetdns.backoff import REFUSED_MAX, Backoff, ServerGate
from rig import Fleet
from rig.netns import Endpoint, Relay
from rig.ports import free_port
from rig.workloads import set_load_balancer_status
from tests.support.aggregator import (
    VIPS,
    FleetWorld,
    create_service_intent,
    deploy_service,
    fleet_world,
    samples,
    unique,
    wait_for,
    wait_records,
)

# --- the gate (real threads, short delays) ------------------------------------------------------------


def gate(start: float = 0.02, cap: float = 0.16) -> ServerGate:
    return ServerGate("test", Backoff(start, cap, jitter=0.0))


def entered(server: ServerGate, stop: threading.Event) -> threading.Event:
    """A caller on its own thread; the event is set once ``enter`` lets it through."""
    through = threading.Event()

    def caller() -> None:
        if server.enter(stop):
            through.set()

    threading.Thread(target=caller, daemon=True).start()
    return through


@pytest.mark.unit
def test_a_closed_gate_lets_one_caller_try_and_the_first_answer_lets_every_caller_go() -> None:
    server, stop = gate(start=0.05), threading.Event()
    assert server.enter(stop) and server.retry_interval == 0.0  # open: no waiting
    server.unanswered("connection refused")
    assert server.retry_interval == pytest.approx(0.05)

    started = time.monotonic()
    assert server.enter(stop)  # the try: after the delay
    assert time.monotonic() - started >= 0.045
    others = [entered(server, stop) for _ in range(5)]
    assert not any(o.wait(0.3) for o in others), "only the caller trying the server may send a request"

    server.answered()
    assert all(o.wait(2) for o in others), "an answer lets every waiting caller go at once"
    assert server.is_open and server.retry_interval == 0.0


@pytest.mark.unit
def test_only_failed_tries_double_the_delay_up_to_the_cap_and_an_answer_starts_it_over() -> None:
    server, stop = gate(start=0.02, cap=0.16), threading.Event()
    server.unanswered("no answer")
    seen = [server.retry_interval]
    # a request sent before the gate closed fails too: it is not a try, so the delay stays
    straggler = threading.Thread(target=lambda: server.unanswered("no answer"))
    straggler.start()
    straggler.join()
    assert server.retry_interval == seen[0]
    for _ in range(5):
        assert server.enter(stop)
        server.unanswered("no answer")
        seen.append(server.retry_interval)
    assert seen == pytest.approx([0.02, 0.04, 0.08, 0.16, 0.16, 0.16])

    server.answered()
    server.unanswered("no answer")  # a new outage starts from the shortest delay: a blip costs a blip
    assert server.retry_interval == pytest.approx(0.02)


@pytest.mark.unit
def test_a_server_that_refuses_connections_is_tried_every_2_s_at_most_so_a_restart_is_over_in_seconds() -> None:
    server, stop = ServerGate("restarting"), threading.Event()  # the shipped delays: 0.2 s doubling to 30 s
    server.unanswered("0 Refused: NewConnectionError", refused=True)
    for _ in range(10):  # long enough for the delay of a hung server to reach its 30 s cap
        server._next_try = 0.0  # no waiting in a unit test: only the chosen delays matter
        assert server.enter(stop)
        server.unanswered("0 Refused: NewConnectionError", refused=True)
        assert server.retry_interval <= REFUSED_MAX * 1.2
    server._next_try = 0.0
    assert server.enter(stop)
    server.unanswered("0 Unreachable: ReadTimeoutError")  # accepted and never answered: the long delays resume
    assert server.retry_interval > REFUSED_MAX * 1.2


@pytest.mark.unit
def test_a_try_abandoned_by_a_stopping_caller_passes_to_another_and_waiters_stop_when_woken() -> None:
    server, stop = gate(), threading.Event()
    server.unanswered("no answer")
    assert server.enter(stop)
    other = entered(server, stop)
    assert not other.wait(0.2)
    server.leave()  # the caller trying the server stopped without an answer
    assert other.wait(2)

    stopping = threading.Event()
    waiter = threading.Thread(target=server.enter, args=(stopping,), daemon=True)
    server.unanswered("no answer")  # ``other`` holds the try, so the waiter waits for an answer
    waiter.start()
    stopping.set()
    server.wake()
    waiter.join(2)
    assert not waiter.is_alive()


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

