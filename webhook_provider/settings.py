"""Flags and environment variables → one validated ``Settings``; any bad value stops start-up (exit 2)."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from fleetdns.config import (
    ConfigError,
    add_flag,
    add_list_flag,
    env_bool,
    list_flag_values,
    parse_choice,
    parse_duration,
    parse_host_port,
    parse_positive_duration,
)
from fleetdns.logs import LOG_FORMATS, LOG_LEVELS
from webhook_provider.domain_filter import DomainFilter

# The most ExternalDNS's 15 s client timeout lets the webhook apply (a first sync of ~40,000 names); its peak
# RSS sizes the container (webhook_provider/README.md, "Request size and memory"; bench/webhook_body.py)
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_TXN_OPS = 128  # etcd's own --max-txn-ops default
# etcd's --max-request-bytes defaults to 1.5 MiB and is checked on the whole raft request (our transaction plus a
# header); 64 KiB of headroom covers that header many times over (the planner bounds the transaction's own framing).
ETCD_DEFAULT_MAX_REQUEST_BYTES = 1_572_864
DEFAULT_MAX_TXN_BYTES = ETCD_DEFAULT_MAX_REQUEST_BYTES - 64 * 1024
MIN_MAX_TXN_BYTES = 16 * 1024  # below this an ordinary record with labels may not fit: almost surely a unit mistake


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


@dataclass(frozen=True)
class HostSettings:
    """The host cluster ExternalDNS reads DNSEndpoints from: the relay of its connection and the lag check."""

    kubeconfig: str  # "in-cluster": the pod's service account
    relay_listen: tuple[str, int] | None  # None: no relay (ExternalDNS talks to the host directly)
    relay_hold: float
    namespace: str  # ExternalDNS's --namespace ("" = all)
    label_filter: str  # ExternalDNS's --label-filter
    region: str
    repair_after: float


@dataclass(frozen=True)
class Settings:
    etcd: EtcdSettings
    prefix: str
    domain_filter: DomainFilter
    listen: tuple[str, int]
    health_listen: tuple[str, int]
    max_request_bytes: int
    log_level: str
    log_format: str
    read_mirror: bool = True
    mirror_wait: float = 2.0
    mirror_verify_interval: float = 30.0
    host: HostSettings | None = None  # None: a plain ExternalDNS webhook, no host relay or lag check


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetdns-webhook",
        description="ExternalDNS webhook provider keeping CoreDNS records (SkyDNS layout) in etcd.",
    )
    add_flag(parser, "--etcd-endpoints", "ETCD_URLS", "http://127.0.0.1:2379", "etcd client URLs, comma-separated")
    add_flag(parser, "--prefix", "WEBHOOK_PREFIX", "/skydns/", "etcd key prefix (CoreDNS etcd `path`)")
    add_list_flag(parser, "--domain-filter", "DOMAIN_FILTER", "serve only names in these domains")
    add_list_flag(parser, "--exclude-domains", "EXCLUDE_DOMAINS", "never serve names in these domains")
    add_flag(parser, "--regex-domain-filter", "REGEX_DOMAIN_FILTER", "", "serve only names matching this regex")
    add_flag(parser, "--regex-domain-exclusion", "REGEX_DOMAIN_EXCLUSION", "", "never serve names matching this regex")
    add_flag(parser, "--listen", "WEBHOOK_LISTEN", "127.0.0.1:8888", "address of the webhook API")
    add_flag(parser, "--health-listen", "WEBHOOK_HEALTH_LISTEN", "0.0.0.0:8080", "address of /healthz /readyz /metrics")
    add_flag(parser, "--max-request-bytes", "WEBHOOK_MAX_REQUEST_BYTES", str(DEFAULT_MAX_REQUEST_BYTES),
             "largest request body accepted (413 above)")
    add_flag(parser, "--etcd-max-txn-ops", "ETCD_MAX_TXN_OPS", str(DEFAULT_MAX_TXN_OPS),
             "operations per etcd transaction; must not exceed etcd's --max-txn-ops")
    add_flag(parser, "--etcd-max-txn-bytes", "ETCD_MAX_TXN_BYTES", str(DEFAULT_MAX_TXN_BYTES),
             "bytes per etcd transaction; keep below etcd's --max-request-bytes (a record larger alone is skipped)")
    add_flag(parser, "--etcd-timeout", "ETCD_TIMEOUT", "5s", "timeout of each etcd call")
    add_flag(parser, "--read-mirror", "WEBHOOK_READ_MIRROR", "true",
             "serve reads from an in-memory copy of the prefix kept by an etcd watch (false: read etcd every time)")
    add_flag(parser, "--mirror-wait", "WEBHOOK_MIRROR_WAIT", "2s",
             "how long a read waits for the watch to deliver our last commit before listing etcd instead")
    add_flag(parser, "--mirror-verify-interval", "WEBHOOK_MIRROR_VERIFY_INTERVAL", "30s",
             "how often the mirror compares itself with etcd (a watch that stalls without ending is replaced)")
    add_flag(parser, "--host-kubeconfig", "WEBHOOK_HOST_KUBECONFIG", "",
             "the host cluster ExternalDNS reads DNSEndpoints from (a kubeconfig path, or in-cluster); enables the "
             "host relay and the lag check")
    add_flag(parser, "--host-relay-listen", "WEBHOOK_HOST_RELAY_LISTEN", "127.0.0.1:8889",
             "loopback address ExternalDNS's kubeconfig points at (empty: no relay, lag check only)")
    add_flag(parser, "--host-relay-hold", "WEBHOOK_HOST_RELAY_HOLD", "20s",
             "how long the relay holds a request while the host does not answer (below ExternalDNS's 30s "
             "--kube-api-request-timeout)")
    add_flag(parser, "--dnsendpoint-namespace", "WEBHOOK_DNSENDPOINT_NAMESPACE", "",
             "the namespace ExternalDNS reads DNSEndpoints from (its --namespace; empty: all)")
    add_flag(parser, "--dnsendpoint-label-filter", "WEBHOOK_DNSENDPOINT_LABEL_FILTER", "",
             "ExternalDNS's --label-filter, so the lag check compares the same DNSEndpoints")
    add_flag(parser, "--region", "WEBHOOK_REGION", "", "this region's name (the region label of the lag metric)")
    add_flag(parser, "--host-lag-repair-after", "WEBHOOK_HOST_LAG_REPAIR_AFTER", "2s",
             "a region lagging the host this long has ExternalDNS's host watches reset")
    add_flag(parser, "--log-level", "LOG_LEVEL", "info", "debug, info, warning or error")
    add_flag(parser, "--log-format", "LOG_FORMAT", "json", "json or text")
    return parser


def load_settings(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Parse and validate everything; raises ConfigError naming the flag (or variable) and the value."""
    env = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    return Settings(
        etcd=_etcd_settings(args, env),
        prefix=parse_prefix(args.prefix),
        domain_filter=_domain_filter(args),
        listen=parse_host_port("--listen", args.listen),
        health_listen=parse_host_port("--health-listen", args.health_listen),
        max_request_bytes=_positive_int("--max-request-bytes", args.max_request_bytes),
        log_level=parse_choice("--log-level", args.log_level.lower(), LOG_LEVELS),
        log_format=parse_choice("--log-format", args.log_format.lower(), LOG_FORMATS),
        read_mirror=_bool("--read-mirror", args.read_mirror),
        mirror_wait=parse_positive_duration("--mirror-wait", args.mirror_wait),
        mirror_verify_interval=parse_positive_duration("--mirror-verify-interval", args.mirror_verify_interval),
        host=_host_settings(args),
    )


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _host_settings(args: argparse.Namespace) -> HostSettings | None:
    kubeconfig = args.host_kubeconfig.strip()
    if not kubeconfig:
        return None
    if kubeconfig != "in-cluster" and not os.access(kubeconfig, os.R_OK):
        raise ConfigError("--host-kubeconfig", kubeconfig, "file does not exist or is not readable "
                          "(or say in-cluster for the pod's service account)")
    relay = None
    if args.host_relay_listen.strip():
        relay = parse_host_port("--host-relay-listen", args.host_relay_listen)
        if relay[0] not in LOOPBACK_HOSTS and not relay[0].startswith("127."):
            raise ConfigError("--host-relay-listen", args.host_relay_listen,
                              "the relay forwards with the sidecar's host credentials: listen on loopback only")
    return HostSettings(
        kubeconfig=kubeconfig, relay_listen=relay,
        relay_hold=parse_positive_duration("--host-relay-hold", args.host_relay_hold),
        namespace=args.dnsendpoint_namespace.strip(), label_filter=args.dnsendpoint_label_filter.strip(),
        region=args.region.strip(),
        repair_after=parse_positive_duration("--host-lag-repair-after", args.host_lag_repair_after))


def _etcd_settings(args: argparse.Namespace, env: os._Environ[str] | dict[str, str]) -> EtcdSettings:
    connection = etcd_connection(args, env)
    max_ops = _positive_int("--etcd-max-txn-ops", args.etcd_max_txn_ops)
    if max_ops < 2:
        raise ConfigError("--etcd-max-txn-ops", args.etcd_max_txn_ops, "must be at least 2")
    max_bytes = _positive_int("--etcd-max-txn-bytes", args.etcd_max_txn_bytes)
    if max_bytes < MIN_MAX_TXN_BYTES:
        raise ConfigError("--etcd-max-txn-bytes", args.etcd_max_txn_bytes,
                          f"must be at least {MIN_MAX_TXN_BYTES} (a byte count, e.g. {DEFAULT_MAX_TXN_BYTES}: "
                          "etcd's default --max-request-bytes less headroom)")
    return replace(connection, max_txn_ops=max_ops, max_txn_bytes=max_bytes)


def etcd_connection(args: argparse.Namespace, env: os._Environ[str] | dict[str, str]) -> EtcdSettings:
    """Where etcd is and how to reach it, from ``--etcd-endpoints``, ``--etcd-timeout`` and the ``ETCD_*``
    variables; shared with ``fleetdns-zonefiles``, which reads the same etcd."""
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


def _domain_filter(args: argparse.Namespace) -> DomainFilter:
    include = list_flag_values(args, "--domain-filter")
    exclude = list_flag_values(args, "--exclude-domains")
    regex_include, regex_exclude = args.regex_domain_filter.strip(), args.regex_domain_exclusion.strip()
    if (regex_include or regex_exclude) and (include or exclude):
        flag = "--regex-domain-filter" if regex_include else "--regex-domain-exclusion"
        raise ConfigError(flag, regex_include or regex_exclude,
                          "a regex filter cannot be combined with --domain-filter/--exclude-domains")
    if regex_include or regex_exclude:
        for flag, pattern in (("--regex-domain-filter", regex_include), ("--regex-domain-exclusion", regex_exclude)):
            try:
                re.compile(pattern)
            except re.error as error:
                raise ConfigError(flag, pattern, f"invalid regular expression: {error}") from None
        return DomainFilter.from_regex(regex_include, regex_exclude)
    return DomainFilter.from_lists(include, exclude)


def _positive_int(flag: str, value: str | int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(flag, value, "expected a positive integer") from None
    if number <= 0:
        raise ConfigError(flag, value, "expected a positive integer")
    return number


def _bool(flag: str, value: str) -> bool:
    try:
        return env_bool(value)
    except ValueError as error:
        raise ConfigError(flag, value, str(error)) from None
