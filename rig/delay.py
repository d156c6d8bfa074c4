"""A delaying forwarder (``python -m rig.delay``), driven by ``DelayedPath``: the real network path between one
prober region and the member VIPs, slower towards each VIP by as much as the rig sets.

Why packets: the kernel here has no ``netem`` qdisc, and a TCP relay cannot slow a connect (the kernel
completes the handshake before the relay accepts). So each region gets two TUN devices, one in its
namespace and one in the LB namespace, and this process copies every IP packet between them, holding it
first: a packet towards a VIP by its destination address, a reply from a VIP by its source address, for half
the round-trip delay set for that VIP each way. A TCP connect from the region to a VIP then takes that extra
round trip (plus a few hundred microseconds of the forwarder's own), measured by a prober there as a slower
network because it is one. Addresses without a delay pass at once.

A packet never overtakes an earlier one on its path (direction and VIP), even when the delay drops; packets
already held keep their time when it changes. The process runs at a raised priority (nice -10) so that a
busy machine adds as little jitter as it can. The TUN devices belong to the process: they vanish when it
exits, and with their namespaces.

Control: a unix socket; one JSON object per connection, one JSON answer line.
``{"set": {"<address>": <round-trip seconds>, ...}}`` (0 removes a delay) answers the delays now in force;
``{"stats": true}`` answers them and the counters (packets each way, held now, dropped).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import heapq
import ipaddress
import itertools
import json
import logging
import math
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.binaries import REPO_ROOT
from rig.netns import NetworkNamespace, in_namespace
from rig.process import ManagedProcess, RigError

logger = logging.getLogger("rig.delay")

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65535
MAX_HELD = 100_000  # packets held at once; more are dropped, as a full router queue drops them
MAX_REQUEST = 65536
NICE = -10


# ---------------------------------------------------------------- the process ---

def open_tun(namespace: str, device: str) -> int:
    """A non-blocking TUN device ``device`` (IP packets, no extra header) created inside ``namespace``:
    TUNSETIFF creates it in the calling thread's namespace, so on a thread that joined it."""

    def make() -> int:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", device.encode(), IFF_TUN | IFF_NO_PI))
        except OSError:
            os.close(fd)
            raise
        return fd

    return in_namespace(namespace, make)


def vip_key(packet: bytes, towards_vip: bool) -> bytes:
    """The VIP side's address of an IPv4 or IPv6 packet (destination towards the VIPs, source on the way back)."""
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 20:
        return packet[16:20] if towards_vip else packet[12:16]
    if version == 6 and len(packet) >= 40:
        return packet[24:40] if towards_vip else packet[8:24]
    return b""


def parse_rtts(raw: Mapping[str, Any]) -> dict[bytes, float]:
    """``{address: round-trip seconds}`` -> ``{packed address: one-way seconds}``; ValueError names a bad item."""
    one_way = {}
    for address, value in raw.items():
        try:
            packed = ipaddress.ip_address(address).packed
        except ValueError:
            raise ValueError(f"delay for {address!r}: not an IP address") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ValueError(f"delay for {address}: {value!r} is not a round trip in seconds (a number >= 0)")
        one_way[packed] = value / 2
    return one_way


class Forwarder:
    """Copies packets between the region's TUN and the LB's, each held for its path's one-way delay."""

    def __init__(self, region_fd: int, lb_fd: int) -> None:
        self.region_fd = region_fd
        self.lb_fd = lb_fd
        self.one_way: dict[bytes, float] = {}
        self.held: list[tuple[float, int, int, bytes]] = []  # (due, sequence, out fd, packet): a timer heap
        self.last_due: dict[tuple[int, bytes], float] = {}  # per path: no packet leaves before an earlier one
        self.sequence = itertools.count()
        self.forwarded = {"to_vips": 0, "from_vips": 0}
        self.dropped = 0

    def set_rtts(self, raw: Mapping[str, Any]) -> None:
        """Validated whole first: one bad item changes nothing."""
        for packed, seconds in parse_rtts(raw).items():
            if seconds:
                self.one_way[packed] = seconds
            else:
                self.one_way.pop(packed, None)

    def rtts(self) -> dict[str, float]:
        return {str(ipaddress.ip_address(packed)): 2 * seconds for packed, seconds in sorted(self.one_way.items())}

    def receive(self, fd: int) -> None:
        """Every packet waiting on ``fd``: sent on at once when its path has no delay and nothing held, else held."""
        towards_vips = fd == self.region_fd
        out = self.lb_fd if towards_vips else self.region_fd
        while True:
            try:
                packet = os.read(fd, MAX_PACKET)
            except BlockingIOError:
                return
            now = time.monotonic()
            path = (out, vip_key(packet, towards_vips))
            due = max(now + self.one_way.get(path[1], 0.0), self.last_due.get(path, 0.0))
            if due <= now:
                self.send(out, packet)
            elif len(self.held) >= MAX_HELD:
                self.dropped += 1
            else:
                heapq.heappush(self.held, (due, next(self.sequence), out, packet))
                self.last_due[path] = due

    def release(self) -> float | None:
        """Send every packet whose time has come; seconds until the next one (None: nothing held)."""
        while self.held:
            now = time.monotonic()
            due, _, out, packet = self.held[0]
            if due > now:
                return due - now
            heapq.heappop(self.held)
            self.send(out, packet)
        return None

    def send(self, out: int, packet: bytes) -> None:
        try:
            os.write(out, packet)
        except OSError:  # the device went down (its namespace is being deleted): the packet is lost, as on a wire
            self.dropped += 1
            return
        self.forwarded["to_vips" if out == self.lb_fd else "from_vips"] += 1

    def stats(self) -> dict[str, Any]:
        return {"rtts": self.rtts(), "forwarded": dict(self.forwarded), "held": len(self.held),
                "dropped": self.dropped}


def answer(forwarder: Forwarder, request: bytes) -> dict[str, Any]:
    """One control request -> its answer (errors are answers too: the forwarder keeps running)."""
    try:
        body = json.loads(request)
        if not isinstance(body, dict) or not body.keys() <= {"set", "stats"}:
            raise ValueError('expected {"set": {address: seconds}} or {"stats": true}')
        if "set" in body:
            if not isinstance(body["set"], dict):
                raise ValueError('"set" takes an object {address: round-trip seconds}')
            forwarder.set_rtts(body["set"])
            logger.info("delays set", extra={"rtts": forwarder.rtts()})
    except ValueError as error:
        return {"error": str(error)}
    return forwarder.stats() if body.get("stats") else {"rtts": forwarder.rtts()}


def serve(forwarder: Forwarder, control: socket.socket) -> None:
    """The loop: packets from both devices, control requests, held packets released on time."""
    clients: dict[int, tuple[socket.socket, bytes]] = {}  # by file descriptor: a request read so far
    devices = (forwarder.region_fd, forwarder.lb_fd)
    while True:
        wait = forwarder.release()
        readable, _, _ = select.select([*devices, control.fileno(), *clients], [], [], wait)
        for fd in readable:
            if fd in devices:
                forwarder.receive(fd)
            elif fd == control.fileno():
                with contextlib.suppress(BlockingIOError):
                    client, _ = control.accept()
                    client.setblocking(False)
                    clients[client.fileno()] = (client, b"")
            else:
                read_control(forwarder, fd, clients)


def read_control(forwarder: Forwarder, fd: int, clients: dict[int, tuple[socket.socket, bytes]]) -> None:
    """Collect one request (up to newline or EOF) and answer it; never blocks the packets for long."""
    client, request = clients[fd]
    try:
        chunk = client.recv(MAX_REQUEST)
    except BlockingIOError:
        return
    except OSError:
        chunk = b""
    request += chunk
    if chunk and b"\n" not in chunk and len(request) < MAX_REQUEST:
        clients[fd] = (client, request)
        return
    del clients[fd]
    with client:
        client.setblocking(True)
        client.settimeout(1.0)
        with contextlib.suppress(OSError):  # the client gave up: its answer is not needed
            client.sendall(json.dumps(answer(forwarder, request.split(b"\n", 1)[0])).encode() + b"\n")


def run(args: argparse.Namespace) -> None:
    with contextlib.suppress(OSError):  # not permitted: the path is only a little less steady
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    rtts = dict(parse_rtt_flag(item) for item in args.rtt)
    parse_rtts(rtts)  # every flag checked before anything is created
    region_fd = open_device(args.region_netns, args.region_device)
    lb_fd = open_device(args.lb_netns, args.lb_device)
    forwarder = Forwarder(region_fd, lb_fd)
    forwarder.set_rtts(rtts)
    control_path = Path(args.control)
    with contextlib.suppress(FileNotFoundError):
        control_path.unlink()
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.bind(str(control_path))
    control.listen(16)
    control.setblocking(False)
    logger.info("forwarding", extra={"region": f"{args.region_netns}/{args.region_device}",
                                     "lb": f"{args.lb_netns}/{args.lb_device}", "rtts": forwarder.rtts()})
    try:
        serve(forwarder, control)
    finally:
        control.close()
        os.close(region_fd)
        os.close(lb_fd)  # non-persistent devices: closing removes them
        with contextlib.suppress(FileNotFoundError):
            control_path.unlink()


def open_device(namespace: str, device: str) -> int:
    try:
        return open_tun(namespace, device)
    except OSError as error:
        raise SystemExit(f"rig.delay: cannot create TUN device {device} in namespace {namespace}: {error} "
                         f"(run as root, the namespace must exist and hold no device of that name)") from None


def parse_rtt_flag(item: str) -> tuple[str, float]:
    address, sep, seconds = item.rpartition("=")
    try:
        if not sep:
            raise ValueError
        return address, float(seconds)
    except ValueError:
        raise SystemExit(f"--rtt {item!r}: expected ADDRESS=SECONDS (round trip), e.g. 198.18.1.1=0.05") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rig.delay", description=__doc__.splitlines()[0])
    parser.add_argument("--region-netns", required=True, help="namespace of the region's TUN device")
    parser.add_argument("--region-device", required=True, help="name of the region's TUN device")
    parser.add_argument("--lb-netns", required=True, help="namespace of the VIPs (LB) and its TUN device")
    parser.add_argument("--lb-device", required=True, help="name of the LB side's TUN device")
    parser.add_argument("--control", required=True, help="unix socket path of the control channel")
    parser.add_argument("--rtt", action="append", default=[], help="ADDRESS=SECONDS: extra round trip (repeat)")
    parser.add_argument("--log-format", default="json", choices=("json", "text"))
    args = parser.parse_args(argv)
    from fleetdns.logs import configure_logging

    configure_logging("info", args.log_format)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds through run's clean-up
    try:
        run(args)
    except ValueError as error:
        raise SystemExit(f"rig.delay: {error}") from None
    return 0


# -------------------------------------------------------------- rig side ---

@dataclass(frozen=True)
class ForwarderStats:
    rtts: dict[str, float]  # address -> extra round trip in force
    to_vips: int  # packets forwarded towards the VIPs
    from_vips: int
    held: int
    dropped: int


class DelayControl:
    """Client of one forwarder's control socket."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
            sock.sendall(json.dumps(body).encode() + b"\n")
            data = b""
            while b"\n" not in data and (chunk := sock.recv(65536)):
                data += chunk
        finally:
            sock.close()
        reply = json.loads(data)
        if "error" in reply:
            raise RigError(f"delaying forwarder {self.path}: {reply['error']}")
        return dict(reply)

    def set_rtts(self, rtts: Mapping[str, float]) -> dict[str, float]:
        """Extra round trip per VIP address (0: none), in force for every packet read after this returns."""
        return dict(self.request({"set": dict(rtts)})["rtts"])

    def stats(self) -> ForwarderStats:
        raw = self.request({"stats": True})
        return ForwarderStats(dict(raw["rtts"]), raw["forwarded"]["to_vips"], raw["forwarded"]["from_vips"],
                              raw["held"], raw["dropped"])


class DelayedPath:
    """One region's delaying forwarder and its TUN devices (``region_device`` in ``region``, ``lb_device`` in
    ``lb``), up with ``mtu`` once started. Routing through them is the data plane's business."""

    def __init__(self, name: str, region: NetworkNamespace, region_device: str, lb: NetworkNamespace,
                 lb_device: str, workdir: Path, *, mtu: int = 1500, rtts: Mapping[str, float] | None = None) -> None:
        self.name = name
        self.region, self.region_device = region, region_device
        self.lb, self.lb_device = lb, lb_device
        self.mtu = mtu
        # unix socket paths are limited to 107 bytes; pytest's tmp dirs can be longer
        self.control_path = Path(f"/tmp/fdns-delay-{os.getpid()}-{id(self):x}-{name}.sock")
        self.control = DelayControl(self.control_path)
        argv = [sys.executable, "-m", "rig.delay", f"--region-netns={region.name}",
                f"--region-device={region_device}", f"--lb-netns={lb.name}", f"--lb-device={lb_device}",
                f"--control={self.control_path}", *[f"--rtt={a}={s!r}" for a, s in (rtts or {}).items()]]
        self.process = ManagedProcess(f"delay-{name}", argv, workdir / f"delay-{name}.log",
                                      env={"PYTHONPATH": str(REPO_ROOT)})

    def start(self, timeout: float = 30.0, wait: bool = True) -> DelayedPath:
        """With ``wait``, both devices exist and are up once this returns (else: after ``wait_ready``)."""
        self.process.start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.process.wait_until(lambda: self.control.stats() is not None, timeout, "forwarding (control socket)")
        for namespace, device in ((self.region, self.region_device), (self.lb, self.lb_device)):
            namespace.ip("link", "set", device, "mtu", str(self.mtu), "up")

    def set_rtts(self, rtts: Mapping[str, float]) -> dict[str, float]:
        return self.control.set_rtts(rtts)

    def stats(self) -> ForwarderStats:
        return self.control.stats()

    def stop(self) -> None:
        self.process.stop()
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()


if __name__ == "__main__":
    sys.exit(main())
