"""``python -m webhook_provider.weightfile`` / ``fleetdns-weightfile``: CoreDNS's weight file, kept in step with etcd.

A sidecar of each CoreDNS replica (the file must be on that replica's disk). It follows the region's etcd prefix
with the webhook's own ``PrefixMirror`` (decoded by ``skydns.py``), takes the ``webhook/weights`` of every A and
AAAA record (the TXT registry's ownership records carry a copy; they are ignored) and renders the format of
``loadbalance weighted`` (CoreDNS ``plugin/loadbalance/weighted.go``): a name line, then ``IP WEIGHT`` lines.

Rules: the file is rendered only from a warm mirror (a read that cannot reach etcd keeps the file as it is, so a
cold cache never empties it); it is replaced by rename, so CoreDNS never reads half a file; only when its content
changes (a restart with unchanged data writes nothing).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter, Gauge

from fleetdns.config import (
    ConfigError,
    add_flag,
    exit_on_config_error,
    parse_choice,
    parse_host_port,
    parse_positive_duration,
)
from fleetdns.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from fleetdns.probes import BackgroundServer, probe_app
from fleetdns.weights import WEIGHTS_PROPERTY, WeightsFormatError, parse_weights
from webhook_provider.metrics import Metrics
from webhook_provider.mirror import PrefixMirror
from webhook_provider.records import StoredEntry
from webhook_provider.settings import EtcdSettings, etcd_connection, parse_prefix
from webhook_provider.store import EtcdStore, EtcdUnavailableError

log = logging.getLogger("webhook_provider.weightfile")

HEADER = "# CoreDNS loadbalance weighted file, written by fleetdns-weightfile from etcd; do not edit\n"
ADDRESS_TYPES = ("A", "AAAA")
# Metric families of the shared webhook code that mean nothing here (no API, no writes).
_UNUSED_METRICS = ("requests", "request_latency", "records_managed", "changes_applied", "applies",
                   "dropped_endpoints", "rejected_records", "dropped_properties", "name_keys_repaired")

NameWeights = dict[str, int]  # address -> weight (1-255) of one name


# --- what goes in the file (pure) -------------------------------------------------------------------------------

@dataclass(frozen=True)
class InvalidWeights:
    """A stored ``webhook/weights`` value that cannot be used (written before validation, or by someone else)."""

    name: str
    value: str
    reason: str


def name_weights(entries: Iterable[StoredEntry]) -> tuple[NameWeights, list[InvalidWeights]]:
    """The weights of one name's answer: for each of its A/AAAA addresses the weight its record carries.

    Only addresses the name actually answers are kept (a weight for anything else would never be used); when
    two records disagree on an address, the first in key order wins, so every replica renders the same file.
    """
    addresses: set[str] = set()
    weights: NameWeights = {}
    invalid: list[InvalidWeights] = []
    for entry in entries:
        for record in entry.records:
            if record.record_type not in ADDRESS_TYPES:
                continue
            addresses.add(record.target)
            for prop in record.provider_specific:
                if prop.name != WEIGHTS_PROPERTY:
                    continue
                try:
                    parsed = parse_weights(prop.value)
                except WeightsFormatError as error:
                    invalid.append(InvalidWeights(record.name, prop.value, str(error)))
                    continue
                for address, weight in parsed.items():
                    weights.setdefault(str(ipaddress.ip_address(address)), weight)  # targets are canonical too
    return {address: weight for address, weight in weights.items() if address in addresses}, invalid


def render(weights: Mapping[str, NameWeights]) -> str:
    """The weight file: names sorted, each as a fully qualified line, then its ``IP WEIGHT`` lines."""
    lines = [HEADER]
    for name in sorted(weights):
        lines.append(f"{name}.\n")
        for address in sorted(weights[name], key=_address_order):
            lines.append(f"{address} {weights[name][address]}\n")
    return "".join(lines)


def _address_order(address: str) -> tuple[int, int]:
    parsed = ipaddress.ip_address(address)
    return parsed.version, int(parsed)


# --- the file on disk -------------------------------------------------------------------------------------------

class WeightFile:
    """The file CoreDNS reads, replaced whole (write a temporary file beside it, then rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._content: str | None = path.read_text()
        except (FileNotFoundError, UnicodeDecodeError):
            self._content = None

    def replace(self, content: str) -> bool:
        """Write ``content`` unless the file already holds it; True if it was written. Raises OSError."""
        if content == self._content:
            return False
        handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w") as out:
                out.write(content)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o644)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._content = content
        return True


# --- the loop ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WriterMetrics:
    names: Gauge
    writes: Counter
    errors: Counter
    invalid: Counter
    last_write: Gauge

    @classmethod
    def create(cls, shared: Metrics) -> WriterMetrics:
        registry = shared.registry
        return cls(
            names=Gauge("fleetdns_weightfile_names", "names with weights in the file", registry=registry),
            writes=Counter("fleetdns_weightfile_writes_total", "times the file was replaced (its content changed)",
                           registry=registry),
            errors=Counter("fleetdns_weightfile_sync_errors_total",
                           "syncs that left the file as it was: stage etcd (the prefix could not be read) or write",
                           ["stage"], registry=registry),
            invalid=Counter("fleetdns_weightfile_invalid_weights_total",
                            "stored webhook/weights values that could not be parsed (those names get no weights)",
                            registry=registry),
            last_write=Gauge("fleetdns_weightfile_last_write_timestamp_seconds",
                             "Unix time of the last replacement of the file", registry=registry),
        )


class WeightFileWriter:
    """Applies the mirror's changed names to the per-name weights and rewrites the file when they differ."""

    def __init__(self, source: PrefixMirror, file: WeightFile, metrics: WriterMetrics) -> None:
        self.source = source
        self.file = file
        self.metrics = metrics
        self._weights: dict[str, NameWeights] = {}
        self._rendered = False  # the file holds what self._weights says
        self._synced = False
        self._last_error = "not synced yet"

    def sync(self) -> bool:
        """One pass; True if the file was replaced. Raises EtcdUnavailableError (file untouched) and OSError."""
        changes = self.source.changes()  # lists the prefix first when cold or broken; never answers from stale data
        if not changes.full and not changes.names and self._rendered:
            return False  # nothing changed since the last pass (the usual case, ten times a second)
        if changes.full:
            self._weights = {}
        for name, entries in changes.names.items():
            weights, invalid = name_weights(entries)
            for bad in invalid:
                self.metrics.invalid.inc()
                log.warning("stored webhook/weights cannot be used; the name gets no weights", extra={
                    "dnsName": bad.name, "value": bad.value, "reason": bad.reason})
            if weights:
                self._weights[name] = weights
            else:
                self._weights.pop(name, None)
        self._rendered = False
        written = self.file.replace(render(self._weights))  # OSError: retried on the next pass
        self._rendered = True
        self.metrics.names.set(len(self._weights))
        if written:
            self.metrics.writes.inc()
            self.metrics.last_write.set(time.time())
            log.info("weight file replaced", extra={"path": str(self.file.path), "names": len(self._weights),
                                                    "revision": changes.revision})
        return written

    def run(self, stop: threading.Event, interval: float) -> None:
        """Sync every ``interval`` until ``stop``; a failed pass keeps the file and is retried."""
        while not stop.is_set():
            try:
                self.sync()
                self._synced, self._last_error = True, ""
            except EtcdUnavailableError as error:
                self._note_failure("etcd", error)
            except OSError as error:
                self._note_failure("write", error)
            stop.wait(interval)

    def _note_failure(self, stage: str, error: Exception) -> None:
        self.metrics.errors.labels(stage).inc()
        if self._synced or self._last_error != str(error):
            log.warning("weight file left as it is: sync failed", extra={"stage": stage, "error": str(error),
                                                                          "path": str(self.file.path)})
        self._synced, self._last_error = False, str(error)

    def ready(self) -> tuple[bool, str]:
        if self._synced:
            return True, f"{self.file.path} holds {len(self._weights)} names from a live etcd mirror"
        return False, f"{self.file.path} not rendered from etcd: {self._last_error}"


# --- configuration and wiring -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    etcd: EtcdSettings
    prefix: str
    file: Path
    interval: float
    mirror_verify_interval: float
    health_listen: tuple[str, int]
    log_level: str
    log_format: str


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleetdns-weightfile", description=__doc__.splitlines()[0])
    add_flag(parser, "--etcd-endpoints", "ETCD_URLS", "http://127.0.0.1:2379", "etcd client URLs, comma-separated")
    add_flag(parser, "--etcd-timeout", "ETCD_TIMEOUT", "5s", "timeout of each etcd call")
    add_flag(parser, "--prefix", "WEIGHTFILE_PREFIX", "/skydns/", "etcd key prefix (the webhook's --prefix)")
    add_flag(parser, "--file", "WEIGHTFILE_PATH", "", "the weight file CoreDNS's `loadbalance weighted` reads")
    add_flag(parser, "--interval", "WEIGHTFILE_INTERVAL", "100ms", "how often changes in etcd are looked for")
    add_flag(parser, "--mirror-verify-interval", "WEIGHTFILE_MIRROR_VERIFY_INTERVAL", "30s",
             "how often the mirror compares itself with etcd (a watch that stalls without ending is replaced)")
    add_flag(parser, "--health-listen", "WEIGHTFILE_HEALTH_LISTEN", "0.0.0.0:8082",
             "address of /healthz /readyz /metrics")
    add_flag(parser, "--log-level", "LOG_LEVEL", "info", "debug, info, warning or error")
    add_flag(parser, "--log-format", "LOG_FORMAT", "json", "json or text")
    return parser


def load_settings(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Parse and validate everything; raises ConfigError naming the flag and the value."""
    args = build_parser().parse_args(argv)
    env = os.environ if environ is None else environ
    return Settings(
        etcd=etcd_connection(args, env),
        prefix=parse_prefix(args.prefix),
        file=_weight_file(args.file),
        interval=parse_positive_duration("--interval", args.interval),
        mirror_verify_interval=parse_positive_duration("--mirror-verify-interval", args.mirror_verify_interval),
        health_listen=parse_host_port("--health-listen", args.health_listen),
        log_level=parse_choice("--log-level", args.log_level.lower(), LOG_LEVELS),
        log_format=parse_choice("--log-format", args.log_format.lower(), LOG_FORMATS),
    )


def _weight_file(value: str) -> Path:
    if not value.strip():
        raise ConfigError("--file", value, "the path of the weight file is required (env WEIGHTFILE_PATH)")
    path = Path(value.strip())
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise ConfigError("--file", value, f"directory {path.parent} does not exist or is not writable")
    if path.is_dir():
        raise ConfigError("--file", value, "is a directory; give the path of a file")
    return path


def run(argv: list[str] | None = None) -> int:
    settings = load_settings(argv)
    configure_logging(settings.log_level, settings.log_format)
    shared = Metrics.create("fleetdns_weightfile")
    for unused in _UNUSED_METRICS:
        shared.registry.unregister(getattr(shared, unused))
    store = EtcdStore(settings.etcd, shared)
    mirror = PrefixMirror(store, settings.prefix, shared, wait_seconds=settings.etcd.timeout,
                          verify_seconds=settings.mirror_verify_interval)
    writer = WeightFileWriter(mirror, WeightFile(settings.file), WriterMetrics.create(shared))
    try:
        probes = BackgroundServer(probe_app(writer.ready, shared.registry), *settings.health_listen, threads=2,
                                  name="probes")
    except OSError as error:
        address = f"{settings.health_listen[0]}:{settings.health_listen[1]}"
        raise ConfigError("--health-listen", address, f"cannot listen: {error.strerror or error}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    probes.start()
    log.info("weight file writer started", extra={
        "file": str(settings.file), "prefix": settings.prefix, "etcd": [e.url for e in settings.etcd.endpoints],
        "health_listen": f"{settings.health_listen[0]}:{probes.port}", "interval_seconds": settings.interval})
    writer.run(stop, settings.interval)
    probes.stop()
    mirror.close()
    store.close()
    log.info("stopped")
    return 0


def main() -> None:
    exit_on_config_error(run)


if __name__ == "__main__":
    main()
