"""Talk to a webhook provider as ExternalDNS does (tests, benchmarks, the rig's readiness checks)."""

from __future__ import annotations

from typing import Any

import requests

from fleetdns.endpoint import WEBHOOK_MEDIA_TYPE as MEDIA_TYPE
from rig.scrape import scrape


class WebhookClient:
    """The four protocol calls with ExternalDNS v0.22's headers; responses are returned, not judged."""

    def __init__(self, url: str, health_url: str | None = None, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.health_url = health_url.rstrip("/") if health_url else None
        self.session = requests.Session()
        self.timeout = timeout

    def negotiate(self) -> requests.Response:
        return self.session.get(self.url + "/", headers={"Accept": MEDIA_TYPE}, timeout=self.timeout)

    def records(self) -> requests.Response:
        return self.session.get(self.url + "/records", headers={"Accept": MEDIA_TYPE}, timeout=self.timeout)

    def apply(self, changes: dict[str, Any] | bytes, content_type: str | None = MEDIA_TYPE) -> requests.Response:
        headers = {"Content-Type": content_type} if content_type else {}
        if isinstance(changes, bytes):
            return self.session.post(self.url + "/records", data=changes, headers=headers, timeout=self.timeout)
        return self.session.post(self.url + "/records", json=changes, headers=headers, timeout=self.timeout)

    def adjust(self, endpoints: list[dict[str, Any]]) -> requests.Response:
        return self.session.post(self.url + "/adjustendpoints", json=endpoints,
                                 headers={"Content-Type": MEDIA_TYPE, "Accept": MEDIA_TYPE}, timeout=self.timeout)

    def endpoints(self) -> dict[tuple[str, str], dict[str, Any]]:
        """GET /records as {(dnsName, recordType): endpoint}; raises unless 200."""
        response = self.records()
        response.raise_for_status()
        return {(e["dnsName"], e["recordType"]): e for e in response.json()}

    def metrics(self) -> dict[str, float]:
        assert self.health_url, "no health URL given"
        return scrape(self.health_url + "/metrics")

    def ready(self) -> int:
        assert self.health_url, "no health URL given"
        return self.session.get(self.health_url + "/readyz", timeout=5).status_code

