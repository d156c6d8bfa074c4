"""Flags (each with an environment variable) and their validation; invalid input exits with code 2."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
from dataclasses import dataclass

from aggregator.sources.openshift_route import DEFAULT_ROUTER_NAMESPACE
from fleetdns.config import (
    ConfigError,
    add_flag,
    add_list_flag,
    env_bool,
    env_name,
    list_flag_values,
    parse_duration,
    parse_host_port,
    parse_int_in_range,
    require_dns_label,
)
from fleetdns.dnsname import is_dns_label
from fleetdns.logs import add_log_flags, parse_log_flags

ENV_PREFIX = "FLEETDNS_AGGREGATOR_"


@dataclass(frozen=True)
class Settings:
    kubeconfig: str
    member_grace_period: float
    health_host: str
    health_port: int
    leader_election: bool
    leader_election_namespace: str
    lease_name: str
    lease_duration: float
    renew_deadline: float
    retry_period: float
    identity: str
    namespace: str
    domain_namespace: str
    workers: int
    log_level: str
    log_format: str
    resolve_lb_hostnames: bool = True
    dns_resolvers: tuple[tuple[str, int], ...] = ()  # (IP, port); empty: the system resolver
    prober_grace_period: float = 10.0  # a region votes while its prober Lease was seen renewed this recently
    prober_lease_namespace: str = "fleetdns-system"
    self_service_domain: str = ""  # the Domain of annotated apps without fleetdns.io/domain ("": they must name one)
    openshift_router_namespace: str = DEFAULT_ROUTER_NAMESPACE  # where the Services router-<routerName> live


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetdns-aggregator",
        description="Federate ServiceDNSRecord / IngressDNSRecord intents across member clusters into DNSEndpoints.")
    flags: list[tuple[str, str, str]] = [
        ("--kubeconfig", "", "host-cluster kubeconfig; empty: in-cluster, then $KUBECONFIG / ~/.kube/config"),
        ("--member-grace-period", "30s", "how long a silent member API server keeps its last known targets"),
        ("--health-listen", "0.0.0.0:8081", "HOST:PORT for /healthz, /readyz and /metrics"),
        ("--leader-election", "true", "elect one writer among replicas through a Lease on the host cluster"),
        ("--leader-election-namespace", "fleetdns-system", "namespace of the Lease"),
        ("--lease-name", "fleetdns-aggregator", "name of the Lease"),
        ("--lease-duration", "15s", "how long a lease is valid without renewal (standbys wait this long)"),
        ("--renew-deadline", "10s", "the leader gives up writing when it could not renew for this long"),
        ("--retry-period", "2s", "how often the leader renews and standbys try to acquire"),
        ("--identity", "", "this replica's name in the Lease; empty: <hostname>-<pid>"),
        ("--namespace", "", "watch intents (and member objects) in this namespace only; empty: all"),
        ("--domain-namespace", "fleetdns-system", "where Domains are looked up after the intent's own namespace"),
        ("--workers", "4", "concurrent reconciles (each intent is reconciled by one worker at a time); as many "
                           "generators write self-service intents"),
        ("--prober-grace-period", "10s",
         "a region's prober votes while the aggregator saw its Lease renewed within this period"),
        ("--prober-lease-namespace", "fleetdns-system", "namespace of the probers' Leases (fleetdns-prober-<region>)"),
        ("--openshift-router-namespace", DEFAULT_ROUTER_NAMESPACE,
         "where OpenShift's routers' LoadBalancer Services router-<routerName> live in each member (RouteDNSRecord)"),
        ("--self-service-domain", "",
         "the Domain (by name) of apps annotated fleetdns.io/global without fleetdns.io/domain; empty: they name one"),
        ("--resolve-lb-hostnames", "true",
         "resolve load-balancer hostnames (EKS-style) to A/AAAA per cluster; false: the CNAME form for every intent"),
    ]
    for flag, default, help_text in flags:
        add_flag(parser, flag, env_name(ENV_PREFIX, flag), default, help_text)
    add_log_flags(parser, ENV_PREFIX)
    add_list_flag(parser, "--dns-resolver", env_name(ENV_PREFIX, "--dns-resolver"),
                  "IP[:PORT] of a DNS server for load-balancer hostnames (port 53 by default); none: /etc/resolv.conf")
    return parser


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Parse and validate; raises ConfigError naming the flag and the value."""
    args = build_parser().parse_args(argv)
    health_host, health_port = parse_host_port("--health-listen", args.health_listen)
    try:
        leader_election = env_bool(args.leader_election)
    except ValueError as error:
        raise ConfigError("--leader-election", args.leader_election, str(error)) from None
    try:
        resolve_lb_hostnames = env_bool(args.resolve_lb_hostnames)
    except ValueError as error:
        raise ConfigError("--resolve-lb-hostnames", args.resolve_lb_hostnames, str(error)) from None
    dns_resolvers = tuple(_dns_server(value) for value in list_flag_values(args, "--dns-resolver"))
    durations = {flag: parse_duration(flag, getattr(args, flag[2:].replace("-", "_")))
                 for flag in ("--member-grace-period", "--lease-duration", "--renew-deadline", "--retry-period",
                              "--prober-grace-period")}
    for flag in ("--lease-duration", "--renew-deadline", "--retry-period", "--prober-grace-period"):
        if durations[flag] <= 0:
            raise ConfigError(flag, getattr(args, flag[2:].replace("-", "_")), "must be greater than zero")
    if durations["--renew-deadline"] >= durations["--lease-duration"]:
        raise ConfigError("--renew-deadline", args.renew_deadline, "must be shorter than --lease-duration")
    if durations["--retry-period"] >= durations["--renew-deadline"]:
        raise ConfigError("--retry-period", args.retry_period, "must be shorter than --renew-deadline")
    for flag, value in (("--leader-election-namespace", args.leader_election_namespace),
                        ("--lease-name", args.lease_name), ("--domain-namespace", args.domain_namespace),
                        ("--prober-lease-namespace", args.prober_lease_namespace),
                        ("--openshift-router-namespace", args.openshift_router_namespace)):
        require_dns_label(flag, value)
    if args.namespace:
        require_dns_label("--namespace", args.namespace)
    if args.self_service_domain and not is_dns_label(args.self_service_domain):
        raise ConfigError("--self-service-domain", args.self_service_domain,
                          "expected the name of a Domain as an intent's domainRef takes it: a DNS label (lower-case "
                          "letters, digits and '-', at most 63), e.g. fleet")
    if args.kubeconfig and not os.path.isfile(args.kubeconfig):
        raise ConfigError("--kubeconfig", args.kubeconfig, "no such file")
    workers = parse_int_in_range("--workers", args.workers, 1, 64)
    log_level, log_format = parse_log_flags(args)
    return Settings(
        kubeconfig=args.kubeconfig, member_grace_period=durations["--member-grace-period"],
        health_host=health_host, health_port=health_port, leader_election=leader_election,
        leader_election_namespace=args.leader_election_namespace, lease_name=args.lease_name,
        lease_duration=durations["--lease-duration"], renew_deadline=durations["--renew-deadline"],
        retry_period=durations["--retry-period"],
        identity=args.identity or f"{socket.gethostname()}-{os.getpid()}",
        namespace=args.namespace, domain_namespace=args.domain_namespace, workers=workers,
        log_level=log_level, log_format=log_format,
        resolve_lb_hostnames=resolve_lb_hostnames, dns_resolvers=dns_resolvers,
        prober_grace_period=durations["--prober-grace-period"], prober_lease_namespace=args.prober_lease_namespace,
        self_service_domain=args.self_service_domain,
        openshift_router_namespace=args.openshift_router_namespace,
    )


def _dns_server(value: str) -> tuple[str, int]:
    """``192.0.2.53``, ``192.0.2.53:5353``, ``2001:db8::53`` or ``[2001:db8::53]:5353``: an IP (dnspython
    queries servers by address), port 53 unless given."""
    try:
        return str(ipaddress.ip_address(value)), 53
    except ValueError:
        pass
    try:
        host, port = parse_host_port("--dns-resolver", value)
        return str(ipaddress.ip_address(host)), port
    except (ConfigError, ValueError):
        raise ConfigError("--dns-resolver", value,
                          "expected IP or IP:PORT of a DNS server, e.g. 10.96.0.10 or 127.0.0.1:5353") from None
