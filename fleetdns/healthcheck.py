"""An intent's ``spec.healthCheck`` (the Kubernetes Probe shape) and the identity of one check.

Shared by the prober (which runs checks) and the aggregator (which counts the prober's reports): both
parse the same spec here and name a check by the same ``check_id``, so a report written for an older
definition of the check never decides the verdict of the new one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

# kubelet's defaults for a Probe
DEFAULT_PERIOD_SECONDS = 10
DEFAULT_TIMEOUT_SECONDS = 1
DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_SUCCESS_THRESHOLD = 1


class Scheme(StrEnum):
    HTTP = "HTTP"
    HTTPS = "HTTPS"


class HealthCheckError(ValueError):
    """A ``spec.healthCheck`` that cannot be run; the message names the field."""


@dataclass(frozen=True)
class HttpGet:
    port: int
    path: str = "/"
    scheme: Scheme = Scheme.HTTP
    host: str = ""  # "" until resolved(): the record's FQDN, or the Ingress's first host
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TcpSocket:
    port: int


@dataclass(frozen=True)
class HealthCheck:
    """What to check on each cluster's load-balancer address, how often, and when a result counts."""

    http_get: HttpGet | None = None
    tcp_socket: TcpSocket | None = None
    period_seconds: int = DEFAULT_PERIOD_SECONDS
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    success_threshold: int = DEFAULT_SUCCESS_THRESHOLD

    @property
    def port(self) -> int:
        return self.http_get.port if self.http_get else self.tcp_socket.port if self.tcp_socket else 0

    def resolved(self, default_host: str) -> HealthCheck:
        """The check with its Host header filled in (``default_host`` when the spec names none)."""
        if self.http_get is None or self.http_get.host:
            return self
        return replace(self, http_get=replace(self.http_get, host=default_host.rstrip(".").lower()))

    @property
    def check_id(self) -> str:
        """What makes two checks the same check (what is sent and where; not how often): 12 hex digits.
        Call it on ``resolved()``: the Host header is part of the identity."""
        if self.http_get is not None:
            h = self.http_get
            what: list[Any] = ["http", h.scheme.value, h.port, h.host, h.path, [list(x) for x in h.headers]]
        else:
            what = ["tcp", self.port]
        return hashlib.sha256(json.dumps(what, separators=(",", ":")).encode()).hexdigest()[:12]


def parse_health_check(raw: Any) -> HealthCheck | None:
    """``spec.healthCheck`` → HealthCheck (None when absent); HealthCheckError names the bad field.

    The CRD's schema refuses all of this at admission; this guards objects written before it did."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise HealthCheckError("spec.healthCheck must be an object")
    http_raw, tcp_raw = raw.get("httpGet"), raw.get("tcpSocket")
    if (http_raw is None) == (tcp_raw is None):
        raise HealthCheckError("spec.healthCheck needs exactly one of httpGet and tcpSocket")
    check = HealthCheck(
        http_get=_http_get(http_raw) if http_raw is not None else None,
        tcp_socket=TcpSocket(_port(_object(tcp_raw, "tcpSocket").get("port"), "tcpSocket.port"))
        if tcp_raw is not None else None,
        period_seconds=_positive(raw.get("periodSeconds"), "periodSeconds", DEFAULT_PERIOD_SECONDS),
        timeout_seconds=_positive(raw.get("timeoutSeconds"), "timeoutSeconds", DEFAULT_TIMEOUT_SECONDS),
        failure_threshold=_positive(raw.get("failureThreshold"), "failureThreshold", DEFAULT_FAILURE_THRESHOLD),
        success_threshold=_positive(raw.get("successThreshold"), "successThreshold", DEFAULT_SUCCESS_THRESHOLD),
    )
    if check.timeout_seconds > check.period_seconds:
        raise HealthCheckError(f"spec.healthCheck.timeoutSeconds ({check.timeout_seconds}) must not exceed "
                               f"periodSeconds ({check.period_seconds})")
    return check


def _http_get(raw: Any) -> HttpGet:
    raw = _object(raw, "httpGet")
    path = raw.get("path") or "/"
    if not isinstance(path, str) or not path.startswith("/"):
        raise HealthCheckError(f"spec.healthCheck.httpGet.path must start with '/', not {path!r}")
    scheme_raw = raw.get("scheme") or "HTTP"
    try:
        scheme = Scheme(str(scheme_raw).upper())
    except ValueError:
        raise HealthCheckError(f"spec.healthCheck.httpGet.scheme must be HTTP or HTTPS, not {scheme_raw!r}") from None
    headers = []
    for index, header in enumerate(raw.get("httpHeaders") or []):
        header = _object(header, f"httpGet.httpHeaders[{index}]")
        name, value = header.get("name"), header.get("value", "")
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise HealthCheckError(f"spec.healthCheck.httpGet.httpHeaders[{index}] needs a name and a string value")
        headers.append((name, value))
    host = raw.get("host") or ""
    if not isinstance(host, str):
        raise HealthCheckError("spec.healthCheck.httpGet.host must be a string")
    return HttpGet(_port(raw.get("port"), "httpGet.port"), path, scheme, host.rstrip(".").lower(), tuple(headers))


def _object(raw: Any, name: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise HealthCheckError(f"spec.healthCheck.{name} must be an object")
    return raw


def _port(raw: Any, name: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 65535:
        raise HealthCheckError(f"spec.healthCheck.{name} must be a port number 1-65535, not {raw!r}")
    return raw


def _positive(raw: Any, name: str, default: int) -> int:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise HealthCheckError(f"spec.healthCheck.{name} must be a whole number ≥ 1, not {raw!r}")
    return raw
