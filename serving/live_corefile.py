"""The Corefile followed live: ``fleetdns-zonefiles --corefile`` renders it from the DNSViews the webhook keeps in
the region's etcd (``/fleetdns/views/<name>``), and CoreDNS's ``reload`` plugin loads it (docs/design/views.md §7).

Each pass: read the views (a mirror of their prefix: one listing, then a watch), choose the served ones (the
aggregator's rules, ``accept_views``; a view the renderer cannot render, e.g. GeoIP without ``--geoip-db``, is left
out, logged and counted), make the zone files follow that set, write them, and only then the Corefile, with a block
for each view whose zone files are on disk. So a new view's block never points at a missing file: until its own
records arrive its file holds the default records (the overlay), never nothing. A removed view's block goes at
once; its clients fall to the next matching block, else the catch-all. Written whole (rename) and only on change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

from fleetdns.dnsview import DNSView, DNSViewError, stored_view
from fleetdns.skydns.mirror import EntrySource
from serving.corefile import CorefileError, Layout, render_corefile, served_views, uses_geoip

if TYPE_CHECKING:
    from serving.zonefiles import ReplacedFile, Settings, ZoneFilesWriter

log = logging.getLogger("serving.corefile")

# why a view has no block (the label of fleetdns_zonefiles_views_left_out)
OVERLAP, INVALID, NO_GEOIP_DB = "overlapping_cidrs", "invalid", "no_geoip_db"


@dataclass(frozen=True)
class CorefileMetrics:
    renders: Counter
    last_render: Gauge
    views_served: Gauge
    views_left_out: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> CorefileMetrics:
        left_out = Gauge("fleetdns_zonefiles_views_left_out", "DNSViews in etcd that have no block, by reason "
                         f"({OVERLAP}, {INVALID}, {NO_GEOIP_DB})", ["reason"], registry=registry)
        for reason in (OVERLAP, INVALID, NO_GEOIP_DB):
            left_out.labels(reason).set(0)
        return cls(
            renders=Counter("fleetdns_zonefiles_corefile_renders_total", "times the Corefile was replaced (the "
                            "served views or their matchers changed)", registry=registry),
            last_render=Gauge("fleetdns_zonefiles_corefile_last_render_timestamp_seconds", "Unix time the Corefile "
                              "was last replaced", registry=registry),
            views_served=Gauge("fleetdns_zonefiles_views_served", "DNSViews with a block in the Corefile written",
                               registry=registry),
            views_left_out=left_out,
        )


def choose_served(views: Iterable[DNSView], geoip_db: str) -> tuple[tuple[DNSView, ...], dict[str, tuple[str, str]]]:
    """The views that get a block, in block order, and {view left out: (reason, why)}."""
    accepted, refused = served_views(views)
    left_out = {name: (OVERLAP, why) for name, why in refused.items()}
    served = []
    for view in accepted:
        if uses_geoip(view) and not geoip_db:
            left_out[view.name] = (NO_GEOIP_DB, "matches by countries or continents and the sidecar has no "
                                                "--geoip-db (the MaxMind City database CoreDNS reads)")
            continue
        served.append(view)
    return tuple(served), left_out


class StoredViews:
    """The DNSViews under the prefix, parsed again only when a key changed."""

    def __init__(self, source: EntrySource, prefix: str) -> None:
        self.source = source
        self.prefix = prefix
        self._fingerprint: tuple[tuple[str, int], ...] | None = None
        self._views: dict[str, DNSView] = {}
        self._invalid: dict[str, str] = {}

    def read(self) -> tuple[dict[str, DNSView], dict[str, str]]:
        """(name -> view, {key: why it cannot be served}); raises EtcdUnavailableError (never a cold answer)."""
        entries = [entry for entry in self.source.entries() if entry.key.startswith(self.prefix)]
        fingerprint = tuple(sorted((entry.key, entry.mod_revision) for entry in entries))
        if fingerprint != self._fingerprint:
            views, invalid = {}, {}
            for entry in entries:
                try:
                    view = stored_view(entry.key, entry.value, self.prefix)
                except DNSViewError as error:
                    invalid[entry.key] = str(error)
                    continue
                views[view.name] = view
            self._fingerprint, self._views, self._invalid = fingerprint, views, invalid
        return dict(self._views), dict(self._invalid)


class LiveCorefile:
    """One pass of the sidecar with ``--corefile``: views, zone files, then the Corefile (see the module rules)."""

    def __init__(self, file: ReplacedFile, views: StoredViews, writer: ZoneFilesWriter, settings: Settings,
                 metrics: CorefileMetrics) -> None:
        self.file = file
        self.views = views
        self.writer = writer
        self.settings = settings
        self.metrics = metrics
        region = settings.default_view.removeprefix("region-") if settings.default_view else ""
        self.layout = Layout(geoip_db=settings.geoip_db, region=region, bind=settings.dns_bind)
        self._files_for: tuple[str, ...] | None = None  # the views the writer keeps files for
        self._in_corefile: tuple[str, ...] | None = None  # the views of the Corefile written (None: none yet)
        self._reported: dict[str, tuple[str, str]] = {}

    def sync(self) -> list[Path]:
        views, invalid = self.views.read()
        served, left_out = choose_served(views.values(), self.settings.geoip_db)
        left_out.update({key.removeprefix(self.views.prefix): (INVALID, why) for key, why in invalid.items()})
        names = tuple(view.name for view in served)
        if names != self._files_for:
            for name in names:
                (self.settings.zone_dir / name).mkdir(exist_ok=True)  # OSError: a failed pass, retried
            self.writer.set_files(self.settings.zone_files(names))
            self._files_for = names
        written = self.writer.sync()
        zones = self.settings.zones
        on_disk = [view for view in served
                   if all(self.writer.rendered(self.settings.zone_path(zone, view.name)) for zone in zones)]
        self._write(on_disk)
        self._report(left_out)
        return written

    def _write(self, views: list[DNSView]) -> None:
        try:
            text = render_corefile(views, self.layout) + self.settings.corefile_append
        except CorefileError as error:  # choose_served leaves out what cannot render; kept as a last guard
            log.error("Corefile not rendered; the one in place stays", extra={"error": str(error)})
            return
        names = tuple(view.name for view in views)
        if self.file.replace(text):
            before = set(self._in_corefile or ())
            self.metrics.renders.inc()
            self.metrics.last_render.set_to_current_time()
            log.info("Corefile replaced", extra={
                "path": str(self.file.path), "views": list(names), "added": sorted(set(names) - before),
                "removed": sorted(before - set(names)), "default_view": self.settings.default_view or None})
        self._in_corefile = names
        self.metrics.views_served.set(len(names))

    def _report(self, left_out: dict[str, tuple[str, str]]) -> None:
        for reason in (OVERLAP, INVALID, NO_GEOIP_DB):
            self.metrics.views_left_out.labels(reason).set(sum(1 for r, _ in left_out.values() if r == reason))
        for name, (reason, why) in sorted(left_out.items()):
            if self._reported.get(name) != (reason, why):
                log.warning("DNSView left out of the Corefile", extra={"view": name, "reason": reason, "detail": why})
        self._reported = left_out

    def ready(self) -> tuple[bool, str]:
        if self._in_corefile is None:
            return False, "Corefile not rendered from etcd yet"
        return True, f"Corefile with {len(self._in_corefile)} view block(s)"
