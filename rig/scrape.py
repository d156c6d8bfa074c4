"""Read a Prometheus text exposition into samples, for tests and benchmarks that count what happened."""

from __future__ import annotations

import re

import requests

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)$")


def scrape(url: str, timeout: float = 5.0) -> dict[str, float]:
    """Every sample at ``url``, keyed by its name with labels exactly as exposed."""
    samples: dict[str, float] = {}
    for line in requests.get(url, timeout=timeout).text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples
