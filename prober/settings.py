"""Flags (each with an environment variable ``FLEETDNS_PROBER_<FLAG>``) and their validation; invalid input
exits with code 2 and one line naming the flag."""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass

from fleetdns.config import (
    ConfigError,
    add_flag,
    env_name,
    parse_host_port,
    parse_int_in_range,
    require_dns_label,
)
from fleetdns.logs import add_log_flags, parse_log_flags

ENV_PREFIX = "FLEETDNS_PROBER_"


@dataclass(frozen=True)
class Settings:
    region: str
    kubeconfig: str
    health_host: str
    health_port: int
    namespace: str
    lease_namespace: str
    identity: str
    max_in_flight: int
    log_level: str
    log_format: str


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetdns-prober",
        description="Check every cluster address of every intent with a healthCheck from this region, and report "
                    "what is Down to the host cluster (HealthReports, one Lease per region).")
    flags: list[tuple[str, str, str]] = [
        ("--region", "", "the region this prober checks from (required; names its Lease and reports)"),
        ("--kubeconfig", "", "host-cluster kubeconfig; empty: in-cluster, then $KUBECONFIG / ~/.kube/config"),
        ("--health-listen", "0.0.0.0:8082", "HOST:PORT for /healthz, /readyz and /metrics"),
        ("--namespace", "", "check intents (and write reports) in this namespace only; empty: all"),
        ("--lease-namespace", "fleetdns-system", "namespace of the region's Lease fleetdns-prober-<region>"),
        ("--identity", "", "this replica's name in the Lease; empty: <hostname>-<pid>"),
        ("--max-in-flight", "4096", "checks open at once at most (each holds a socket); more wait their turn"),
    ]
    for flag, default, help_text in flags:
        add_flag(parser, flag, env_name(ENV_PREFIX, flag), default, help_text)
    add_log_flags(parser, ENV_PREFIX)
    return parser


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Parse and validate; raises ConfigError naming the flag and the value."""
    args = build_parser().parse_args(argv)
    if not args.region:
        raise ConfigError("--region", "",
                          f"required: the region this prober checks from (or {env_name(ENV_PREFIX, '--region')})")
    require_dns_label("--region", args.region)
    health_host, health_port = parse_host_port("--health-listen", args.health_listen)
    if args.namespace:
        require_dns_label("--namespace", args.namespace)
    require_dns_label("--lease-namespace", args.lease_namespace)
    if args.kubeconfig and not os.path.isfile(args.kubeconfig):
        raise ConfigError("--kubeconfig", args.kubeconfig, "no such file")
    max_in_flight = parse_int_in_range("--max-in-flight", args.max_in_flight, 1, 100_000)
    log_level, log_format = parse_log_flags(args)
    return Settings(
        region=args.region, kubeconfig=args.kubeconfig, health_host=health_host, health_port=health_port,
        namespace=args.namespace, lease_namespace=args.lease_namespace,
        identity=args.identity or f"{socket.gethostname()}-{os.getpid()}", max_in_flight=max_in_flight,
        log_level=log_level, log_format=log_format,
    )
