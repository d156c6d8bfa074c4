"""``python -m serving.zonefiles`` / ``fleetdns-zonefiles``: the zone files and the weight file that CoreDNS
serves, kept in step with the region's etcd.

A sidecar of each CoreDNS replica (the files must be on that replica's disk). One ``PrefixMirror`` (the webhook's
too, ``fleetdns/skydns/``) feeds every file: ``db.<zone>`` per zone for the ``file`` plugin (``zonefile.py``) and the
``loadbalance weighted`` file (``weightfile.py``). Each pass applies the names that changed since the last one, so
one changed name re-renders that name only.

Views (docs/design/views.md §4): ``<view>/db.<zone>`` for each ``--views`` entry holds the default records, where
every name that has records under the view's prefix (``/skydns-<view>/``) takes those instead; ``db.<zone>`` is
the same overlay with ``--default-view`` (the region's own view). Records are rendered per source (the default
prefix, each view) and name, so a change under one view re-renders that name for that view only.

Rules: files are rendered only from a warm mirror (a read that cannot reach etcd keeps them as they are, so a cold
cache never empties a zone); each is replaced by rename, so CoreDNS never reads half a file; only when its content
changes (a restart with unchanged data writes nothing), and then with a new SOA serial; the first change after a
quiet spell is written at once, later ones at most once per ``--min-write-interval``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from fleetdns.config import (
    ConfigError,
    add_flag,
    exit_on_config_error,
    parse_duration,
    parse_host_port,
    parse_positive_duration,
)
from fleetdns.dnsname import InvalidDNSNameError, normalize_name
from fleetdns.dnsview import VIEWS_KEY_PREFIX, DNSViewError, check_served_view_name
from fleetdns.logs import add_log_flags, configure_logging, parse_log_flags
from fleetdns.probes import BackgroundServer, probe_app
from fleetdns.skydns.metrics import StoreMetrics
from fleetdns.skydns.mirror import EntrySource, PrefixMirror
from fleetdns.skydns.records import StoredEntry
from fleetdns.skydns.settings import EtcdSettings, add_etcd_flags, etcd_connection, parse_prefix
from fleetdns.skydns.store import EtcdStore, EtcdUnavailableError
from serving import weightfile, zonefile
from serving.corefile import parse_bind
from serving.live_corefile import CorefileMetrics, LiveCorefile, StoredViews

log = logging.getLogger("webhook_provider.zonefiles")

_RENDER_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


# --- the files on disk ------------------------------------------------------------------------------------------

class ReplacedFile:
    """A file CoreDNS reads, replaced whole (a temporary file beside it, then rename) and only when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.content: str | None = path.read_text()
        except (FileNotFoundError, UnicodeDecodeError):
            self.content = None

    def replace(self, content: str) -> bool:
        """Write ``content`` unless the file already holds it; True if it was written. Raises OSError."""
        if content == self.content:
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
        self.content = content
        return True


class ZoneFile:
    """``db.<zone>``: a new SOA serial on every content change, the existing one kept while nothing changes.

    ``view``: the view whose records replace the default ones, name by name ("" none); ``label`` names the file in
    metrics and logs (``db.<zone>``, ``<view>/db.<zone>``)."""

    def __init__(self, zone: str, path: Path, view: str = "", label: str | None = None) -> None:
        self.zone = zone
        self.view = view
        self.label = label or path.name
        self.file = ReplacedFile(path)
        self.serial = zonefile.soa_serial(self.file.content or "")  # a restart continues from the file's serial

    @property
    def path(self) -> Path:
        return self.file.path

    def update(self, names: Mapping[str, str]) -> bool:
        """Render ``names`` (name -> its lines); True if the file was written. Raises OSError (serial kept)."""
        body = zonefile.zone_body(names)
        nameservers = zonefile.apex_nameservers(self.zone, names)
        if self.serial is not None and \
                self.file.content == zonefile.zone_header(self.zone, self.serial, nameservers) + body:
            return False
        serial = zonefile.next_serial(self.serial)
        self.file.replace(zonefile.zone_header(self.zone, serial, nameservers) + body)
        self.serial = serial
        return True


# --- the loop ---------------------------------------------------------------------------------------------------

SYNC_STAGES = ("etcd", "write")  # fleetdns_zonefiles_sync_errors_total{stage}: where a pass failed


@dataclass(frozen=True)
class WriterMetrics:
    records: Gauge
    weighted_names: Gauge
    writes: Counter
    dropped: Counter
    invalid_weights: Counter
    errors: Counter
    last_write: Gauge
    render: Histogram
    names_render: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> WriterMetrics:
        metrics = cls(
            records=Gauge("fleetdns_zonefiles_records", "records in the zone file (db.<zone> or <view>/db.<zone>)",
                          ["file"], registry=registry),
            weighted_names=Gauge("fleetdns_zonefiles_weighted_names", "names with weights in the weight file",
                                 registry=registry),
            writes=Counter("fleetdns_zonefiles_writes_total", "times a file was replaced (its content changed)",
                           ["file"], registry=registry),
            dropped=Counter("fleetdns_zonefiles_dropped_records_total",
                            "stored records left out of the zone files, by reason (counted each time their name is "
                            "rendered)", ["reason"], registry=registry),
            invalid_weights=Counter("fleetdns_zonefiles_invalid_weights_total",
                                    "stored webhook/weights values that could not be parsed (those names get no "
                                    "weights)", registry=registry),
            errors=Counter("fleetdns_zonefiles_sync_errors_total",
                           "passes that left the files as they were: stage etcd (the prefix could not be read) or "
                           "write", ["stage"], registry=registry),
            last_write=Gauge("fleetdns_zonefiles_last_write_timestamp_seconds", "Unix time of the last replacement",
                             ["file"], registry=registry),
            render=Histogram("fleetdns_zonefiles_render_seconds",
                             "assembling a file from its names' text, comparing and writing it", ["file"],
                             buckets=_RENDER_BUCKETS, registry=registry),
            names_render=Histogram("fleetdns_zonefiles_names_render_seconds",
                                   "rendering the names that changed in one pass (every name after a listing)",
                                   buckets=_RENDER_BUCKETS, registry=registry),
        )
        for stage in SYNC_STAGES:  # at 0 from the start: the "cannot read etcd" alert rates this series
            metrics.errors.labels(stage)
        return metrics


def sidecar_metrics() -> tuple[StoreMetrics, WriterMetrics]:
    """The etcd store's and the mirror's metrics under ``fleetdns_zonefiles_``, and the writer's, on one registry."""
    shared = StoreMetrics.create("fleetdns_zonefiles")
    return shared, WriterMetrics.create(shared.registry)


Rendered = tuple[str, int]  # one name's zone-file lines and how many records they hold


class ZoneFilesWriter:
    """Applies the mirror's changed names to per-name text and weights, and rewrites the files that differ.

    Text is kept per source (the default prefix "", each view a file overlays) and name; a file's content for a
    name is its view's text when the view has records at the name, else the default's."""

    def __init__(self, source: EntrySource, zone_files: Iterable[ZoneFile], weight_file: ReplacedFile,
                 metrics: WriterMetrics, min_write_interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.zone_files = list(zone_files)
        self.weight_file = weight_file
        self.metrics = metrics
        self.min_write_interval = min_write_interval
        self.clock = clock
        self._texts: dict[str, dict[str, dict[str, Rendered]]] = {}  # source -> zone -> name -> rendered
        self._signatures: dict[str, dict[str, tuple[int, int]]] = {}  # source -> name -> (keys, newest revision)
        self._totals: dict[Path, int] = {}  # records per zone file
        self._weights: dict[str, weightfile.NameWeights] = {}
        self._index_files()
        self._reset()
        self._dirty: set[Path] = set()  # files whose content may differ from what is on disk
        self._last_write: dict[Path, float] = {}
        self._rendered: set[Path] = set()  # rendered from a warm mirror at least once
        self._resend = False  # the file set changed: the next pass must render every name (a full change)
        self._synced = False
        self._last_error = "not synced yet"

    def _index_files(self) -> None:
        self._zones = list(dict.fromkeys(zone_file.zone for zone_file in self.zone_files))
        self._files_of = {zone: [f for f in self.zone_files if f.zone == zone] for zone in self._zones}
        self._sources = ("", *sorted({f.view for f in self.zone_files if f.view}))  # "" = the default prefix

    def set_files(self, zone_files: Iterable[ZoneFile]) -> None:
        """Keep these zone files from now on (views added or removed): a file kept keeps its state (serial, last
        write); every name is rendered again on the next pass, from the mirror's copy (no listing of etcd). A removed
        file is left on disk as it is (no block reads it once the Corefile without it is loaded)."""
        existing = {zone_file.path: zone_file for zone_file in self.zone_files}
        self.zone_files = [existing.get(zone_file.path, zone_file) for zone_file in zone_files]
        kept = {zone_file.path for zone_file in self.zone_files}
        self._rendered = {path for path in self._rendered if path in kept or path == self.weight_file.path}
        self._index_files()
        self._resend = True
        self.source.resend_all()

    def rendered(self, path: Path) -> bool:
        """Whether ``path`` (one of the files) was written, or found identical, from a warm mirror."""
        return path in self._rendered

    @property
    def paths(self) -> list[Path]:
        return [*(zone_file.path for zone_file in self.zone_files), self.weight_file.path]

    def _reset(self) -> None:
        self._texts = {source: {zone: {} for zone in self._zones} for source in self._sources}
        self._signatures = {source: {} for source in self._sources}
        self._totals = {zone_file.path: 0 for zone_file in self.zone_files}
        self._weights = {}

    def sync(self) -> list[Path]:
        """One pass; the files written. Raises EtcdUnavailableError (files untouched) and OSError."""
        changes = self.source.changes()  # lists the prefix first when cold or broken; never answers from stale data
        if self._resend and not changes.full:  # never assemble a new file from part of the names
            self.source.resend_all()
            return []
        if changes.full:
            self._reset()
            self._dirty = set(self.paths)
            self._resend = False
        if changes.names:
            started = time.perf_counter()
            for name, entries in changes.names.items():
                self._apply(name, entries)
            self.metrics.names_render.observe(time.perf_counter() - started)
        written = self._flush(changes.revision)
        self._synced, self._last_error = True, ""
        return written

    def _apply(self, name: str, entries: tuple[StoredEntry, ...]) -> None:
        zone = zonefile.zone_of(name, self._zones)
        by_source: dict[str, list[StoredEntry]] = {}
        for entry in entries:
            if entry.prefix and entry.view in self._signatures:  # a view no file overlays is not read
                by_source.setdefault(entry.view, []).append(entry)
        files = self._files_of[zone] if zone is not None else []
        before = [self._content(zone_file, name) for zone_file in files]
        for source in self._sources:
            mine = by_source.get(source, [])
            signature = (len(mine), max((entry.mod_revision for entry in mine), default=0))
            if self._signatures[source].get(name, (0, 0)) != signature:  # else unchanged: nothing to render
                self._render(source, zone, name, mine)
                if mine:
                    self._signatures[source][name] = signature
                else:
                    self._signatures[source].pop(name, None)
        for zone_file, old in zip(files, before, strict=True):
            new = self._content(zone_file, name)
            if new != old:
                self._totals[zone_file.path] += new[1] - old[1]
                self._dirty.add(zone_file.path)
        served = [entry for source_entries in by_source.values() for entry in source_entries]
        weights, invalid = weightfile.name_weights(sorted(served, key=lambda entry: entry.key))
        for bad in invalid:
            self.metrics.invalid_weights.inc()
            log.warning("stored webhook/weights cannot be used; the name gets no weights", extra={
                "dnsName": bad.name, "value": bad.value, "reason": bad.reason})
        if self._weights.get(name, {}) != weights:
            if weights:
                self._weights[name] = weights
            else:
                self._weights.pop(name, None)
            self._dirty.add(self.weight_file.path)

    def _render(self, source: str, zone: str | None, name: str, entries: list[StoredEntry]) -> None:
        """The name's text from ``source``'s records; a source without records at the name has no text (a view
        then leaves the name to the default records)."""
        if zone is not None:
            self._texts[source][zone].pop(name, None)
        if not any(entry.records for entry in entries):
            return
        rendered = zonefile.render_name(zone, name, entries)
        for dropped in rendered.dropped:
            self.metrics.dropped.labels(dropped.reason.value).inc()
            log.warning("record left out of the zone file", extra={
                "dnsName": dropped.name, "recordType": dropped.record_type, "target": dropped.target,
                "view": source, "reason": dropped.reason.value, "detail": dropped.detail})
        if zone is not None and (source or rendered.text):
            self._texts[source][zone][name] = (rendered.text, rendered.records)

    def _content(self, zone_file: ZoneFile, name: str) -> Rendered:
        """What ``zone_file`` holds for ``name``: its view's records when the view has some there, else the default."""
        if zone_file.view:
            overlay = self._texts[zone_file.view][zone_file.zone].get(name)
            if overlay is not None:
                return overlay
        return self._texts[""][zone_file.zone].get(name, ("", 0))

    def _names(self, zone_file: ZoneFile) -> dict[str, str]:
        """Every name's lines in ``zone_file``: the default texts, overlaid by its view's."""
        names = {name: text for name, (text, _) in self._texts[""][zone_file.zone].items()}
        if zone_file.view:
            names.update((name, text) for name, (text, _) in self._texts[zone_file.view][zone_file.zone].items())
        return names

    def _flush(self, revision: int) -> list[Path]:
        """Rewrite the dirty files whose last write is at least ``min_write_interval`` ago; the others wait."""
        now = self.clock()
        written = []
        for zone_file in self.zone_files:
            if self._due(zone_file.path, now) and self._write(zone_file, partial(self._update, zone_file), now):
                written.append(zone_file.path)
                log.info("zone file replaced", extra={
                    "path": str(zone_file.path), "zone": zone_file.zone, "view": zone_file.view,
                    "serial": zone_file.serial, "records": self._totals.get(zone_file.path, 0),
                    "revision": revision})
            self.metrics.records.labels(zone_file.label).set(self._totals.get(zone_file.path, 0))
        if self._due(self.weight_file.path, now):
            content = weightfile.render(self._weights)
            if self._write(self.weight_file, partial(self.weight_file.replace, content), now):
                written.append(self.weight_file.path)
                log.info("weight file replaced", extra={"path": str(self.weight_file.path),
                                                        "names": len(self._weights), "revision": revision})
        self.metrics.weighted_names.set(len(self._weights))
        return written

    def _update(self, zone_file: ZoneFile) -> bool:
        return zone_file.update(self._names(zone_file))

    def _due(self, path: Path, now: float) -> bool:
        return path in self._dirty and now - self._last_write.get(path, -math.inf) >= self.min_write_interval

    def _write(self, file: ZoneFile | ReplacedFile, update: Callable[[], bool], now: float) -> bool:
        path = file.path
        label = file.label if isinstance(file, ZoneFile) else path.name
        started = time.perf_counter()
        written = update()  # OSError: the file stays dirty and is retried on the next pass
        self.metrics.render.labels(label).observe(time.perf_counter() - started)
        self._dirty.discard(path)
        self._rendered.add(path)
        if written:
            self._last_write[path] = now
            self.metrics.writes.labels(label).inc()
            self.metrics.last_write.labels(label).set(time.time())
        return written

    def run(self, stop: threading.Event, interval: float, sync: Callable[[], object] | None = None) -> None:
        """Sync every ``interval`` until ``stop`` (``sync``: a pass that wraps this writer's, e.g. the live views');
        a failed pass keeps the files and is retried."""
        while not stop.is_set():
            try:
                (sync or self.sync)()
            except EtcdUnavailableError as error:
                self._note_failure("etcd", error)
            except OSError as error:
                self._note_failure("write", error)
            stop.wait(interval)

    def _note_failure(self, stage: str, error: Exception) -> None:
        self.metrics.errors.labels(stage).inc()
        if self._synced or self._last_error != str(error):
            log.warning("files left as they are: sync failed", extra={"stage": stage, "error": str(error)})
        self._synced, self._last_error = False, str(error)

    def ready(self) -> tuple[bool, str]:
        """Ready once every file was rendered from a live mirror and while the last pass succeeded."""
        missing = [str(path) for path in self.paths if path not in self._rendered]
        if self._synced and not missing:
            counts = ", ".join(f"{f.label}: {self._totals.get(f.path, 0)} records" for f in self.zone_files)
            return True, f"files rendered from a live etcd mirror ({counts}; {len(self._weights)} weighted names)"
        if not self._synced:
            return False, f"not rendered from etcd: {self._last_error}"
        return False, f"not rendered yet: {', '.join(missing)}"


# --- configuration and wiring -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    etcd: EtcdSettings
    prefix: str
    zones: tuple[str, ...]
    zone_dir: Path
    weight_file: Path
    interval: float
    min_write_interval: float
    mirror_verify_interval: float
    health_listen: tuple[str, int]
    log_level: str
    log_format: str
    views: tuple[str, ...] = ()
    default_view: str = ""
    corefile: Path | None = None  # render the Corefile here from the DNSViews in etcd (views then follow etcd)
    geoip_db: str = ""  # the MaxMind City database as CoreDNS reads it (the Corefile's geoip blocks)
    views_prefix: str = VIEWS_KEY_PREFIX
    corefile_append: str = ""  # server blocks added to every rendered Corefile (another listener, another zone)
    dns_bind: tuple[str, ...] = ()  # the addresses the rendered Corefile's blocks listen on (none: every address)

    def zone_path(self, zone: str, view: str = "") -> Path:
        """``<zone-dir>/db.<zone>``, or ``<zone-dir>/<view>/db.<zone>`` for one of ``--views``."""
        return (self.zone_dir / view if view else self.zone_dir) / zonefile.zone_file_name(zone)

    def zone_files(self, views: Iterable[str] | None = None) -> list[ZoneFile]:
        """Per zone the default file (overlaid by ``--default-view``), then one per view (default: ``--views``)."""
        views = self.views if views is None else tuple(views)
        files = []
        for zone in self.zones:
            files.append(ZoneFile(zone, self.zone_path(zone), self.default_view))
            files.extend(ZoneFile(zone, self.zone_path(zone, view), view, f"{view}/{zonefile.zone_file_name(zone)}")
                         for view in views)
        return files


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleetdns-zonefiles", description=__doc__.splitlines()[0])
    add_flag(parser, "--zone", "ZONEFILES_ZONE", "", "zones to render, comma-separated (CoreDNS's FLEETDNS_ZONE)")
    add_flag(parser, "--zone-dir", "ZONEFILES_ZONE_DIR", "", "directory of the zone files (db.<zone> each)")
    add_flag(parser, "--weight-file", "ZONEFILES_WEIGHT_FILE", "",
             "the weight file CoreDNS's `loadbalance weighted` reads")
    add_flag(parser, "--views", "ZONEFILES_VIEWS", "",
             "views the Corefile has a block for, comma-separated (fleetdns-corefile --print-views): each gets "
             "<zone-dir>/<view>/db.<zone>")
    add_flag(parser, "--default-view", "ZONEFILES_DEFAULT_VIEW", "",
             "the region's own view (region-<region>): its records overlay <zone-dir>/db.<zone>, the catch-all's file")
    add_flag(parser, "--corefile", "ZONEFILES_COREFILE", "",
             "render CoreDNS's Corefile here from the DNSViews the webhook keeps in etcd (--views-prefix), a block per "
             "served view, so views follow the host live (CoreDNS's reload plugin loads it); excludes --views")
    add_flag(parser, "--views-prefix", "ZONEFILES_VIEWS_PREFIX", VIEWS_KEY_PREFIX,
             "etcd prefix of the DNSViews (the webhook's; one key per view, its spec as JSON)")
    add_flag(parser, "--corefile-append", "ZONEFILES_COREFILE_APPEND", "",
             "a file of server blocks added to every Corefile rendered (read at start): another listener or zone "
             "beside the views' blocks")
    add_flag(parser, "--dns-bind", "ZONEFILES_DNS_BIND", "",
             "IP addresses CoreDNS listens on, comma-separated: every block of the rendered Corefile binds them (the "
             "bind plugin; needs --corefile); default: every address")
    add_flag(parser, "--geoip-db", "ZONEFILES_GEOIP_DB", "",
             "the MaxMind City database as CoreDNS reads it, for views by countries or continents (without it those "
             "views get no block); a literal path must be readable here too")
    add_etcd_flags(parser)
    add_flag(parser, "--prefix", "ZONEFILES_PREFIX", "/skydns/",
             "etcd key prefix (the webhook's --prefix); a view's records are under <prefix without />-<view>/")
    add_flag(parser, "--interval", "ZONEFILES_INTERVAL", "100ms", "how often changes in etcd are looked for")
    add_flag(parser, "--min-write-interval", "ZONEFILES_MIN_WRITE_INTERVAL", "100ms",
             "least time between two writes of one file: the first change after a quiet spell is written at once, "
             "later ones are coalesced (each write costs CoreDNS a parse of the whole zone)")
    add_flag(parser, "--mirror-verify-interval", "ZONEFILES_MIRROR_VERIFY_INTERVAL", "30s",
             "how often the mirror compares itself with etcd (a watch that stalls without ending is replaced)")
    add_flag(parser, "--health-listen", "ZONEFILES_HEALTH_LISTEN", "0.0.0.0:8082",
             "address of /healthz /readyz /metrics")
    add_log_flags(parser)
    return parser


def load_settings(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Parse and validate everything; raises ConfigError naming the flag and the value."""
    args = build_parser().parse_args(argv)
    env = os.environ if environ is None else environ
    zones = _zones(args.zone)
    zone_dir = _zone_dir(args.zone_dir)
    weight_file = _weight_file(args.weight_file)
    if weight_file.resolve() in {(zone_dir / zonefile.zone_file_name(zone)).resolve() for zone in zones}:
        raise ConfigError("--weight-file", args.weight_file, "is one of the zone files; give another path")
    min_write_interval = parse_duration("--min-write-interval", args.min_write_interval)
    log_level, log_format = parse_log_flags(args)
    return Settings(
        etcd=etcd_connection(args, env),
        prefix=parse_prefix(args.prefix),
        zones=zones,
        zone_dir=zone_dir,
        weight_file=weight_file,
        interval=parse_positive_duration("--interval", args.interval),
        min_write_interval=min_write_interval,
        mirror_verify_interval=parse_positive_duration("--mirror-verify-interval", args.mirror_verify_interval),
        health_listen=parse_host_port("--health-listen", args.health_listen),
        log_level=log_level,
        log_format=log_format,
        views=_views(args.views),
        default_view=_default_view(args.default_view),
        corefile=_corefile(args.corefile, args.views, zone_dir),
        geoip_db=_geoip_db(args.geoip_db),
        views_prefix=_views_prefix(args.views_prefix),
        corefile_append=_corefile_append(args.corefile_append, args.corefile),
        dns_bind=_dns_bind(args.dns_bind, args.corefile),
    )


def _dns_bind(value: str, corefile: str) -> tuple[str, ...]:
    addresses = parse_bind("--dns-bind", value)
    if addresses and not corefile.strip():
        raise ConfigError("--dns-bind", value, "needs --corefile (the Corefile whose blocks bind the addresses)")
    return addresses


def _corefile_append(value: str, corefile: str) -> str:
    if not value.strip():
        return ""
    if not corefile.strip():
        raise ConfigError("--corefile-append", value, "needs --corefile (the Corefile it is added to)")
    try:
        text = Path(value.strip()).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError("--corefile-append", value, f"cannot be read: {error}") from None
    return text if text.endswith("\n") or not text else text + "\n"


def _corefile(value: str, views: str, zone_dir: Path) -> Path | None:
    if not value.strip():
        return None
    if views.strip():
        raise ConfigError("--views", views, "give either --views (a Corefile rendered by hand) or --corefile (views "
                          "followed from etcd), not both")
    path = Path(value.strip())
    if path.is_dir() or not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise ConfigError("--corefile", value, "must be a file in an existing writable directory")
    if path.parent.resolve() == zone_dir.resolve() and path.name.startswith("db."):
        raise ConfigError("--corefile", value, "would be taken for a zone file (db.*); give another name")
    return path


def _geoip_db(value: str) -> str:
    path = value.strip()
    if path and "{$" not in path and not os.access(path, os.R_OK):
        raise ConfigError("--geoip-db", value, "does not exist or is not readable (CoreDNS would refuse the Corefile)")
    return path


def _views_prefix(value: str) -> str:
    prefix = value.strip()
    if not prefix.startswith("/") or not prefix.endswith("/") or prefix.startswith("/skydns"):
        raise ConfigError("--views-prefix", value, "must start and end with '/' and lie outside the records' key "
                          "space (e.g. /fleetdns/views/)")
    return prefix


def _views(value: str) -> tuple[str, ...]:
    views: list[str] = []
    for view in (part.strip() for part in value.split(",")):
        if not view:
            continue
        try:
            check_served_view_name(view)
        except DNSViewError as error:
            raise ConfigError("--views", value, str(error)) from None
        if view in views:
            raise ConfigError("--views", value, f"view {view!r} is given twice")
        views.append(view)
    return tuple(views)


def _default_view(value: str) -> str:
    view = value.strip()
    if view:
        try:
            check_served_view_name(view)
        except DNSViewError as error:
            raise ConfigError("--default-view", value, str(error)) from None
    return view


def _view_dirs(settings: Settings) -> None:
    """Create ``<zone-dir>/<view>/`` for each of ``--views``; ConfigError names the one that cannot be made."""
    for view in settings.views:
        path = settings.zone_dir / view
        try:
            path.mkdir(exist_ok=True)
        except OSError as error:
            raise ConfigError("--views", ",".join(settings.views),
                              f"cannot create the directory {path}: {error.strerror or error}") from None


def _zones(value: str) -> tuple[str, ...]:
    zones: list[str] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            zone = normalize_name(item)
        except InvalidDNSNameError as error:
            raise ConfigError("--zone", value, str(error)) from None
        if "*" in zone.split("."):
            raise ConfigError("--zone", value, f"zone {zone!r} is a wildcard")
        if zone in zones:
            raise ConfigError("--zone", value, f"zone {zone!r} is given twice")
        zones.append(zone)
    if not zones:
        raise ConfigError("--zone", value, "at least one zone is required (env ZONEFILES_ZONE)")
    return tuple(zones)


def _zone_dir(value: str) -> Path:
    if not value.strip():
        raise ConfigError("--zone-dir", value, "the directory of the zone files is required (env ZONEFILES_ZONE_DIR)")
    path = Path(value.strip())
    if not path.is_dir() or not os.access(path, os.W_OK):
        raise ConfigError("--zone-dir", value, "does not exist or is not a writable directory")
    return path


def _weight_file(value: str) -> Path:
    if not value.strip():
        raise ConfigError("--weight-file", value, "the path of the weight file is required (env ZONEFILES_WEIGHT_FILE)")
    path = Path(value.strip())
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise ConfigError("--weight-file", value, f"directory {path.parent} does not exist or is not writable")
    if path.is_dir():
        raise ConfigError("--weight-file", value, "is a directory; give the path of a file")
    return path


def run(argv: list[str] | None = None) -> int:
    settings = load_settings(argv)
    configure_logging(settings.log_level, settings.log_format)
    shared, writer_metrics = sidecar_metrics()
    store = EtcdStore(settings.etcd, shared)
    mirror = PrefixMirror(store, settings.prefix, shared, wait_seconds=settings.etcd.timeout,
                          verify_seconds=settings.mirror_verify_interval)
    _view_dirs(settings)
    writer = ZoneFilesWriter(mirror, settings.zone_files(), ReplacedFile(settings.weight_file), writer_metrics,
                             settings.min_write_interval)
    ready, sync, views_mirror = writer.ready, writer.sync, None
    if settings.corefile is not None:  # views follow etcd: each pass reads them, then the files, then the Corefile
        views_mirror = PrefixMirror(store, settings.views_prefix, shared, wait_seconds=settings.etcd.timeout,
                                    verify_seconds=settings.mirror_verify_interval)
        live = LiveCorefile(ReplacedFile(settings.corefile), StoredViews(views_mirror, settings.views_prefix), writer,
                            settings, CorefileMetrics.create(shared.registry))
        ready, sync = _both_ready(writer.ready, live.ready), live.sync
    try:
        probes = BackgroundServer(probe_app(ready, shared.registry), *settings.health_listen, threads=2,
                                  name="probes")
    except OSError as error:
        address = f"{settings.health_listen[0]}:{settings.health_listen[1]}"
        raise ConfigError("--health-listen", address, f"cannot listen: {error.strerror or error}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    probes.start()
    log.info("zone file writer started", extra={
        "zones": list(settings.zones), "zone_dir": str(settings.zone_dir), "weight_file": str(settings.weight_file),
        "views": list(settings.views), "default_view": settings.default_view,
        "corefile": str(settings.corefile) if settings.corefile else None, "views_prefix": settings.views_prefix,
        "geoip_db": settings.geoip_db or None,
        "prefix": settings.prefix, "etcd": [e.url for e in settings.etcd.endpoints],
        "health_listen": f"{settings.health_listen[0]}:{probes.port}", "interval_seconds": settings.interval,
        "min_write_interval_seconds": settings.min_write_interval})
    writer.run(stop, settings.interval, sync)
    probes.stop()
    mirror.close()
    if views_mirror is not None:
        views_mirror.close()
    store.close()
    log.info("stopped")
    return 0


def _both_ready(*checks: Callable[[], tuple[bool, str]]) -> Callable[[], tuple[bool, str]]:
    def ready() -> tuple[bool, str]:
        results = [check() for check in checks]
        return all(ok for ok, _ in results), "; ".join(detail for _, detail in results)

    return ready


def main() -> None:
    exit_on_config_error(run)


if __name__ == "__main__":
    main()
