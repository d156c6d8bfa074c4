"""Talk to a webhook provider as ExternalDNS does, and ask CoreDNS what it answers (tests, bench, demo)."""

from __future__ import annotations

import re
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import requests

MEDIA_TYPE = "application/external.dns.webhook+json;version=1"


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
        text = self.session.get(self.health_url + "/metrics", timeout=5).text
        samples: dict[str, float] = {}
        for line in text.splitlines():
            match = re.match(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)$", line)
            if match:
                samples[match.group(1)] = float(match.group(2))
        return samples

    def ready(self) -> int:
        assert self.health_url, "no health URL given"
        return self.session.get(self.health_url + "/readyz", timeout=5).status_code


def dns_answers(host: str, port: int, name: str, rdtype: str, timeout: float = 2.0) -> set[str]:
    """The answer records of type ``rdtype`` CoreDNS gives for ``name``, as presentation text."""
    response = dns.query.udp(dns.message.make_query(name, rdtype), host, port=port, timeout=timeout)
    wanted = dns.rdatatype.from_text(rdtype)
    return {rr.to_text() for rrset in response.answer if rrset.rdtype == wanted for rr in rrset}
