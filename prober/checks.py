"""One check: a fresh TCP connection to a cluster's load-balancer address, and for HTTP(S) one request on it.

Never a kept-alive connection: a pooled one keeps answering through a load balancer that no longer
accepts new connections. The request is a hand-written HTTP/1.1 GET (``Connection: close``); only the
status line is read, then the connection is closed. HTTPS sends SNI = the Host header and does not
verify the certificate (as kubelet does); a TLS session is resumed per (address, port, SNI), which saves
the certificate and its signature but still opens a new TCP connection every time. 2xx and 3xx are up;
redirects are not followed.

The checks run on non-blocking sockets driven by one ``epoll`` (``CheckRunner``), not on asyncio's
transports: measured on loopback, a plain HTTP check costs 127 µs of CPU this way and 320 µs through
``loop.create_connection`` with a minimal Protocol, and the difference is what keeps 1,200 checks a
second on well under half a core (docs/benchmarks-prober.md).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import heapq
import ipaddress
import itertools
import os
import select
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

from fleetdns.healthcheck import HealthCheck, Scheme

USER_AGENT = "fleetdns-prober/0.1"
MAX_STATUS_LINE = 4096  # bytes read before a response without a status line is called malformed
_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
FD_SETSIZE = 1024
MAX_EVENTS = 256  # per epoll wait: bounds one turn of the loop, so timers and the heartbeat stay on time
TCPI_RTT = 68  # offset of tcpi_rtt (µs, __u32) in Linux's struct tcp_info (<linux/tcp.h>), stable since 2.6


class Result(StrEnum):
    """What one check found (the ``result`` label of ``fleetdns_prober_checks_total``)."""

    UP = "up"
    HTTP_ERROR = "http_error"  # answered, but not 2xx/3xx
    TIMEOUT = "timeout"
    REFUSED = "refused"
    TLS_ERROR = "tls_error"
    ERROR = "error"  # any other network or protocol failure


@dataclass(frozen=True)
class Outcome:
    """A finished check; ``connected`` and ``elapsed`` are seconds from its start (connected None: never).
    ``rtt``: the round trip of the TCP handshake (SYN → SYN-ACK) as the kernel timed it, the latency sample of
    its address (``kernel_rtt``; None: no TCP connection). ``connected`` includes the TLS handshake."""

    result: Result
    message: str
    elapsed: float
    connected: float | None = None
    tls_resumed: bool = False
    rtt: float | None = None

    @property
    def up(self) -> bool:
        return self.result is Result.UP


class CheckError(ValueError):
    """A check definition that cannot be sent (a header that would break the request, an address not an IP)."""


@dataclass(frozen=True)
class CheckTarget:
    """Everything needed to run one check, built once per (address, check) and reused every period."""

    address: str
    port: int
    request: bytes = b""  # empty: a TCP check
    sni: str | None = None  # set: HTTPS (an IP literal is never sent as SNI: the ssl module leaves it out)

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.address else socket.AF_INET


def check_target(address: str, check: HealthCheck) -> CheckTarget:
    """The wire form of ``check`` (resolved: its Host known) against ``address``."""
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        raise CheckError(f"{address!r} is not an IP address (load-balancer hostnames are not checked)") from None
    if check.http_get is None:
        return CheckTarget(address, check.port)
    http = check.http_get
    host = http.host or (f"[{address}]" if ":" in address else address)
    headers = {"host": ("Host", host), "user-agent": ("User-Agent", USER_AGENT), "accept": ("Accept", "*/*")}
    for name, value in http.headers:  # as kubelet: a header given in the spec replaces the default one
        if not _token(name) or any(c in value for c in "\r\n\0"):
            raise CheckError(f"httpHeaders {name!r}: a header name must be a token and its value one line")
        headers[name.lower()] = (name, value)
    headers["connection"] = ("Connection", "close")  # never kept alive, whatever the spec says
    path = quote(http.path, safe="/?&=%:@!$'()*+,;~-._[]")
    lines = [f"GET {path} HTTP/1.1"] + [f"{name}: {value}" for name, value in headers.values()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    sni = _host_name(headers["host"][1]) if http.scheme is Scheme.HTTPS else None
    return CheckTarget(address, http.port, request, sni)


def _token(name: str) -> bool:
    return name.isascii() and bool(name) and all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in name)


def _host_name(host: str) -> str:
    """The name in a Host header, without a port or an IPv6 literal's brackets."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def tls_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # as kubelet's HTTPS probes: reachability of the app, not its identity
    return context


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return type(error).__name__


def kernel_rtt(sock: socket.socket) -> float | None:
    """The round-trip time (seconds) the kernel measured on ``sock`` (``TCP_INFO`` ``tcpi_rtt``); read before any
    data is sent, it is the TCP handshake's own SYN → SYN-ACK time. A figure timed by the check loop (connect()
    to "writable" noticed) would add however long the loop took to get to the socket: hundreds of milliseconds on
    a busy prober, enough to move every address's median and rewrite its reports many times a second
    (docs/benchmarks-prober.md). None: the kernel has no sample (e.g. the SYN was retransmitted without
    timestamps)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCPI_RTT + 4)
    micros = int.from_bytes(info[TCPI_RTT:TCPI_RTT + 4], sys.byteorder) if len(info) >= TCPI_RTT + 4 else 0
    return micros / 1_000_000 if micros else None


def _connect_failure(code: int, elapsed: float) -> Outcome:
    if code == errno.ECONNREFUSED:
        return Outcome(Result.REFUSED, "connection refused", elapsed)
    return Outcome(Result.ERROR, os.strerror(code).lower(), elapsed)


def _high_socket(family: socket.AddressFamily) -> socket.socket:
    """A non-blocking TCP socket whose descriptor is ≥ FD_SETSIZE when the limit allows: thousands of
    checks in flight must not take the low descriptors that select()-based code in the same process
    (waitress, serving /readyz and /metrics) can use; select() fails on a descriptor ≥ 1024."""
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        high = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, FD_SETSIZE)
    except OSError:
        return sock  # the descriptor limit is FD_SETSIZE or lower: keep the low one
    sock.close()
    sock = socket.socket(family, socket.SOCK_STREAM, 0, fileno=high)
    sock.setblocking(False)  # the new object assumes blocking (the descriptor itself kept O_NONBLOCK)
    return sock


Done = Callable[[Outcome], None]
_CONNECTING, _HANDSHAKE, _SENDING, _READING = range(4)


class _Check:
    """One check in flight: its socket and where it is in connect → (TLS handshake) → send → read."""

    __slots__ = ("target", "done", "sock", "fd", "stage", "started", "connected", "deadline", "pending", "buffer",
                 "finished", "timeout", "rtt")

    def __init__(self, target: CheckTarget, timeout: float, done: Done, started: float) -> None:
        self.target = target
        self.timeout = timeout
        self.done = done
        self.started = started
        self.deadline = started + timeout
        self.connected: float | None = None
        self.rtt: float | None = None
        self.pending = target.request
        self.buffer = b""
        self.stage = _CONNECTING
        self.finished = False
        self.sock: socket.socket | ssl.SSLSocket | None = None
        self.fd = -1


class CheckRunner:
    """Runs checks on non-blocking sockets with one epoll; used only from the thread that calls ``poll``.

    ``start`` begins a check and calls its ``done`` exactly once, from ``poll``, with an Outcome (a check
    that cannot even open a socket is done at once). ``poll`` waits for I/O, at most ``timeout`` seconds.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.epoll = select.epoll()
        self.tls = tls_context()
        self.sessions: dict[tuple[str, int, str], ssl.SSLSession] = {}
        self._checks: dict[int, _Check] = {}
        self._deadlines: list[tuple[float, int, _Check]] = []
        self._seq = itertools.count()
        self._finished: list[tuple[_Check, Outcome]] = []

    @property
    def in_flight(self) -> int:
        return len(self._checks)

    def close(self) -> None:
        for check in list(self._checks.values()):
            self._finish(check, Outcome(Result.ERROR, "prober stopping", self.clock() - check.started))
        self._deliver()
        self.epoll.close()

    def forget_session(self, target: CheckTarget) -> None:
        """Drop the TLS session of a target that is gone."""
        if target.sni is not None:
            self.sessions.pop((target.address, target.port, target.sni), None)

    def start(self, target: CheckTarget, timeout: float, done: Done) -> None:
        check = _Check(target, timeout, done, self.clock())
        try:
            sock = _high_socket(target.family)
        except OSError as error:  # out of descriptors: a failed check, not a crash
            self._finished.append((check, Outcome(Result.ERROR, f"cannot open a socket: {_reason(error)}", 0.0)))
            check.finished = True
            return
        check.sock, check.fd = sock, sock.fileno()
        code = sock.connect_ex((target.address, target.port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            check.finished = True
            self._finished.append((check, _connect_failure(code, self.clock() - check.started)))
            return
        self._checks[check.fd] = check
        self.epoll.register(check.fd, _OUT)
        heapq.heappush(self._deadlines, (check.deadline, next(self._seq), check))

    def next_deadline(self) -> float | None:
        while self._deadlines and self._deadlines[0][2].finished:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    def poll(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for I/O, advance every ready check, time out the overdue ones.
        Returns whether more I/O is likely waiting (a whole batch of events was ready)."""
        if self._finished:
            timeout = 0.0
        ready = self.epoll.poll(max(0.0, timeout), MAX_EVENTS)
        for fd, events in ready:
            check = self._checks.get(fd)
            if check is not None:
                self._advance(check, events)
        now = self.clock()
        while self._deadlines and (self._deadlines[0][0] <= now or self._deadlines[0][2].finished):
            _, _, check = heapq.heappop(self._deadlines)
            if not check.finished:
                phase = "connect" if check.connected is None else "response"
                self._finish(check, Outcome(Result.TIMEOUT, f"{phase} timeout after {check.timeout:g}s",
                                            now - check.started, check.connected, rtt=check.rtt))
        self._deliver()
        return len(ready) >= MAX_EVENTS

    def _deliver(self) -> None:
        finished, self._finished = self._finished, []
        for check, outcome in finished:
            check.done(outcome)

    def _finish(self, check: _Check, outcome: Outcome) -> None:
        check.finished = True
        self._checks.pop(check.fd, None)
        sock = check.sock
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                self.epoll.unregister(check.fd)
            sock.close()
        self._finished.append((check, outcome))

    def _advance(self, check: _Check, events: int) -> None:
        try:
            if check.stage == _CONNECTING:
                self._connected(check)
            if check.stage == _HANDSHAKE:
                self._handshake(check)
            if check.stage == _SENDING:
                self._send(check)
            elif check.stage == _READING:
                self._read(check)
        except ssl.SSLError as error:
            stage = "TLS handshake failed" if check.stage == _HANDSHAKE else "TLS error"
            self._finish(check, Outcome(Result.TLS_ERROR, f"{stage}: {error.reason or error}",
                                        self.clock() - check.started, check.connected, rtt=check.rtt))
        except OSError as error:
            result = Result.REFUSED if isinstance(error, ConnectionRefusedError) else Result.ERROR
            self._finish(check, Outcome(result, _reason(error), self.clock() - check.started, check.connected,
                                        rtt=check.rtt))

    def _connected(self, check: _Check) -> None:
        assert check.sock is not None
        code = check.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            check.finished = True
            self._checks.pop(check.fd, None)
            self.epoll.unregister(check.fd)
            check.sock.close()
            self._finished.append((check, _connect_failure(code, self.clock() - check.started)))
            return
        now = self.clock()
        check.rtt = kernel_rtt(check.sock)
        target = check.target
        if not target.request:
            elapsed = now - check.started
            self._finish(check, Outcome(Result.UP, "connected", elapsed, elapsed, rtt=check.rtt))
            return
        if target.sni is None:
            check.connected = now - check.started
            check.stage = _SENDING
            return
        session = self.sessions.get((target.address, target.port, target.sni))
        check.sock = self.tls.wrap_socket(check.sock, server_hostname=target.sni, do_handshake_on_connect=False,
                                          session=session)
        check.stage = _HANDSHAKE

    def _handshake(self, check: _Check) -> None:
        sock = check.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self.epoll.modify(check.fd, _IN)
            return
        except ssl.SSLWantWriteError:
            self.epoll.modify(check.fd, _OUT)
            return
        check.connected = self.clock() - check.started
        check.stage = _SENDING

    def _send(self, check: _Check) -> None:
        assert check.sock is not None
        try:
            sent = check.sock.send(check.pending)
        except (BlockingIOError, ssl.SSLWantWriteError):
            self.epoll.modify(check.fd, _OUT)
            return
        check.pending = check.pending[sent:]
        if check.pending:
            self.epoll.modify(check.fd, _OUT)
            return
        check.stage = _READING
        self.epoll.modify(check.fd, _IN)

    def _read(self, check: _Check) -> None:
        assert check.sock is not None
        try:
            data = check.sock.recv(4096)
        except (BlockingIOError, ssl.SSLWantReadError):
            return
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            data = b""
        if not data:
            self._finish(check, Outcome(Result.ERROR, "connection closed before a response",
                                        self.clock() - check.started, check.connected, rtt=check.rtt))
            return
        check.buffer += data
        end = check.buffer.find(b"\n")
        if end < 0:
            if len(check.buffer) > MAX_STATUS_LINE:
                self._finish(check, Outcome(Result.ERROR, "malformed response (no status line)",
                                            self.clock() - check.started, check.connected, rtt=check.rtt))
            return
        resumed = self._keep_session(check)
        elapsed = self.clock() - check.started
        parts = check.buffer[:end].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
            self._finish(check, Outcome(Result.ERROR, "malformed response (not HTTP/1.x)", elapsed, check.connected,
                                        resumed, check.rtt))
            return
        code = int(parts[1])
        result = Result.UP if 200 <= code < 400 else Result.HTTP_ERROR
        self._finish(check, Outcome(result, f"HTTP {code}", elapsed, check.connected, resumed, check.rtt))

    def _keep_session(self, check: _Check) -> bool:
        """Whether this handshake resumed; if not, keep its session for the next check of the same target.

        Reading ``session`` copies it (CPython serialises TLS 1.3 sessions), so it is read only when the
        session changed: a resumed one is the one already kept."""
        sock = check.sock
        if not isinstance(sock, ssl.SSLSocket):
            return False
        if sock.session_reused:
            return True
        session = sock.session
        target = check.target
        if session is not None and target.sni is not None:
            self.sessions[(target.address, target.port, target.sni)] = session
        return False
