"""``python -m webhook_provider`` / ``fleetdns-webhook``: flags → objects → two HTTP servers until SIGTERM."""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Callable

from fleetdns.config import ConfigError, exit_on_config_error
from fleetdns.kubeapi import load_host_client
from fleetdns.logs import configure_logging
from fleetdns.probes import BackgroundServer, probe_app
from fleetdns.skydns.mirror import DirectSource, EntrySource, PrefixMirror
from fleetdns.skydns.store import EtcdStore, EtcdUnavailableError
from webhook_provider.api import create_api
from webhook_provider.host_lag import HostLag, LagTracker, stored_endpoints
from webhook_provider.host_relay import HostRelay
from webhook_provider.host_views import HostViews
from webhook_provider.metrics import HostMetrics, Metrics
from webhook_provider.provider import Provider
from webhook_provider.settings import HostSettings, Settings, load_settings

log = logging.getLogger("webhook_provider")

SHUTDOWN_GRACE_SECONDS = 10.0
API_THREADS = 4


def run(argv: list[str] | None = None) -> int:
    settings = load_settings(argv)
    # GET /records allocates ~10 objects per record; default GC thresholds rescan them hundreds of times
    # (measured: 2x slower for 50,000 records). Nothing here builds reference cycles worth chasing sooner.
    gc.set_threshold(100_000, 50, 100)
    configure_logging(settings.log_level, settings.log_format)
    metrics = Metrics.create()
    store = EtcdStore(settings.etcd, metrics.store)
    source: EntrySource = (PrefixMirror(store, settings.prefix, metrics.store, settings.mirror_wait,
                                        settings.mirror_verify_interval)
                           if settings.read_mirror else DirectSource(store, settings.prefix, metrics.store))
    provider = Provider(store, settings.prefix, settings.domain_filter, metrics, settings.etcd.max_txn_ops,
                        settings.etcd.max_txn_bytes, source)
    api = _bind("--listen", settings.listen, lambda host, port: BackgroundServer(
        create_api(provider, metrics, settings.max_request_bytes), host, port, threads=API_THREADS, name="api"))
    probes = _bind("--health-listen", settings.health_listen, lambda host, port: BackgroundServer(
        probe_app(_readiness(store, settings.prefix), metrics.registry), host, port, threads=2, name="probes"))
    relay, lag, views = _host_watch(settings.host, provider, store, metrics) if settings.host else (None, None, None)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    api.start()
    probes.start()
    threading.Thread(target=provider.repair_name_keys, args=(stop,), name="name-key-repair", daemon=True).start()
    log.info("webhook provider listening", extra=_describe(settings, api.port, probes.port, relay))
    stop.wait()
    log.info("shutting down: finishing requests in progress")
    if lag is not None:
        lag.stop()
    if views is not None:
        views.stop()
    if relay is not None:
        relay.stop()
    api.stop(grace=SHUTDOWN_GRACE_SECONDS)
    probes.stop()
    source.close()
    store.close()
    log.info("stopped")
    return 0


def _bind(flag: str, address: tuple[str, int],
          make: Callable[[str, int], BackgroundServer]) -> BackgroundServer:
    try:
        return make(*address)
    except OSError as error:
        raise ConfigError(flag, f"{address[0]}:{address[1]}", f"cannot listen: {error.strerror or error}") from None


def _host_watch(host: HostSettings, provider: Provider, store: EtcdStore,
                metrics: Metrics) -> tuple[HostRelay | None, HostLag, HostViews | None]:
    """The relay of ExternalDNS's host connection (when listening), the lag check (docs/design/host-outage.md) and
    the host's DNSViews kept in etcd (docs/design/views.md §7)."""
    client = load_host_client("" if host.kubeconfig == "in-cluster" else host.kubeconfig)
    host_metrics = HostMetrics.create(metrics.registry, host.region)
    relay = None
    if host.relay_listen is not None:
        listen = host.relay_listen
        relay = _bind_relay(listen, lambda: HostRelay(client, listen, host.relay_hold, host_metrics)).start()
    tracker = LagTracker(provider.domain_filter, stored_endpoints(provider.listing.encoded_name), host_metrics,
                         host.repair_after, relay.reset_watches if relay is not None else None,
                         refresh=provider.records)
    lag = HostLag(client, host.namespace, host.label_filter, tracker).start()
    views = HostViews(client, store, host_metrics).start() if host.dns_views else None
    return relay, lag, views


def _bind_relay(address: tuple[str, int], make: Callable[[], HostRelay]) -> HostRelay:
    try:
        return make()
    except OSError as error:
        raise ConfigError("--host-relay-listen", f"{address[0]}:{address[1]}",
                          f"cannot listen: {error.strerror or error}") from None


def _readiness(store: EtcdStore, prefix: str):  # noqa: ANN202 - returns fleetdns.probes.ReadyCheck
    def ready() -> tuple[bool, str]:
        try:
            store.ping(prefix)
        except EtcdUnavailableError as error:
            return False, str(error)
        return True, "etcd answers"

    return ready


def _describe(settings: Settings, api_port: int, probe_port: int, relay: HostRelay | None) -> dict[str, object]:
    """Start-up facts for the log; credentials are deliberately absent."""
    return {
        "listen": f"{settings.listen[0]}:{api_port}",
        "health_listen": f"{settings.health_listen[0]}:{probe_port}",
        "etcd": [endpoint.url for endpoint in settings.etcd.endpoints],
        "etcd_auth": bool(settings.etcd.username),
        "prefix": settings.prefix,
        "domain_filter": settings.domain_filter.to_json(),
        "max_txn_ops": settings.etcd.max_txn_ops,
        "max_txn_bytes": settings.etcd.max_txn_bytes,
        "read_mirror": settings.read_mirror,
        "host_relay": f"{settings.host.relay_listen[0]}:{relay.port}"
                      if settings.host and settings.host.relay_listen and relay else None,
        "host_lag_check": settings.host is not None,
        "host_dns_views": settings.host is not None and settings.host.dns_views,
    }


def main() -> None:
    exit_on_config_error(run)


if __name__ == "__main__":
    main()
