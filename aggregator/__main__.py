"""``python -m aggregator`` / ``fleetdns-aggregator``: wire configuration to objects, run until SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from aggregator.controller.engine import Engine
from aggregator.metrics import NAMESPACE, AggregatorMetrics
from aggregator.settings import Settings, parse_settings
from aggregator.sources import build_sources
from aggregator.sources.lb_hostnames import HostnameResolver, dns_query
from fleetdns.config import exit_on_config_error
from fleetdns.gcpauses import watch_gc_pauses
from fleetdns.kubeapi import KubeClient, load_host_client
from fleetdns.leader import LeaseElector
from fleetdns.logs import configure_logging
from fleetdns.probes import BackgroundServer, probe_app

logger = logging.getLogger("aggregator")
START_SYNC_TIMEOUT = 90.0  # engine.ready() itself stops waiting for busy members after 60 s


def run(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    configure_logging(settings.log_level, settings.log_format)
    return serve(settings, load_host_client(settings.kubeconfig))


def serve(settings: Settings, host: KubeClient) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    metrics = AggregatorMetrics()
    watch_gc_pauses(metrics.registry, NAMESPACE)  # once per process: the collector is the process's
    hostnames = hostname_resolver(settings, metrics)
    sources = build_sources(hostnames, openshift_router_namespace=settings.openshift_router_namespace,
                            namespace=settings.namespace)
    engine = Engine(settings, host, metrics, settings.identity, sources, hostnames).start()
    probes = BackgroundServer(probe_app(engine.ready, metrics.registry), settings.health_host,
                              settings.health_port, name="probes").start()
    logger.info("aggregator started", extra={"identity": settings.identity, "health_port": probes.port,
                                             "leader_election": settings.leader_election,
                                             "namespace": settings.namespace or "(all)"})
    elector = None
    _wait_ready(engine, stop)
    if not stop.is_set():
        if settings.leader_election:
            elector = LeaseElector(host, settings.leader_election_namespace, settings.lease_name, settings.identity,
                                   settings.lease_duration, settings.renew_deadline, settings.retry_period,
                                   engine.set_leading)
            engine.lease_fresh = elector.holds_fresh_lease
            elector.start()
        else:
            engine.set_leading(True)
    stop.wait()
    logger.info("shutting down")
    engine.stop()  # finishes in-flight reconciles while the Lease is still ours, then stops writing
    if elector is not None:
        elector.stop()
    probes.stop()
    logger.info("stopped")
    return 0


def hostname_resolver(settings: Settings, metrics: AggregatorMetrics) -> HostnameResolver | None:
    """The load-balancer hostname resolver, or None with --resolve-lb-hostnames=false."""
    if not settings.resolve_lb_hostnames:
        return None
    return HostnameResolver(dns_query(settings.dns_resolvers), observe=metrics.observe_lb_hostname_lookup)


def _wait_ready(engine: Engine, stop: threading.Event) -> None:
    """Writing before the member caches are filled would publish a partial answer; wait (bounded)."""
    for _ in range(int(START_SYNC_TIMEOUT / 0.05)):
        if stop.is_set() or engine.ready()[0]:
            return
        stop.wait(0.05)
    logger.warning("caches not synced in time; starting anyway", extra={"reason": engine.ready()[1]})


def main() -> None:
    exit_on_config_error(lambda: run(sys.argv[1:]))


if __name__ == "__main__":
    main()
