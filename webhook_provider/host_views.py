"""The host's DNSViews kept in this region's etcd, so the zone-file sidecar renders the Corefile from them
(``/fleetdns/views/<name>`` = the spec as JSON; docs/design/views.md §7).

The webhook is the region's one writer with host access: a list+watch of DNSViews on the host (the host client the
lag check uses) and a reconcile of the keys whenever that cache changes, and every ``resync`` against drift. Rules:
- never from a cold cache: nothing is written or removed before the host was listed once;
- a key is removed only when the host's answer says the view is gone (a listing without it, a watch DELETED event,
  or an object that no longer parses); while the host is away the keys stay as they are;
- a DNSView that cannot be served is skipped, logged naming it and counted (``fleetdns.dnsview.parse_dns_view``,
  the aggregator's check); which views get a block (overlaps) is the sidecar's call, by ``accept_views``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleetdns.apipaths import DNS_VIEWS
from fleetdns.dnsview import VIEWS_KEY_PREFIX, DNSViewError, parse_dns_view, stored_view_value, view_key
from fleetdns.informer import Informer
from fleetdns.kubeapi import KubeClient
from fleetdns.skydns.store import ConflictError, EtcdStore, EtcdUnavailableError
from fleetdns.skydns.transaction import Transaction
from webhook_provider.metrics import HostMetrics

log = logging.getLogger(__name__)

RESYNC_SECONDS = 30.0  # etcd compared with the host's views even without a change (keys removed by hand, a restore)
RETRY_SECONDS = 1.0  # after etcd did not answer


@dataclass(frozen=True)
class HostView:
    """A DNSView the host holds and the regions can serve: its name and the value its key holds."""

    name: str
    value: str


def parse_host_view(obj: dict[str, Any]) -> HostView:
    """A host DNSView as stored in etcd; DNSViewError (a ValueError) for one that cannot be served."""
    view = parse_dns_view(obj)
    return HostView(view.name, stored_view_value(obj))


def plan_view_keys(desired: Mapping[str, str], stored: Mapping[str, bytes],
                   prefix: str = VIEWS_KEY_PREFIX) -> tuple[list[tuple[str, str]], list[str]]:
    """(puts, deletes) that make the keys under ``prefix`` hold exactly ``desired`` (view name -> value)."""
    wanted = {view_key(name, prefix): value for name, value in desired.items()}
    puts = [(key, value) for key, value in sorted(wanted.items()) if stored.get(key) != value.encode()]
    deletes = [key for key in sorted(stored) if key.startswith(prefix) and key not in wanted]
    return puts, deletes


class HostViews:
    """The host's DNSViews (an informer) written to etcd on a thread of its own."""

    def __init__(self, client: KubeClient, store: EtcdStore, metrics: HostMetrics, prefix: str = VIEWS_KEY_PREFIX,
                 resync: float = RESYNC_SECONDS) -> None:
        self.store = store
        self.metrics = metrics
        self.prefix = prefix
        self.resync = resync
        self.metrics.views.set(-1)
        self.informer: Informer[HostView] = Informer("host-dnsviews", client, DNS_VIEWS.path(), self._parse,
                                                     self._changed)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="host-views", daemon=True)

    def start(self) -> HostViews:
        self.informer.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self.informer.stop()

    def _parse(self, raw: dict[str, Any]) -> HostView:
        try:
            return parse_host_view(raw)
        except DNSViewError as error:
            self.metrics.views_invalid.inc()
            log.warning("DNSView skipped: it cannot be served", extra={
                "view": (raw.get("metadata") or {}).get("name"), "error": str(error)})
            raise

    def _changed(self, old: HostView | None, new: HostView | None) -> None:
        self._wake.set()

    def _loop(self) -> None:
        # never from a cold cache: nothing is known about the host's views before the first listing. Waiting for
        # the listing itself, not for a change: the listing reports its views before it marks the cache synced, and
        # a host with no views reports nothing at all.
        while not self.informer.synced.wait(0.2):
            if self._stopping.is_set():
                return
        wait = 0.0
        while not self._stopping.is_set():
            self._wake.wait(wait)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.reconcile()
                wait = self.resync
            except (EtcdUnavailableError, ConflictError) as error:
                log.warning("DNSViews not written to etcd; retrying", extra={"error": str(error)})
                wait = RETRY_SECONDS

    def reconcile(self) -> tuple[list[str], list[str]]:
        """Make etcd hold the informer's views; returns the views (put, removed). Raises EtcdUnavailableError."""
        desired = {view.name: view.value for view in self.informer.store.copy().values()}
        stored = {entry.key: entry.value for entry in self.store.list_prefix(self.prefix).entries}
        puts, deletes = plan_view_keys(desired, stored, self.prefix)
        batch = max(1, self.store.settings.max_txn_ops)
        operations: list[tuple[str, str | None]] = [*puts, *((key, None) for key in deletes)]
        for start in range(0, len(operations), batch):
            chunk = operations[start:start + batch]
            self.store.commit(Transaction(
                compares=(), puts=tuple((key, value) for key, value in chunk if value is not None),
                deletes=tuple(key for key, value in chunk if value is None), names=()))
        for key, _ in puts:
            self.metrics.view_writes.labels("put").inc()
            log.info("DNSView written to etcd", extra={"view": key.removeprefix(self.prefix), "key": key})
        for key in deletes:
            self.metrics.view_writes.labels("delete").inc()
            log.info("DNSView removed from etcd: the host no longer has it", extra={
                "view": key.removeprefix(self.prefix), "key": key})
        self.metrics.views.set(len(desired))
        return [key.removeprefix(self.prefix) for key, _ in puts], [key.removeprefix(self.prefix) for key in deletes]
