"""Network namespaces of one rig run: create, wire with veth pairs, cut and heal, and reach across them.

Each run's namespaces are named ``fdns-<pid>-<name>``, so concurrent runs never touch each other's and a
crashed run's leftovers are recognisable: ``remove_stale`` deletes those whose pid is gone, ``atexit``
removes this run's own. A process joins a namespace per thread (``setns`` affects only the calling
thread), so sockets are created on a short-lived thread that joined it; a socket stays in the
namespace it was created in whichever thread uses it later.

``Relay`` forwards TCP between namespaces (the host API into a region, a prober's health port out of
one); ``pause`` refuses new connections and drops open ones, as a region cut from the host API sees it;
``hang`` accepts new connections and never answers them, as a frozen or wedged server looks.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import ipaddress
import logging
import os
import re
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
logger = logging.getLogger("rig.netns")

PREFIX = "fdns-"
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
IFNAMSIZ = 15  # Linux interface names: at most 15 bytes
_STALE = re.compile(rf"^{PREFIX}(\d+)-")
_libc = ctypes.CDLL(None, use_errno=True)
_CREATED: set[str] = set()


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message carries the command and its stderr."""


def ip(*args: str) -> str:
    """Run ``ip ARGS``; NetnsError with its stderr when it fails."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def run_name(short: str, pid: int | None = None) -> str:
    """The namespace name of ``short`` for this run (or for run ``pid``)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", short):
        raise ValueError(f"namespace name {short!r}: use lowercase letters, digits and '-'")
    return f"{PREFIX}{os.getpid() if pid is None else pid}-{short}"


def in_namespace(name: str | None, work: Callable[[], T]) -> T:
    """``work()`` run on a fresh thread that joined namespace ``name`` (None: this thread, root namespace).

    Sockets it creates belong to that namespace for good; the thread ends with the call, so no thread of
    the process is left in the namespace.
    """
    if name is None:
        return work()
    outcome: list[T] = []
    failure: list[BaseException] = []

    def joined() -> None:
        try:
            fd = os.open(NETNS_DIR / name, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns into network namespace {name}: {os.strerror(errno)}")
            finally:
                os.close(fd)
            outcome.append(work())
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            failure.append(error)

    thread = threading.Thread(target=joined, name=f"netns-{name}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def family_of(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def listening_socket(namespace: str | None, address: str, port: int, backlog: int = 1024) -> socket.socket:
    """A non-blocking TCP listener on ``address:port`` inside ``namespace`` (None: root namespace)."""

    def make() -> socket.socket:
        sock = socket.socket(family_of(address), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if sock.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address, port))
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    return in_namespace(namespace, make)


def client_socket(namespace: str | None, address: str) -> socket.socket:
    """An unconnected TCP socket for reaching ``address`` from inside ``namespace``."""
    return in_namespace(namespace, lambda: socket.socket(family_of(address), socket.SOCK_STREAM))


def connect(namespace: str | None, address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to ``address:port`` opened from inside ``namespace``; the socket's timeout stays set."""
    sock = client_socket(namespace, address)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
    except OSError:
        sock.close()
        raise
    return sock


class NetworkNamespace:
    """One namespace of this run, ``fdns-<pid>-<short>``: loopback up and IPv6 enabled once created."""

    def __init__(self, short: str) -> None:
        self.short = short
        self.name = run_name(short)

    @property
    def exists(self) -> bool:
        return (NETNS_DIR / self.name).exists()

    def create(self) -> NetworkNamespace:
        ip("netns", "add", self.name)
        _CREATED.add(self.name)
        self.ip("link", "set", "lo", "up")
        self.sysctl("net.ipv6.conf.all.disable_ipv6", "0")
        self.sysctl("net.ipv6.conf.default.disable_ipv6", "0")
        return self

    def delete(self) -> None:
        """Remove the namespace (its veth ends go with it); nothing if it is already gone."""
        _CREATED.discard(self.name)
        if self.exists:
            ip("netns", "delete", self.name)

    def ip(self, *args: str) -> str:
        return ip("-n", self.name, *args)

    def sysctl(self, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        in_namespace(self.name, lambda: Path(path).write_text(value))

    def exec_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def add_address(self, cidr: str, device: str = "lo") -> None:
        """IPv4 or IPv6 (``nodad``: usable at once, no duplicate-address detection wait)."""
        v6 = ipaddress.ip_interface(cidr).version == 6
        self.ip(*(["-6"] if v6 else []), "addr", "add", cidr, "dev", device, *(["nodad"] if v6 else []))

    def set_route(self, destination: str, via: str) -> None:
        self.ip(*_family_flag(destination), "route", "replace", destination, "via", via)

    def set_device_route(self, destination: str, device: str, source: str | None = None) -> None:
        """``destination`` straight out of ``device`` (a TUN: no next hop), from ``source`` when given."""
        self.ip(*_family_flag(destination), "route", "replace", destination, "dev", device,
                *(["src", source] if source else []))

    def add_blackhole(self, destination: str) -> None:
        """Packets to ``destination`` vanish here (replies routed through this namespace included)."""
        self.ip(*_family_flag(destination), "route", "replace", "blackhole", destination)

    def remove_blackhole(self, destination: str) -> None:
        with contextlib.suppress(NetnsError):  # not cut: nothing to heal
            self.ip(*_family_flag(destination), "route", "delete", "blackhole", destination)

    def add_blackhole_rule(self, source: str, destination: str) -> None:
        """Packets from ``source`` to ``destination`` vanish here (a policy-routing rule: the plain blackhole route
        cannot tell one VIP's replies from another's)."""
        self.ip(*_family_flag(destination), "rule", "add", "from", source, "to", destination, "blackhole")

    def remove_blackhole_rule(self, source: str, destination: str) -> None:
        with contextlib.suppress(NetnsError):  # not cut: nothing to heal
            self.ip(*_family_flag(destination), "rule", "delete", "from", source, "to", destination, "blackhole")

    def connect(self, address: str, port: int, timeout: float) -> socket.socket:
        return connect(self.name, address, port, timeout)

    def __repr__(self) -> str:
        return f"NetworkNamespace({self.name})"


def _family_flag(destination: str) -> list[str]:
    return ["-6"] if ipaddress.ip_network(destination, strict=False).version == 6 else ["-4"]


def veth(a: NetworkNamespace, a_name: str, b: NetworkNamespace, b_name: str) -> None:
    """A veth pair with one end in each namespace, both up (created inside ``a``: no name in the root namespace)."""
    for name in (a_name, b_name):
        if len(name.encode()) > IFNAMSIZ:
            raise ValueError(f"interface name {name!r} is longer than {IFNAMSIZ} bytes")
    a.ip("link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", b.name)
    a.ip("link", "set", a_name, "up")
    b.ip("link", "set", b_name, "up")


def own_namespaces(pid: int | None = None) -> list[str]:
    """Namespaces of run ``pid`` (default: this run) that exist now."""
    prefix = run_name("x", pid)[:-1]
    return sorted(p.name for p in NETNS_DIR.glob(f"{prefix}*")) if NETNS_DIR.exists() else []


def remove_stale() -> list[str]:
    """Delete ``fdns-<pid>-*`` namespaces whose run (pid) is no longer alive; returns their names."""
    removed = []
    for path in NETNS_DIR.glob(f"{PREFIX}*") if NETNS_DIR.exists() else []:
        match = _STALE.match(path.name)
        if not match or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(NetnsError):  # another run's cleanup got there first
            ip("netns", "delete", path.name)
            removed.append(path.name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@atexit.register
def _delete_created() -> None:
    for name in list(_CREATED):
        with contextlib.suppress(NetnsError):
            ip("netns", "delete", name)
        _CREATED.discard(name)


@dataclass(frozen=True)
class Endpoint:
    """A TCP address as seen from one namespace (None: the root namespace)."""

    namespace: str | None
    host: str
    port: int

    def __str__(self) -> str:
        where = self.namespace or "root"
        return f"{where}:{self.host}:{self.port}"


class Relay:
    """Forwards each connection accepted at ``listen`` to ``target``, on its own event-loop thread.

    ``pause`` closes the listener (new connections are refused) and resets every open one, including one
    accepted a moment before; ``hang`` resets the open ones too, then accepts new connections but reads
    nothing from them and forwards nothing (a server frozen with its kernel still completing handshakes);
    ``resume`` listens again on the same address, or forwards what ``hang`` held, as a thawed server answers.
    ``connections`` counts every connection accepted, forwarded or held.
    """

    def __init__(self, listen: Endpoint, target: Endpoint, name: str = "relay") -> None:
        self.listen = listen
        self.target = target
        self.name = name
        self.paused = False
        self.hanging = False
        self.connections = 0  # accepted since start (forwarded or held)
        self._held: list[socket.socket] = []  # accepted while hanging, forwarded on resume
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"relay-{name}", daemon=True)
        self._listener: socket.socket | None = None
        self._generation = 0  # bumped by each pause: connections of an older one are reset
        self._open: set[asyncio.BaseTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # the forwards in flight (strong references)

    def start(self) -> Relay:
        self._thread.start()
        self._call(self._listen())
        return self

    def pause(self) -> None:
        self._call(self._pause())
        self.paused = True

    def hang(self) -> None:
        """Open connections are reset; new ones are accepted and held unanswered until ``resume``."""
        self._call(self._hang())

    def resume(self) -> None:
        if self.paused:
            self._call(self._listen())
            self.paused = False
        if self.hanging:
            self._call(self._release_held())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._pause())
        self._call(self._cancel_forwards())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> None:
        self._listener = listening_socket(self.listen.namespace, self.listen.host, self.listen.port)
        self._loop.add_reader(self._listener.fileno(), self._accept, self._listener)

    async def _cancel_forwards(self) -> None:
        """End every forwarding task (their connections are reset already) so none is left pending at close."""
        tasks = [t for t in asyncio.all_tasks(self._loop) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _hang(self) -> None:
        """Reset what is open (as a pause does), keep listening, and hold whatever arrives from now on."""
        if self.paused:
            await self._listen()
            self.paused = False
        await self._pause(keep_listening=True)
        self.hanging = True

    async def _release_held(self) -> None:
        self.hanging = False
        held, self._held = self._held, []
        for conn in held:
            self._start_forward(conn, self._generation)

    async def _pause(self, keep_listening: bool = False) -> None:
        self._generation += 1
        self.hanging = False
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        self._held.clear()
        if self._listener is not None and not keep_listening:
            self._loop.remove_reader(self._listener.fileno())
            self._listener.close()  # connections still in its accept queue are reset by the kernel
            self._listener = None
        for transport in list(self._open):
            _reset(transport)
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        """Called when the listener is readable (a plain callback: an accepted socket is never dropped
        between the accept and its handler, as a cancelled ``sock_accept`` could)."""
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            self.connections += 1
            if self.hanging:
                self._held.append(conn)
            else:
                self._start_forward(conn, self._generation)

    def _start_forward(self, conn: socket.socket, generation: int) -> None:
        # asyncio keeps only weak references to tasks, and a stream's protocol only a weak one to its reader:
        # without this set, the garbage collector ends live forwards (every connection of a prober at once)
        task = self._loop.create_task(self._forward(conn, generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, conn: socket.socket, generation: int) -> None:
        mine: list[asyncio.BaseTransport] = []

        def current() -> bool:
            if generation == self._generation:
                return True
            for transport in mine:
                _reset(transport)
            return False

        if generation != self._generation:  # paused between the accept and now
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        reader, writer = await asyncio.open_connection(sock=conn)
        mine.append(writer.transport)
        if not current():
            return
        self._open.add(writer.transport)
        try:
            sock = client_socket(self.target.namespace, self.target.host)
            sock.setblocking(False)
            try:
                await asyncio.wait_for(self._loop.sock_connect(sock, (self.target.host, self.target.port)), 10)
            except (OSError, TimeoutError):
                sock.close()
                _reset(writer.transport)
                return
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
            mine.append(up_writer.transport)
            if not current():
                return
            self._open.add(up_writer.transport)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for transport in mine:
                self._open.discard(transport)
                transport.close()


def _reset(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped path looks to the peer."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side (TLS close_notify and HTTP/2 GOAWAY pass through)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()
