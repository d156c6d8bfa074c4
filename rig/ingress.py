"""A stand-in ingress controller for one member cluster: ``python -m rig.ingress``, driven by ``StandInIngress``.

What a shared ingress controller does to a health check, for real: it listens on the cluster's VIPs
(:80, and :443 with a per-host certificate chosen by SNI; 421 when the Host is not the SNI, as Envoy-based
controllers answer), routes by Host header to the apps the rig
registered (host -> namespace/service), answers 503 while that Service has no ready endpoint (it watches
the member's EndpointSlices, as ingress-nginx does), 404 for a Host it does not know, 200 otherwise. The
rig can make one app answer another status (500: "pods ready, app broken"), or answer late, while its
endpoints stay ready, require a header of every request (401 without it, as an app behind authentication), and open
extra TCP ports for tcpSocket checks.

The listening sockets are created inside the load-balancer network namespace (``--netns``) while the
process stays in the root namespace, where the member's API server is (127.0.0.1). Without ``--netns`` it
listens in the root namespace (fast tests, the prober benchmark); without ``--kubeconfig`` every
registered app counts as having ready endpoints.

Control API: HTTP on a unix socket (reachable from any namespace), JSON bodies:
``PUT /apps/<host>`` {namespace, service, header?: {name, value}}; ``PUT /apps`` [{host, namespace, service}, ...];
``PUT /apps/<host>/answer`` {status: int|null, delaySeconds}; ``DELETE /apps/<host>``;
``GET /apps/<host>`` (its current answer); ``PUT|DELETE /ports/<port>``; ``GET /stats``; ``DELETE /stats``;
``GET /healthz`` (200 once listening and the EndpointSlices are listed). Counters per Host (connections
that carried a request for it, requests, statuses, connections per client address) prove fresh connections
and shared checks; per port, accepted connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import logging
import re
import signal
import socket
import ssl
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from rig.binaries import REPO_ROOT
from rig.certs import CertificateAuthority
from rig.netns import listening_socket
from rig.process import ManagedProcess, RigError

logger = logging.getLogger("rig.ingress")

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
IDLE_SECONDS = 30.0  # an idle client connection is closed after this (real controllers: 60-75 s)
MAX_HEAD = 65536
REASONS = {code: http.client.responses.get(code, "Status") for code in range(100, 600)}


# ---------------------------------------------------------------- the process ---

@dataclass
class App:
    """One Host routed to one Service; ``status``/``delay`` override what the app answers."""

    host: str
    namespace: str
    service: str
    status: int | None = None
    delay: float = 0.0
    header: tuple[str, str] | None = None  # (name, value) a request must carry, as an app behind auth: else 401


@dataclass
class HostCounters:
    connections: int = 0  # connections that carried at least one request for this Host
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    clients: Counter[str] = field(default_factory=Counter)  # connections per client address

    def as_json(self) -> dict[str, Any]:
        return {"connections": self.connections, "requests": self.requests,
                "statuses": {str(k): v for k, v in self.statuses.items()}, "clients": dict(self.clients)}


class Readiness:
    """Ready endpoints per Service from its EndpointSlices (``conditions.ready`` true or absent = ready).

    Parsed here on its own rather than with the aggregator's parser: the stand-in plays an independent
    controller, so a bug in the code under test cannot make the two agree by construction.
    """

    def __init__(self) -> None:
        self._slices: dict[tuple[str, str], dict[str, int]] = {}
        self.totals: dict[tuple[str, str], int] = {}

    def apply(self, old: SliceReadiness | None, new: SliceReadiness | None) -> None:
        for item, present in ((old, False), (new, True)):
            if item is None or not item.service:
                continue
            slices = self._slices.setdefault((item.namespace, item.service), {})
            if present:
                slices[item.name] = item.ready
            else:
                slices.pop(item.name, None)
            self.totals[(item.namespace, item.service)] = sum(slices.values())

    def ready(self, namespace: str, service: str) -> bool:
        return self.totals.get((namespace, service), 0) > 0


class SliceReadiness(NamedTuple):
    namespace: str
    name: str
    service: str
    ready: int


def parse_slice(raw: dict[str, Any]) -> SliceReadiness:
    meta = raw.get("metadata") or {}
    ready = sum(1 for e in raw.get("endpoints") or [] if (e.get("conditions") or {}).get("ready") is not False)
    return SliceReadiness(meta.get("namespace", ""), meta.get("name", ""),
                          (meta.get("labels") or {}).get(LABEL_SERVICE_NAME, ""), ready)


class Ingress:
    """Routing table, counters and listeners of one stand-in controller."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.member: str = args.member
        self.netns: str | None = args.netns or None
        self.addresses: list[str] = args.address
        self.apps: dict[str, App] = {}
        self.hosts: dict[str, HostCounters] = {}
        self.accepted: Counter[int] = Counter()
        self.readiness = Readiness()
        self.static_ready = not args.kubeconfig
        self.synced = self.static_ready
        self.extra_ports: dict[int, list[asyncio.AbstractServer]] = {}
        self.servers: list[asyncio.AbstractServer] = []
        self.cert_dir = Path(args.cert_dir)
        self.ca = CertificateAuthority.load(Path(args.ca_cert), Path(args.ca_key)) if args.ca_cert else None
        self._contexts: dict[str, ssl.SSLContext] = {}

    # routing --------------------------------------------------------------
    def answer(self, host: str) -> tuple[int, App | None]:
        app = self.apps.get(host)
        if app is None:
            return 404, None
        if not self.static_ready and not self.readiness.ready(app.namespace, app.service):
            return 503, app
        return (app.status or 200), app

    def counters(self, host: str) -> HostCounters:
        counters = self.hosts.get(host)
        if counters is None:
            counters = self.hosts[host] = HostCounters()
        return counters

    # TLS ------------------------------------------------------------------
    def server_context(self) -> ssl.SSLContext:
        context = self._context_for("ingress.default.invalid")
        context.sni_callback = self._choose_certificate
        return context

    def _choose_certificate(self, sslobj: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        """The registered Host's own certificate; a default one for an unknown name (as controllers do). The name
        is kept on the connection: a request whose Host differs from it is answered 421, as Envoy-based
        controllers do, so a client that sends no SNI (or another one) cannot pass a check."""
        sslobj.fleetdns_server_name = (server_name or "").lower()  # type: ignore[attr-defined]
        if server_name and server_name.lower() in self.apps:
            sslobj.context = self._context_for(server_name.lower())
        return None

    def _context_for(self, name: str) -> ssl.SSLContext:
        context = self._contexts.get(name)
        if context is None:
            assert self.ca is not None
            self.cert_dir.mkdir(parents=True, exist_ok=True)
            crt, key = self.ca.issue(name, self.cert_dir, re.sub(r"[^a-z0-9.-]", "_", name), dns_names=(name,),
                                     server=True)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(crt, key)
            self._contexts[name] = context
        return context

    # listeners ------------------------------------------------------------
    async def listen(self, port: int, factory: Any, tls: bool = False) -> list[asyncio.AbstractServer]:
        loop = asyncio.get_running_loop()
        servers: list[asyncio.AbstractServer] = []
        context = self.server_context() if tls else None
        for address in self.addresses:
            sock = listening_socket(self.netns, address, port)
            tls_options: dict[str, Any] = {"ssl": context, "ssl_handshake_timeout": 10} if context else {}
            servers.append(await loop.create_server(factory, sock=sock, backlog=4096, **tls_options))
        return servers

    async def open_port(self, port: int) -> None:
        if port not in self.extra_ports:
            self.extra_ports[port] = await self.listen(port, lambda: TCPPort(self, port))

    async def close_port(self, port: int) -> None:
        for server in self.extra_ports.pop(port, []):
            server.close()


class HTTPConnection(asyncio.Protocol):
    """HTTP/1.x on one client connection: keep-alive unless the client asks to close; requests in order."""

    def __init__(self, ingress: Ingress, port: int) -> None:
        self.ingress = ingress
        self.port = port
        self.buffer = bytearray()
        self.busy = False
        self.closing = False
        self.counted: set[str] = set()
        self.peer = ""
        self.server_name: str | None = None  # TLS connections: the SNI the client sent ("" for none)
        self.transport: asyncio.Transport | None = None
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        sslobj = transport.get_extra_info("ssl_object")
        self.server_name = getattr(sslobj, "fleetdns_server_name", "") if sslobj is not None else None
        self.ingress.accepted[self.port] += 1
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.idle is not None:
            self.idle.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._serve()

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._close)

    def _close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _serve(self) -> None:
        while not self.busy and not self.closing:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._reply(431, "", False, False)
                return
            request = parse_request(bytes(self.buffer[:end]))
            if request is None:
                self._reply(400, "", False, False)
                return
            length = request.content_length
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[:end + 4 + length]
            self._arm_idle()
            self._handle(request)

    def _handle(self, request: Request) -> None:
        host = request.host
        status, app = self.ingress.answer(host)
        if self.server_name is not None and self.server_name != host:
            status, app = 421, None  # Misdirected Request: the TLS server name is not this Host
        counters = self.ingress.counters(host)
        counters.requests += 1
        counters.statuses[status] += 1
        if host not in self.counted:
            self.counted.add(host)
            counters.connections += 1
            counters.clients[self.peer] += 1
        head_only = request.method == "HEAD"
        if app is not None and app.header is not None and status == 200 and \
                request.headers.get(app.header[0].lower()) != app.header[1]:
            status = 401  # counted as what the app would answer, had the request reached it
        if app is not None and app.delay > 0:
            self.busy = True
            asyncio.get_running_loop().call_later(app.delay, self._reply, status, host, request.keep_alive,
                                                  head_only)
        else:
            self._reply(status, host, request.keep_alive, head_only)

    def _reply(self, status: int, host: str, keep_alive: bool, head_only: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        body = f"{status} {host} via {self.ingress.member}\n".encode()
        head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
                f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                f"X-Ingress-Member: {self.ingress.member}\r\n"
                f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n").encode()
        self.transport.write(head if head_only else head + body)
        self.busy = False
        if not keep_alive:
            self._close()
        elif self.buffer:
            self._serve()


class TCPPort(asyncio.Protocol):
    """An extra port for tcpSocket checks: accepts, counts, and holds the connection until the client ends it."""

    def __init__(self, ingress: Ingress, port: int) -> None:
        self.ingress = ingress
        self.port = port
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.ingress.accepted[self.port] += 1
        self.timer = asyncio.get_running_loop().call_later(IDLE_SECONDS, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


@dataclass(frozen=True)
class Request:
    method: str
    host: str
    keep_alive: bool
    content_length: int
    headers: Mapping[str, str]  # by lower-case name


def parse_request(head: bytes) -> Request | None:
    """The request line and the headers routing needs; None when malformed."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            return None
        headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        return None
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if parts[2] == "HTTP/1.1" else "keep-alive" in connection
    return Request(parts[0], host_of(headers.get("host", "")), keep_alive, max(0, length), headers)


def host_of(value: str) -> str:
    """Host header without its port, lower-case (``[v6]:port`` included)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


# ------------------------------------------------------------ control API ---

class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def control(ingress: Ingress, method: str, path: str, body: Any) -> tuple[int, Any]:
    """One control request -> (status, JSON answer)."""
    parts = [p for p in path.split("/") if p]
    if method == "GET" and parts == ["healthz"]:
        return (200, {"ok": True}) if ingress.synced else (503, {"ok": False, "reason": "EndpointSlices not listed"})
    if parts == ["stats"]:
        if method == "DELETE":
            ingress.hosts.clear()
            ingress.accepted.clear()
            return 200, {}
        return 200, {"hosts": {h: c.as_json() for h, c in ingress.hosts.items()},
                     "ports": {str(p): n for p, n in ingress.accepted.items()}}
    if parts == ["apps"] and method == "PUT":
        if not isinstance(body, list):
            raise ControlError(400, "PUT /apps takes a JSON list of {host, namespace, service}")
        for item in body:
            register(ingress, _field(item, "host"), item)
        return 200, {"registered": len(body)}
    if len(parts) == 2 and parts[0] == "apps":
        host = parts[1].lower()
        if method == "GET":
            app = ingress.apps.get(host)
            if app is None:
                raise ControlError(404, f"no app registered for host {parts[1]}")
            return 200, {"namespace": app.namespace, "service": app.service, "answer": ingress.answer(host)[0],
                         "status": app.status, "delaySeconds": app.delay}
        if method == "PUT":
            register(ingress, host, body)
            return 200, {}
        if method == "DELETE":
            ingress.apps.pop(host, None)
            return 200, {}
    if len(parts) == 3 and parts[0] == "apps" and parts[2] == "answer" and method == "PUT":
        app = ingress.apps.get(parts[1].lower())
        if app is None:
            raise ControlError(404, f"no app registered for host {parts[1]}")
        status, delay = (body or {}).get("status"), (body or {}).get("delaySeconds", 0)
        if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
            raise ControlError(400, f"status must be an HTTP status 100-599 or null, got {status!r}")
        if not isinstance(delay, int | float) or delay < 0:
            raise ControlError(400, f"delaySeconds must be a number >= 0, got {delay!r}")
        app.status, app.delay = status, float(delay)
        logger.info("app answer set", extra={"host": app.host, "status": status, "delay_seconds": delay})
        return 200, {}
    if len(parts) == 2 and parts[0] == "ports" and parts[1].isdigit():
        port = int(parts[1])
        if method == "PUT":
            await ingress.open_port(port)
            return 200, {}
        if method == "DELETE":
            await ingress.close_port(port)
            return 200, {}
    raise ControlError(404, f"no such control request: {method} {path}")


def _field(item: Any, name: str) -> str:
    value = item.get(name) if isinstance(item, dict) else None
    if not isinstance(value, str) or not value:
        raise ControlError(400, f"app needs a non-empty string {name!r}, got {item!r}")
    return value


def register(ingress: Ingress, host: str, body: Any) -> None:
    host = host.lower()
    app = App(host, _field(body, "namespace"), _field(body, "service"))
    if isinstance(body, dict) and body.get("header") is not None:
        app.header = (_field(body["header"], "name"), _field(body["header"], "value"))
    previous = ingress.apps.get(host)
    if previous is not None:  # re-registering keeps an answer override
        app.status, app.delay = previous.status, previous.delay
    ingress.apps[host] = app


async def serve_control(ingress: Ingress, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        raw = await reader.readexactly(length) if length else b""
        try:
            status, answer = await control(ingress, method, path, json.loads(raw) if raw else None)
        except ControlError as error:
            status, answer = error.status, {"error": str(error)}
        except (ValueError, OSError) as error:
            status, answer = 400, {"error": f"{type(error).__name__}: {error}"}
        data = json.dumps(answer).encode()
        writer.write(f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


def watch_endpoint_slices(ingress: Ingress, kubeconfig: str, loop: asyncio.AbstractEventLoop) -> Any:
    """An informer on the member's EndpointSlices; changes are applied on the event loop's thread."""
    from fleetdns.apipaths import ENDPOINT_SLICES
    from fleetdns.informer import Informer
    from fleetdns.kubeapi import KubeClient, host_api_client

    def changed(old: Any, new: Any) -> None:
        loop.call_soon_threadsafe(ingress.readiness.apply, old, new)

    informer = Informer("endpointslices", KubeClient(host_api_client(kubeconfig)), ENDPOINT_SLICES.path(),
                        parse_slice, changed, label_selector=LABEL_SERVICE_NAME).start()

    async def mark_synced() -> None:
        while not informer.synced.is_set():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0)  # the list's changes were queued before synced was set: let them apply first
        ingress.synced = True
        logger.info("EndpointSlices listed", extra={"slices": len(informer.store)})

    loop.create_task(mark_synced())
    return informer


async def run(args: argparse.Namespace) -> None:
    ingress = Ingress(args)
    loop = asyncio.get_running_loop()
    ingress.servers += await ingress.listen(args.http_port, lambda: HTTPConnection(ingress, args.http_port))
    if args.https_port:
        if ingress.ca is None:
            raise SystemExit("--https-port needs --ca-cert and --ca-key (per-host certificates are issued with them)")
        ingress.servers += await ingress.listen(args.https_port, lambda: HTTPConnection(ingress, args.https_port),
                                                tls=True)
    control_path = Path(args.control)
    with contextlib.suppress(FileNotFoundError):
        control_path.unlink()
    control_server = await asyncio.start_unix_server(lambda r, w: serve_control(ingress, r, w), path=str(control_path))
    informer = watch_endpoint_slices(ingress, args.kubeconfig, loop) if args.kubeconfig else None
    logger.info("listening", extra={"member": ingress.member, "netns": ingress.netns or "root",
                                    "addresses": ingress.addresses, "http_port": args.http_port,
                                    "https_port": args.https_port})
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if informer is not None:
        informer.stop()
    control_server.close()
    for server in ingress.servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rig.ingress", description=__doc__.splitlines()[0])
    parser.add_argument("--member", required=True, help="member cluster name (logs, X-Ingress-Member)")
    parser.add_argument("--address", action="append", required=True, help="VIP to listen on (repeat)")
    parser.add_argument("--netns", default="", help="network namespace the listeners are created in")
    parser.add_argument("--kubeconfig", default="", help="member API server; none: every registered app is ready")
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--https-port", type=int, default=443, help="0: no HTTPS listener")
    parser.add_argument("--control", required=True, help="unix socket path of the control API")
    parser.add_argument("--ca-cert", default="", help="CA that issues the per-host certificates")
    parser.add_argument("--ca-key", default="")
    parser.add_argument("--cert-dir", default=".", help="where issued certificates are written")
    parser.add_argument("--log-format", default="json", choices=("json", "text"))
    args = parser.parse_args(argv)
    from fleetdns.logs import configure_logging

    configure_logging("info", args.log_format)
    asyncio.run(run(args))
    return 0


# -------------------------------------------------------------- rig side ---

@dataclass(frozen=True)
class HostStats:
    """Counters of one Host at the stand-in (zeros when it saw none)."""

    connections: int = 0
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    clients: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class IngressStats:
    hosts: dict[str, HostStats]
    accepted: dict[int, int]  # per listening port

    def host(self, name: str) -> HostStats:
        return self.hosts.get(name.lower(), HostStats())


class IngressControl:
    """Client of one stand-in's control API (HTTP over its unix socket)."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
            data = b"" if body is None else json.dumps(body).encode()
            sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: control\r\nContent-Length: {len(data)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        finally:
            sock.close()
        head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), json.loads(payload) if payload else None

    def _ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.request(method, path, body)
        if status != 200:
            raise RigError(f"stand-in ingress {method} {path}: {status} {answer}")
        return answer

    def healthy(self) -> bool:
        return self.request("GET", "/healthz")[0] == 200

    def register(self, host: str, namespace: str, service: str, header: tuple[str, str] | None = None) -> None:
        """Route ``host`` to the Service; ``header``: (name, value) every request must carry, else 401."""
        body: dict[str, Any] = {"namespace": namespace, "service": service}
        if header is not None:
            body["header"] = {"name": header[0], "value": header[1]}
        self._ok("PUT", f"/apps/{host}", body)

    def register_many(self, apps: list[tuple[str, str, str]]) -> None:
        """(host, namespace, service) each, in one request (benchmarks register thousands)."""
        self._ok("PUT", "/apps", [{"host": h, "namespace": n, "service": s} for h, n, s in apps])

    def answer(self, host: str) -> int:
        """The status the stand-in answers ``host`` with now (its readiness view and any override)."""
        return int(self._ok("GET", f"/apps/{host}")["answer"])

    def unregister(self, host: str) -> None:
        self._ok("DELETE", f"/apps/{host}")

    def set_answer(self, host: str, status: int | None, delay: float = 0.0) -> None:
        """``status`` (None: normal routing again) after ``delay`` seconds; endpoints are left as they are."""
        self._ok("PUT", f"/apps/{host}/answer", {"status": status, "delaySeconds": delay})

    def open_port(self, port: int) -> None:
        self._ok("PUT", f"/ports/{port}")

    def close_port(self, port: int) -> None:
        self._ok("DELETE", f"/ports/{port}")

    def stats(self) -> IngressStats:
        raw = self._ok("GET", "/stats")
        hosts = {h: HostStats(c["connections"], c["requests"], {int(k): v for k, v in c["statuses"].items()},
                              dict(c["clients"])) for h, c in raw["hosts"].items()}
        return IngressStats(hosts, {int(p): n for p, n in raw["ports"].items()})

    def reset_stats(self) -> None:
        self._ok("DELETE", "/stats")


class StandInIngress:
    """``python -m rig.ingress`` for one member, with its log and control socket in ``workdir``."""

    def __init__(self, member: str, workdir: Path, addresses: list[str], *, netns: str | None = None,
                 kubeconfig: Path | None = None, http_port: int = 80, https_port: int = 443,
                 ca: CertificateAuthority | None = None) -> None:
        self.member = member
        self.addresses = addresses
        self.http_port = http_port
        self.https_port = https_port
        self.workdir = workdir / f"ingress-{member}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ca = ca or CertificateAuthority.create(f"fleetdns-rig-ingress-{member}-ca")
        self.ca_path, ca_key = self.workdir / "ca.crt", self.workdir / "ca.key"
        self.ca.write(self.ca_path, ca_key)
        # unix socket paths are limited to 107 bytes; pytest's tmp dirs can be longer
        self.control_path = Path(f"/tmp/fdns-ingress-{id(self):x}-{member}.sock")
        self.control = IngressControl(self.control_path)
        argv = [sys.executable, "-m", "rig.ingress", f"--member={member}", f"--control={self.control_path}",
                f"--http-port={http_port}", f"--https-port={https_port}", f"--ca-cert={self.ca_path}",
                f"--ca-key={ca_key}", f"--cert-dir={self.workdir / 'certs'}",
                *[f"--address={a}" for a in addresses]]
        if netns:
            argv.append(f"--netns={netns}")
        if kubeconfig:
            argv.append(f"--kubeconfig={kubeconfig}")
        self.process = ManagedProcess(f"ingress-{member}", argv, self.workdir / "ingress.log",
                                      env={"PYTHONPATH": str(REPO_ROOT)})

    def start(self, timeout: float = 30.0, wait: bool = True) -> StandInIngress:
        self.process.start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.process.wait_until(self.control.healthy, timeout, "listening with EndpointSlices listed")

    def stop(self) -> None:
        self.process.stop()
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()

    def __enter__(self) -> StandInIngress:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
