"""``python -m prober`` / ``fleetdns-prober``: wire configuration to objects, run until SIGTERM."""

from __future__ import annotations

import dataclasses
import logging
import resource
import signal
import sys
import threading

from fleetdns.config import exit_on_config_error
from fleetdns.kubeapi import KubeClient, load_host_client
from fleetdns.logs import configure_logging
from fleetdns.probes import BackgroundServer, probe_app
from prober.engine import Prober
from prober.metrics import ProberMetrics
from prober.settings import Settings, parse_settings

logger = logging.getLogger("prober")
SPARE_DESCRIPTORS = 256  # for the API connections, the health port and logs


def run(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    configure_logging(settings.log_level, settings.log_format)
    return serve(settings, load_host_client(settings.kubeconfig))


def raise_descriptor_limit(wanted: int) -> int:
    """Each check in flight holds a socket: raise the soft limit toward the hard one (as Go does); returns
    how many checks may be open at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted + SPARE_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < target:
        new = target if hard == resource.RLIM_INFINITY else min(target, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return wanted if soft == resource.RLIM_INFINITY else max(1, min(wanted, soft - SPARE_DESCRIPTORS))


def serve(settings: Settings, host: KubeClient) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    allowed = raise_descriptor_limit(settings.max_in_flight)
    if allowed < settings.max_in_flight:
        logger.warning("fewer checks in flight than --max-in-flight: the descriptor limit is lower",
                       extra={"max_in_flight": allowed})
        settings = dataclasses.replace(settings, max_in_flight=allowed)
    metrics = ProberMetrics()
    prober = Prober(settings, host, metrics).start()
    probes = BackgroundServer(probe_app(prober.ready, metrics.registry), settings.health_host,
                              settings.health_port, name="probes").start()
    logger.info("prober started", extra={"region": settings.region, "identity": settings.identity,
                                         "health_port": probes.port, "namespace": settings.namespace or "(all)"})
    code = 0
    while not stop.wait(1.0):
        if not prober.alive():
            logger.error("the check loop ended; exiting so that the replica is restarted")
            code = 1
            break
    logger.info("shutting down")
    prober.stop()
    probes.stop()
    logger.info("stopped")
    return code


def main() -> None:
    exit_on_config_error(lambda: run(sys.argv[1:]))


if __name__ == "__main__":
    main()
