"""Flags and environment variables → one validated ``Settings``; any bad value stops start-up (exit 2)."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, replace

from fleetdns.config import (
    ConfigError,
    add_flag,
    add_list_flag,
    env_bool,
    list_flag_values,
    parse_host_port,
    parse_positive_duration,
)
from fleetdns.logs import add_log_flags, parse_log_flags
from fleetdns.skydns.settings import (
    DEFAULT_MAX_TXN_BYTES,
    DEFAULT_MAX_TXN_OPS,
    EtcdSettings,
    add_etcd_flags,
    etcd_connection,
    parse_prefix,
)
from webhook_provider.domain_filter import DomainFilter

# ExternalDNS v0.22's own cap on a webhook request: nothing it can send is refused (a 413 makes it exit and resend
# the same body, a crash loop). More than it waits for (15 s), but applied whole, so its next sync sends only what is
# missing. Its peak RSS sizes the container (webhook_provider/README.md, "Request size and memory").
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
MIN_MAX_TXN_BYTES = 16 * 1024  # below this an ordinary record with labels may not fit: almost surely a unit mistake


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
    dns_views: bool = True  # keep the host's DNSViews in etcd for the zone-file sidecar (views.md §7)


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
    add_etcd_flags(parser)
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
    add_flag(parser, "--host-dns-views", "WEBHOOK_HOST_DNS_VIEWS", "true",
             "keep the host's DNSViews in etcd under /fleetdns/views/ for the zone-file sidecar's Corefile (needs "
             "get, list and watch on dnsviews on the host)")
    add_log_flags(parser)
    return parser


def load_settings(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Parse and validate everything; raises ConfigError naming the flag (or variable) and the value."""
    env = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    log_level, log_format = parse_log_flags(args)
    return Settings(
        etcd=_etcd_settings(args, env),
        prefix=parse_prefix(args.prefix),
        domain_filter=_domain_filter(args),
        listen=parse_host_port("--listen", args.listen),
        health_listen=parse_host_port("--health-listen", args.health_listen),
        max_request_bytes=_positive_int("--max-request-bytes", args.max_request_bytes),
        log_level=log_level,
        log_format=log_format,
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
        repair_after=parse_positive_duration("--host-lag-repair-after", args.host_lag_repair_after),
        dns_views=_bool("--host-dns-views", args.host_dns_views))


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
