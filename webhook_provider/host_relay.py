"""ExternalDNS's connection to the host API, relayed so that a host outage never grows its reconnect backoff.

client-go backs off up to 30-60 s after refused connections, but watches again at once after a watch that ended
normally. So the relay never refuses: while the host does not answer it holds the request and retries it, and a
watch held past ``hold`` ends empty, as a server-side watch timeout does (docs/design/host-outage.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import urllib3

from fleetdns.kubeapi import KubeClient, KubeError
from webhook_provider.metrics import HostMetrics
from webhook_provider.watch_resume import list_query, missed_events, resume_version, watch_query

log = logging.getLogger(__name__)

RETRY_EVERY_SECONDS = 0.25
CONNECT_TIMEOUT_SECONDS = 2.0
REQUEST_READ_TIMEOUT_SECONDS = 30.0
WATCH_READ_MARGIN_SECONDS = 30.0  # past the watch's own timeoutSeconds: a stream that went silent
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})  # a host starting up; only GETs are retried
STREAM_CHUNK = 65536
RESUME_WINDOW_SECONDS = 120.0  # after the host was last seen away, watches are resumed rather than forwarded
_NOT_RELAYED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection",
                          "te", "trailer", "upgrade", "date", "server"})  # hop-by-hop, or written by http.server
_DISCOVERY = frozenset({"/api", "/apis", "/version"})
_GROUP = "/apis/externaldns.k8s.io/"
_STATUS_PUT = re.compile(r"/apis/externaldns\.k8s\.io/v1alpha1/namespaces/[^/]+/dnsendpoints/[^/]+/status")


def relay_allows(method: str, path: str) -> bool:
    """What ExternalDNS's CRD source needs, nothing more: the relay lends the sidecar's credentials."""
    if method == "GET":
        return path in _DISCOVERY or path.startswith(_GROUP) or path == _GROUP.rstrip("/")
    return method == "PUT" and _STATUS_PUT.fullmatch(path) is not None


def watch_timeout(query: str) -> float | None:
    """The read timeout for a request: None unless it is a watch (then its own timeoutSeconds plus a margin)."""
    params = parse_qs(query)
    if params.get("watch", [""])[0] not in ("true", "1"):
        return None
    try:
        seconds = float(params.get("timeoutSeconds", ["600"])[0])
    except ValueError:
        seconds = 600.0
    return seconds + WATCH_READ_MARGIN_SECONDS


class HostRelay:
    """A loopback HTTP server relaying ExternalDNS's host API requests with ``client``'s credentials."""

    def __init__(self, client: KubeClient, listen: tuple[str, int], hold: float, metrics: HostMetrics) -> None:
        self.client = client
        self.hold = hold
        self.metrics = metrics
        self._stopping = threading.Event()
        self._watches: set[urllib3.BaseHTTPResponse] = set()
        self._lock = threading.Lock()
        self._away_at: float | None = None  # when the host last did not answer, or a stream from it broke
        self.server = (_ThreadingHTTPServer6 if ":" in listen[0] else ThreadingHTTPServer)(listen, _handler_for(self))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="host-relay", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> HostRelay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.reset_watches()
        self.server.shutdown()
        self.server.server_close()

    def reset_watches(self) -> int:
        """End every watch relayed now; ExternalDNS watches again at once from its resourceVersion."""
        with self._lock:
            watches = list(self._watches)
        for response in watches:
            with contextlib.suppress(Exception):  # already ending
                response.shutdown()
        return len(watches)

    def open_upstream(self, method: str, target: str, body: bytes | None, headers: dict[str, str],
                      read_timeout: float | None) -> urllib3.BaseHTTPResponse | None:
        """The host's response, retried while the host does not answer (GETs also on 429/5xx) for up to
        ``hold`` seconds; None when it never did."""
        started = time.monotonic()
        held = False
        try:
            while not self._stopping.is_set():
                try:
                    response = self.client.forward(method, target, body, headers,
                                                   (CONNECT_TIMEOUT_SECONDS, read_timeout))
                    # a host just back may answer 404 for a CRD's resources until it has loaded them
                    retried = RETRIED_STATUSES | ({404} if held else set())
                    retry = method == "GET" and response.status in retried
                except KubeError:
                    response, retry = None, True
                    self.host_away()
                self.metrics.host_reachable.set(0 if response is None else 1)
                if not retry or time.monotonic() - started >= self.hold:
                    return response
                if response is not None:
                    _discard(response)
                if not held:
                    held = True
                    self.metrics.relay_holding.inc()
                self._stopping.wait(RETRY_EVERY_SECONDS)
            return None
        finally:
            if held:
                self.metrics.relay_holding.dec()
                self.metrics.relay_held.observe(time.monotonic() - started)

    def host_away(self) -> None:
        self._away_at = time.monotonic()

    def host_was_away(self) -> bool:
        """Whether the host may have restarted lately (watches from before then would get 410 Expired)."""
        away = self._away_at
        return away is not None and time.monotonic() - away < RESUME_WINDOW_SECONDS

    def resume_watch(self, path: str, query: str, version: str, headers: dict[str, str],
                     read_timeout: float | None) -> tuple[list[dict[str, Any]], urllib3.BaseHTTPResponse] | None:
        """The events a watch from ``version`` missed and the host's watch from now on (watch_resume.py); None
        when the host cannot say what was at ``version`` (compacted), so the client's own watch gets its answer."""
        before = self._list(f"{path}?{list_query(query, version)}")
        now = self._list(f"{path}?{list_query(query, None)}") if before is not None else None
        if before is None or now is None:
            return None
        current = str((now.get("metadata") or {}).get("resourceVersion") or "")
        response = self.open_upstream("GET", f"{path}?{watch_query(query, current)}", None, headers, read_timeout)
        if response is None or response.status != 200:
            if response is not None:
                _discard(response)
            return None
        events = missed_events(before, now)
        log.info("host watch resumed across a host restart", extra={
            "path": path, "from_resource_version": version, "to_resource_version": current, "events": len(events)})
        return events, response

    def _list(self, target: str) -> dict[str, Any] | None:
        response = self.open_upstream("GET", target, None, {"Accept": "application/json"},
                                      REQUEST_READ_TIMEOUT_SECONDS)
        if response is None:
            return None
        try:
            if response.status != 200:
                return None
            listing = json.loads(response.read())
            return listing if isinstance(listing, dict) else None
        except (urllib3.exceptions.HTTPError, OSError, ValueError):
            return None
        finally:
            _discard(response)

    def track(self, response: urllib3.BaseHTTPResponse, watching: bool) -> None:
        with self._lock:
            if watching:
                self._watches.add(response)
            else:
                self._watches.discard(response)


class _ThreadingHTTPServer6(ThreadingHTTPServer):
    address_family = socket.AF_INET6  # --host-relay-listen=[::1]:8889


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    with contextlib.suppress(Exception):
        response.drain_conn()
        response.release_conn()


def _handler_for(relay: HostRelay) -> type[BaseHTTPRequestHandler]:
    class Handler(_RelayHandler):
        pass

    Handler.relay = relay
    return Handler


class _RelayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    relay: HostRelay

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._relay("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._relay("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._relay("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._relay("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._relay("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        """Quiet: one structured line per refusal instead of an access log (headers carry tokens)."""

    def _relay(self, method: str) -> None:
        parts = urlsplit(self.path)
        body = self._body()
        if not relay_allows(method, parts.path):
            self.relay.metrics.relay_requests.labels(method, "refused").inc()
            log.warning("host relay refused a request outside what ExternalDNS's CRD source needs",
                        extra={"method": method, "path": parts.path})
            self._reply_status(403, "Forbidden", f"the FleetDNS host relay forwards only GET on discovery and "
                                                 f"externaldns.k8s.io and PUT on dnsendpoints/status, not "
                                                 f"{method} {parts.path}")
            return
        read_timeout = watch_timeout(parts.query)
        watching = read_timeout is not None
        headers = {key: value for key, value in self.headers.items()
                   if key in ("Accept", "Content-Type", "User-Agent")}
        version = resume_version(parts.query) if watching else None
        if version is not None and self._resumed(parts.path, parts.query, version, headers, read_timeout):
            return
        response = self.relay.open_upstream(method, self.path, body, headers,
                                            read_timeout if watching else REQUEST_READ_TIMEOUT_SECONDS)
        if response is None:
            self._held_out(method, watching)
            return
        outcome = "watch" if watching else str(response.status)
        self.relay.metrics.relay_requests.labels(method, outcome).inc()
        self._stream(response, watching)

    def _resumed(self, path: str, query: str, version: str, headers: dict[str, str],
                 read_timeout: float | None) -> bool:
        """Serve a watch from ``version`` that the host may answer 410 Expired because it restarted since
        (it was away lately, or while this request waited): resumed from etcd's history instead."""
        if not self.relay.host_was_away():
            response = self.relay.open_upstream("GET", self.path, None, headers, read_timeout)
            if response is not None and not self.relay.host_was_away():
                self.relay.metrics.relay_requests.labels("GET", "watch").inc()
                self._stream(response, True)
                return True
            if response is not None:
                with contextlib.suppress(Exception):
                    response.close()  # the host was away while this watch waited: resume it instead
        resumed = self.relay.resume_watch(path, query, version, headers, read_timeout)
        if resumed is None:
            return False
        self.relay.metrics.relay_requests.labels("GET", "watch_resumed").inc()
        self._stream(resumed[1], True, resumed[0])
        return True

    def _body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else None

    def _held_out(self, method: str, watching: bool) -> None:
        """The host did not answer within ``hold``: a watch ends empty (ExternalDNS watches again at once)."""
        self.relay.metrics.relay_requests.labels(method, "held_out").inc()
        if watching:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            return
        self._reply_status(503, "ServiceUnavailable",
                           f"the host API server did not answer within {self.relay.hold:g} s (FleetDNS host relay)")

    def _reply_status(self, code: int, reason: str, message: str) -> None:
        payload = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                              "reason": reason, "code": code}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        self.close_connection = True

    def _stream(self, response: urllib3.BaseHTTPResponse, watching: bool,
                first_events: list[dict[str, Any]] | None = None) -> None:
        """The host's answer, chunk by chunk as it arrives (watch events are not buffered), after
        ``first_events`` (a resumed watch's missed events)."""
        self.close_connection = True
        self.relay.track(response, watching)
        completed = False
        try:
            self.send_response(response.status)
            for key, value in response.headers.items():
                if key.lower() not in _NOT_RELAYED:
                    self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            for event in first_events or ():
                line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
            for chunk in response.stream(STREAM_CHUNK, decode_content=False):
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            completed = True
        except (urllib3.exceptions.HTTPError, OSError, ValueError):
            completed = watching  # an ended watch is an ordinary end; a cut-off answer must look cut off
        finally:
            if watching:
                # the host may be restarting (a graceful shutdown ends watches cleanly too): the next watch
                # is resumed, which costs two lists when the host did not restart
                self.relay.host_away()
            self.relay.track(response, False)
            _discard(response)
        if completed:
            with contextlib.suppress(OSError):
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
