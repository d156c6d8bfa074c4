"""Where etcd is, how to reach it and under which prefix: the flags and ``ETCD_*`` variables of every process
that reads or writes the SkyDNS key space (the same variables as ExternalDNS's coredns provider)."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fleetdns.config import ConfigError, add_flag, env_bool, parse_duration

DEFAULT_MAX_TXN_OPS = 128  # etcd's own --max-txn-ops default
# etcd's --max-request-bytes defaults to 1.5 MiB and is checked on the whole raft request (our transaction plus a
# header); 64 KiB of headroom covers that header many times over (the planner bounds the transaction's own framing).
ETCD_DEFAULT_MAX_REQUEST_BYTES = 1_572_864
DEFAULT_MAX_TXN_BYTES = ETCD_DEFAULT_MAX_REQUEST_BYTES - 64 * 1024


@dataclass(frozen=True)
class EtcdEndpoint:
    host: str
    port: int
    secure: bool

    @property
    def url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class EtcdSettings:
    """Where etcd is and how to authenticate; the same variables as ExternalDNS's coredns provider."""

    endpoints: tuple[EtcdEndpoint, ...]
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_server_name: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never printed or logged
    timeout: float = 5.0
    max_txn_ops: int = DEFAULT_MAX_TXN_OPS
    max_txn_bytes: int = DEFAULT_MAX_TXN_BYTES

    @property
    def secure(self) -> bool:
        return self.endpoints[0].secure


def add_etcd_flags(parser: argparse.ArgumentParser) -> None:
    """The flags ``etcd_connection`` reads; the ``ETCD_*`` variables for TLS and authentication have no flag."""
    add_flag(parser, "--etcd-endpoints", "ETCD_URLS", "http://127.0.0.1:2379", "etcd client URLs, comma-separated")
    add_flag(parser, "--etcd-timeout", "ETCD_TIMEOUT", "5s", "timeout of each etcd call")


def etcd_connection(args: argparse.Namespace, env: os._Environ[str] | dict[str, str]) -> EtcdSettings:
    """Where etcd is and how to reach it, from ``--etcd-endpoints``, ``--etcd-timeout`` and the ``ETCD_*``
    variables (``add_etcd_flags``)."""
    endpoints = tuple(_etcd_endpoint(url) for url in args.etcd_endpoints.split(",") if url.strip())
    if not endpoints:
        raise ConfigError("--etcd-endpoints", args.etcd_endpoints, "at least one URL is required")
    if len({e.secure for e in endpoints}) > 1:
        raise ConfigError("--etcd-endpoints", args.etcd_endpoints, "mixes http:// and https:// URLs")
    secure = endpoints[0].secure
    ca, cert, key = (env.get(name) or None for name in ("ETCD_CA_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE"))
    server_name = env.get("ETCD_TLS_SERVER_NAME") or None
    for name, path in (("ETCD_CA_FILE", ca), ("ETCD_CERT_FILE", cert), ("ETCD_KEY_FILE", key)):
        if path and not os.access(path, os.R_OK):
            raise ConfigError(name, path, "file does not exist or is not readable")
    if bool(cert) != bool(key):
        raise ConfigError("ETCD_CERT_FILE" if cert else "ETCD_KEY_FILE", cert or key,
                          "a client certificate needs both ETCD_CERT_FILE and ETCD_KEY_FILE")
    insecure = env.get("ETCD_TLS_INSECURE", "")
    try:
        skip_verify = env_bool(insecure) if insecure else False
    except ValueError as error:
        raise ConfigError("ETCD_TLS_INSECURE", insecure, str(error)) from None
    if skip_verify and secure:
        raise ConfigError("ETCD_TLS_INSECURE", insecure, "the Python gRPC client cannot skip certificate "
                          "verification; give the CA with ETCD_CA_FILE (and ETCD_TLS_SERVER_NAME if the name differs)")
    if not secure and (ca or cert or server_name):
        raise ConfigError("--etcd-endpoints", args.etcd_endpoints,
                          "TLS settings (ETCD_CA_FILE/ETCD_CERT_FILE/ETCD_TLS_SERVER_NAME) need https:// URLs")
    username, password = env.get("ETCD_USERNAME") or None, env.get("ETCD_PASSWORD") or None
    if bool(username) != bool(password):
        raise ConfigError("ETCD_USERNAME" if username else "ETCD_PASSWORD", "(set)" if password else username,
                          "etcd authentication needs both ETCD_USERNAME and ETCD_PASSWORD")
    timeout = parse_duration("--etcd-timeout", args.etcd_timeout)
    if timeout <= 0:
        raise ConfigError("--etcd-timeout", args.etcd_timeout, "must be positive")
    return EtcdSettings(endpoints=endpoints, ca_file=ca, cert_file=cert, key_file=key, tls_server_name=server_name,
                        username=username, password=password, timeout=timeout)


def _etcd_endpoint(url: str) -> EtcdEndpoint:
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ConfigError("--etcd-endpoints", url, "etcd URLs must start with http:// or https://")
    try:
        port = parts.port or 2379
    except ValueError:
        raise ConfigError("--etcd-endpoints", url, "invalid port") from None
    if not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError("--etcd-endpoints", url, "expected scheme://host:port")
    return EtcdEndpoint(parts.hostname, port, parts.scheme == "https")


def parse_prefix(value: str) -> str:
    """``/skydns`` and ``/skydns/`` mean the same; keys always start with ``prefix`` ending in ``/``."""
    text = value.strip()
    if not re.fullmatch(r"/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/?", text):
        raise ConfigError("--prefix", value, "expected an etcd path such as /skydns/ (letters, digits, . _ -)")
    return text if text.endswith("/") else text + "/"
