"""The second HTTP port every FleetDNS process has: /healthz, /readyz and Prometheus /metrics."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from flask import Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from waitress.server import create_server

ReadyCheck = Callable[[], tuple[bool, str]]


def probe_app(ready: ReadyCheck, registry: CollectorRegistry) -> Flask:
    app = Flask("fleetdns-probes", static_folder=None)  # Flask's default would serve files from ./static/

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.get("/readyz")
    def readyz() -> Response:
        ok, reason = ready()
        return Response(f"{'ok' if ok else 'not ready'}: {reason}\n", status=200 if ok else 503, mimetype="text/plain")

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    return app


class BackgroundServer:
    """A waitress server on its own thread, closed by ``stop`` (used for both the API and the probes)."""

    def __init__(self, app: Flask, host: str, port: int, threads: int = 4, name: str = "http") -> None:
        self.server = create_server(app, host=host, port=port, threads=threads, ident="fleetdns",
                                    clear_untrusted_proxy_headers=True)
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.effective_port)  # type: ignore[union-attr]

    def start(self) -> BackgroundServer:
        self.thread.start()
        return self

    def stop(self, grace: float = 0.0) -> None:
        """Close the server; with ``grace``, first stop accepting and let requests in progress finish."""
        if grace > 0:
            self._drain(grace)
        self.server.close()
        # Idle keep-alive connections keep waitress's event loop (and so this thread) alive: close them.
        for channel in list(self.server._map.values()):
            with contextlib.suppress(Exception):
                channel.close()
        self.thread.join(timeout=5)

    def _drain(self, grace: float) -> None:
        self.server.accepting = False  # waitress stops accepting new connections
        dispatcher = self.server.task_dispatcher
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (dispatcher.active_count or dispatcher.queue):
            time.sleep(0.02)
        time.sleep(0.05)  # let the event loop flush the last responses
