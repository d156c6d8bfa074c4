"""The rig's delaying forwarders make latency real: a region's connect to a member's VIP takes longer by the
round trip set for that (region, member) path, because every packet on it is held that long.

Real namespaces, TUN devices, forwarder processes and stand-in ingress controllers (no API servers: every
registered app counts as ready). Timing bounds are generous sanity bounds: the point is that the delay is
on the wire, not that it is precise.
"""

from __future__ import annotations

import socket
import ssl
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig import netns
from rig.dataplane import REGION_TUN, DataPlane
from rig.delay import parse_rtts, vip_key
from rig.process import RigError
from rig.waiting import wait_for

SLACK = 0.03  # what the forwarder and a busy machine may add to a connect, at most (median)
FAST = 0.03  # a path without delay connects faster than this (median)
IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2  # Linux's don't-fragment socket option (named in Python 3.12's socket)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataPlane]:
    with DataPlane(tmp_path_factory.mktemp("delay"), {"east": None, "west": None}, regions=("near", "far")) as dp:
        dp.register_app("east", "web.delay.example", "delay", "web")
        dp.register_app("west", "web.delay.example", "delay", "web")
        yield dp


@pytest.fixture
def dataplane(plane: DataPlane) -> Iterator[DataPlane]:
    """The shared data plane, every path back to no delay after the test (order independence)."""
    yield plane
    for region in plane.region_names:
        plane.heal(region)
        for member in plane.ingresses:
            plane.set_path_delay(region, member, 0)


def connect_time(dataplane: DataPlane, region: str, address: str, port: int = 80) -> float:
    """Seconds one TCP connect from inside ``region`` to ``address`` takes (the socket made beforehand)."""
    sock = netns.client_socket(dataplane.netns(region).name, address)
    sock.settimeout(5)
    try:
        started = time.monotonic()
        sock.connect((address, port))
        return time.monotonic() - started
    finally:
        sock.close()


def median_connect(dataplane: DataPlane, region: str, address: str, count: int = 9) -> float:
    return statistics.median(connect_time(dataplane, region, address) for _ in range(count))


def http_status(dataplane: DataPlane, region: str, address: str, host: str, tls: bool = False) -> int:
    """One GET on a fresh connection from inside ``region`` (HTTPS verified against the rig's CA)."""
    sock = netns.connect(dataplane.netns(region).name, address, 443 if tls else 80, 5)
    if tls:
        sock = ssl.create_default_context(cafile=str(dataplane.ca_path)).wrap_socket(sock, server_hostname=host)
    with sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize("family", [0, 1], ids=["ipv4", "ipv6"])
def test_connect_to_a_vip_takes_the_extra_round_trip_of_its_path(dataplane: DataPlane, family: int) -> None:
    east, west = dataplane.vips("east")[family], dataplane.vips("west")[family]
    dataplane.set_path_delay("near", "east", 0.05)

    assert 0.05 <= median_connect(dataplane, "near", east) <= 0.05 + SLACK
    assert median_connect(dataplane, "far", east) < FAST  # the same VIP from another region: not slower
    assert median_connect(dataplane, "near", west) < FAST  # another VIP from the same region: not slower
    assert dataplane.path_delay("near", "east") == 0.05


def test_two_members_from_one_region_differ_by_their_paths(dataplane: DataPlane) -> None:
    dataplane.set_path_delay("near", "east", 0.08)
    dataplane.set_path_delay("near", "west", 0.02)
    dataplane.set_path_delay("far", "east", 0.03)

    for family in (0, 1):
        east = median_connect(dataplane, "near", dataplane.vips("east")[family])
        west = median_connect(dataplane, "near", dataplane.vips("west")[family])
        assert 0.08 <= east <= 0.08 + SLACK
        assert 0.02 <= west <= 0.02 + SLACK
        assert east - west >= 0.06 - SLACK  # west is the nearer member from here, by the network alone
        assert 0.03 <= median_connect(dataplane, "far", dataplane.vips("east")[family]) <= 0.03 + SLACK


def test_a_delay_changed_at_runtime_reaches_new_connections(dataplane: DataPlane) -> None:
    vip = dataplane.vips("east")[0]
    dataplane.set_path_delay("near", "east", 0.04)
    assert 0.04 <= median_connect(dataplane, "near", vip) <= 0.04 + SLACK

    dataplane.set_path_delay("near", "east", 0.12)
    assert connect_time(dataplane, "near", vip) >= 0.12  # slower at once: the very next connection
    assert 0.12 <= median_connect(dataplane, "near", vip, 5) <= 0.12 + SLACK

    dataplane.set_path_delay("near", "east", 0)
    # faster once the packets already on the slow path are through (they are never overtaken): bounded wait
    wait_for(lambda: connect_time(dataplane, "near", vip) < FAST, 5, "fast connects once the delay is removed")
    assert median_connect(dataplane, "near", vip) < FAST


def test_http_and_https_through_the_stand_in_work_over_a_delayed_path(dataplane: DataPlane) -> None:
    dataplane.set_path_delay("near", "east", 0.04)
    before = dataplane.ingress("east").stats().host("web.delay.example").clients
    link = dataplane.regions["near"]

    for address in dataplane.vips("east"):
        started = time.monotonic()
        assert http_status(dataplane, "near", address, "web.delay.example") == 200
        assert time.monotonic() - started >= 2 * 0.04  # the connect, then the request and its answer
        assert http_status(dataplane, "near", address, "web.delay.example", tls=True) == 200
    after = dataplane.ingress("east").stats().host("web.delay.example").clients
    # the stand-in still sees the region's own addresses: checks stay attributable to their region
    assert after.get(link.address, 0) - before.get(link.address, 0) == 2
    assert after.get(link.address6, 0) - before.get(link.address6, 0) == 2


def test_a_cut_still_times_out_over_the_delayed_path_and_heal_keeps_the_delay(dataplane: DataPlane) -> None:
    dataplane.set_path_delay("near", "east", 0.04)
    dataplane.cut_from_vips("near")
    for address in (*dataplane.vips("east"), *dataplane.vips("west")):
        with pytest.raises(TimeoutError):  # SYNs arrive, the answers vanish: no refusal, no unreachable error
            dataplane.netns("near").connect(address, 80, 1.0)
    assert median_connect(dataplane, "far", dataplane.vips("east")[0]) < FAST  # other regions unaffected
    dataplane.heal("near")
    for address in dataplane.vips("east"):
        assert 0.04 <= median_connect(dataplane, "near", address) <= 0.04 + SLACK

    dataplane.cut_from_vips("near", member="west")
    try:
        for address in dataplane.vips("west"):
            with pytest.raises(TimeoutError):
                dataplane.netns("near").connect(address, 80, 1.0)
        assert 0.04 <= median_connect(dataplane, "near", dataplane.vips("east")[1]) <= 0.04 + SLACK
    finally:
        dataplane.heal("near")
    assert median_connect(dataplane, "near", dataplane.vips("west")[1]) < FAST


def test_packets_keep_their_order_when_a_delay_drops_and_full_size_packets_pass(dataplane: DataPlane) -> None:
    """UDP from the region to a VIP: 20 datagrams on a slow path, then 20 more after the delay is removed; the
    later ones wait behind the earlier ones (no packet overtakes another on its path). Each datagram fills
    the veth's MTU exactly (don't-fragment), so the TUN path carries what the veth carries."""
    vip = dataplane.vips("east")[0]
    mtu = int(dataplane.lb.ip("link", "show", "rg0").split(" mtu ", 1)[1].split()[0])
    assert f" mtu {mtu} " in dataplane.netns("near").ip("link", "show", REGION_TUN)
    receiver = netns.in_namespace(dataplane.lb.name, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    sender = netns.in_namespace(dataplane.netns("near").name,
                                lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    with receiver, sender:
        receiver.bind((vip, 5300))
        receiver.settimeout(5)
        sender.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        payload = mtu - 20 - 8 - 2  # IPv4 and UDP headers, the sequence number
        dataplane.set_path_delay("near", "east", 0.4)
        for sequence in range(20):
            sender.sendto(sequence.to_bytes(2, "big") + bytes(payload), (vip, 5300))
        dataplane.set_path_delay("near", "east", 0)
        for sequence in range(20, 40):
            sender.sendto(sequence.to_bytes(2, "big") + bytes(payload), (vip, 5300))
        received = [receiver.recv(65536) for _ in range(40)]
    assert [int.from_bytes(d[:2], "big") for d in received] == list(range(40))
    assert {len(d) for d in received} == {mtu - 28}


def test_bad_delays_are_refused_with_their_reason_and_change_nothing(dataplane: DataPlane, tmp_path: Path) -> None:
    dataplane.set_path_delay("near", "east", 0.02)
    for region, member, seconds, reason in (("nowhere", "east", 0.1, "no region 'nowhere'"),
                                            ("near", "north", 0.1, "no member 'north'"),
                                            ("near", "east", -0.1, "not a round trip"),
                                            ("near", "east", float("nan"), "not a round trip")):
        with pytest.raises(ValueError, match=reason):
            dataplane.set_path_delay(region, member, seconds)
    assert dataplane.path_delay("near", "east") == 0.02
    control = dataplane.paths["near"].control
    for body, reason in (({"set": {"198.18.1.1": 0.3, "not-an-address": 0.1}}, "not an IP address"),
                         ({"set": {"198.18.1.1": "slow"}}, "not a round trip"), ({"reset": True}, "expected")):
        with pytest.raises(RigError, match=reason):
            control.request(body)
    assert dataplane.paths["near"].stats().rtts == dict.fromkeys(dataplane.vips("east"), 0.02)  # none applied
    assert 0.02 <= median_connect(dataplane, "near", dataplane.vips("east")[0]) <= 0.02 + SLACK  # still forwarding
    with pytest.raises(ValueError, match="path delay near -> nowhere: no member"):  # refused before anything starts
        DataPlane(tmp_path, {"east": None}, regions=("near",), path_delays={("near", "nowhere"): 0.1})


def test_delays_given_at_start_apply_and_stop_removes_forwarders_and_devices(tmp_path: Path) -> None:
    plane = DataPlane(tmp_path, {"solo": None}, regions=("r1",), path_delays={("r1", "solo"): 0.05}).start()
    try:
        path = plane.paths["r1"]
        assert path.process.running
        assert 0.05 <= median_connect(plane, "r1", plane.vips("solo")[1]) <= 0.05 + SLACK
        assert path.stats().to_vips > 0 and path.stats().from_vips > 0
        region, lb = plane.netns("r1"), plane.lb
    finally:
        plane.stop()
    assert not path.process.running
    assert not path.control_path.exists()
    assert region.name not in netns.own_namespaces() and lb.name not in netns.own_namespaces()


def test_a_forwarder_that_exits_takes_its_devices_with_it(tmp_path: Path) -> None:
    """The TUN devices are the process's: nothing stays behind in a namespace when it is gone."""
    with DataPlane(tmp_path, {"solo": None}, regions=("r1",)) as plane:
        path = plane.paths["r1"]
        assert REGION_TUN in plane.netns("r1").ip("link", "show")
        path.process.kill()
        assert REGION_TUN not in plane.netns("r1").ip("link", "show")
        assert path.lb_device not in plane.lb.ip("link", "show")


@pytest.mark.unit
def test_vip_key_is_the_destination_towards_the_vips_and_the_source_back() -> None:
    v4 = bytes([0x45]) + bytes(11) + bytes([10, 254, 0, 2]) + bytes([198, 18, 1, 1])
    assert vip_key(v4, towards_vip=True) == bytes([198, 18, 1, 1])
    assert vip_key(v4, towards_vip=False) == bytes([10, 254, 0, 2])
    source, destination = bytes(range(16)), bytes(range(16, 32))
    v6 = bytes([0x60]) + bytes(7) + source + destination
    assert vip_key(v6, towards_vip=True) == destination
    assert vip_key(v6, towards_vip=False) == source
    assert vip_key(b"", towards_vip=True) == b"" and vip_key(b"\x45" + bytes(5), towards_vip=True) == b""


@pytest.mark.unit
def test_parse_rtts_halves_round_trips_and_names_a_bad_item() -> None:
    v6 = bytes.fromhex("20010db8000f0001" + "0" * 15 + "1")
    assert parse_rtts({"198.18.1.1": 0.1, "2001:db8:f:1::1": 0}) == {bytes([198, 18, 1, 1]): 0.05, v6: 0}
    for raw, reason in (({"x": 1}, "'x': not an IP address"), ({"198.18.1.1": True}, "True is not a round trip"),
                        ({"198.18.1.1": float("inf")}, "inf is not"), ({"198.18.1.1": -1}, "-1 is not")):
        with pytest.raises(ValueError, match=reason):
            parse_rtts(raw)
