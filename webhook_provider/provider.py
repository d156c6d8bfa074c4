"""The provider contract ExternalDNS calls: Records, ApplyChanges, AdjustEndpoints (HTTP lives in api.py)."""

from __future__ import annotations

import logging
import threading
import time

from fleetdns.endpoint import Endpoint
from fleetdns.skydns.encoding import owns_key
from fleetdns.skydns.mirror import DirectSource, EntrySource
from fleetdns.skydns.store import ConflictError, EtcdStore, EtcdUnavailableError
from fleetdns.skydns.transaction import Transaction
from webhook_provider.changes import Changes, set_aside
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.listing import RecordsListing
from webhook_provider.metrics import Metrics
from webhook_provider.planner import batch, plan_changes, plan_name_keys, too_large
from webhook_provider.validation import Rejection, Storable, storable_endpoint

log = logging.getLogger(__name__)

APPLY_ATTEMPTS = 2  # a concurrent writer causes one re-read and re-plan, then 503
REPAIR_FIRST_RETRY_SECONDS = 1.0
REPAIR_MAX_RETRY_SECONDS = 30.0


class ApplyConflictError(EtcdUnavailableError):
    """Keys kept changing under us; reported as 503 so ExternalDNS retries on its next loop."""


class Provider:
    def __init__(self, store: EtcdStore, prefix: str, domain_filter: DomainFilter, metrics: Metrics,
                 max_txn_ops: int, max_txn_bytes: int, source: EntrySource | None = None) -> None:
        self.store = store
        self.prefix = prefix
        self.domain_filter = domain_filter
        self.metrics = metrics
        self.max_txn_ops = max_txn_ops
        self.max_txn_bytes = max_txn_bytes
        self.source = source or DirectSource(store, prefix, metrics.store)  # mirror.PrefixMirror in production
        self.listing = RecordsListing(self.source, domain_filter, metrics)
        self._apply_lock = threading.Lock()  # one apply at a time: no conflicts with ourselves

    def records(self) -> bytes:
        """GET /records's JSON body: every endpoint under the prefix and its view prefixes whose name the domain
        filter accepts.

        Never older than our last commit, never from a cold or broken mirror (EtcdUnavailableError instead).
        """
        return self.listing.body()

    def adjust_endpoints(self, endpoints: list[Endpoint]) -> list[Endpoint]:
        """Canonical forms of what apply would store; the rest is dropped exactly as apply would skip it."""
        adjusted = []
        for index, endpoint in enumerate(endpoints):
            verdict = storable_endpoint(endpoint, self.domain_filter)
            if isinstance(verdict, Storable):
                verdict = self._too_large(verdict.endpoint) or verdict
            if isinstance(verdict, Rejection):
                self.metrics.dropped_endpoints.labels(verdict.reason.value).inc()
                self.metrics.rejections.report(verdict, "adjustendpoints", f"[{index}]")
                continue
            for dropped in verdict.dropped:
                self.metrics.dropped_properties.labels(dropped.property, "/adjustendpoints").inc()
                self.metrics.rejections.report_property(dropped, "adjustendpoints", f"[{index}]")
            adjusted.append(verdict.endpoint)
        return adjusted

    def _too_large(self, endpoint: Endpoint) -> Rejection | None:
        """The size half of "can this be stored" (it needs the prefix and the transaction limit); the document
        half is ``validation.storable_endpoint``. Both routes ask both, so /adjustendpoints drops what apply skips."""
        return too_large(endpoint, self.prefix, self.max_txn_bytes)

    def apply(self, changes: Changes) -> None:
        """Write the changes; raises EtcdUnavailableError (→ 503) unless every transaction committed.

        Skipped endpoints are only reported: nothing of them is written, and they never fail the rest.
        """
        changes = set_aside(changes, self._too_large)
        for skipped in changes.skipped:
            self.metrics.rejected_records.labels(skipped.rejection.reason.value).inc()
            self.metrics.rejections.report(skipped.rejection, "records", skipped.path)
        for trimmed in changes.trimmed:
            self.metrics.dropped_properties.labels(trimmed.dropped.property, "/records").inc()
            self.metrics.rejections.report_property(trimmed.dropped, "records", trimmed.path)
        if changes.is_empty:
            self.metrics.applies.labels("empty").inc()
            return
        with self._apply_lock:
            for attempt in range(1, APPLY_ATTEMPTS + 1):
                try:
                    self._apply_once(changes)
                    break
                except ConflictError as conflict:
                    log.warning("concurrent change detected; re-reading and re-planning",
                                extra={"attempt": attempt, "detail": str(conflict)})
            else:
                raise ApplyConflictError("keys changed concurrently on every attempt; retry later")
        for change, count in changes.counts().items():
            self.metrics.changes_applied.labels(change).inc(count)
        self.metrics.applies.labels("applied").inc()

    def _apply_once(self, changes: Changes) -> None:
        started = time.perf_counter()
        entries = self.source.entries()  # the mirror is safe to plan from: every write compares mod revisions
        plans = plan_changes(entries, changes, self.prefix)
        transactions = batch(plans, self.max_txn_ops, self.max_txn_bytes)
        _refuse_keys_outside(transactions, self.prefix)
        for transaction in transactions:
            self._commit(transaction)
        log.info("changes applied", extra={
            **changes.counts(), "names": len(plans), "transactions": len(transactions),
            "puts": sum(len(t.puts) for t in transactions), "deletes": sum(len(t.deletes) for t in transactions),
            "seconds": round(time.perf_counter() - started, 3)})

    def _commit(self, transaction: Transaction) -> None:
        try:
            self.source.committed(self.store.commit(transaction))
        except ConflictError:
            self.source.distrust("conflict")  # the re-plan reads etcd itself
            raise
        except EtcdUnavailableError:
            self.source.distrust("commit_unknown")  # it may have committed: never answer without it
            raise

    def repair_name_keys(self, stop: threading.Event) -> int | None:
        """Once per start, as soon as a read succeeds: give every name we serve its name key (names written
        before name keys existed, or by the coredns provider) and drop ours left without records.

        Idempotent (a second pass finds nothing to do); retried with backoff until it completes or ``stop``
        is set. Returns how many names it fixed, None if stopped first. Each transaction is committed under
        the apply lock, so a POST /records waits for one transaction at most, never for the whole pass.
        """
        delay = REPAIR_FIRST_RETRY_SECONDS
        while not stop.is_set():
            started = time.perf_counter()
            try:
                plans = plan_name_keys(self.source.entries(), self.prefix, self.domain_filter.match)
                transactions = batch(plans, self.max_txn_ops, self.max_txn_bytes)
                _refuse_keys_outside(transactions, self.prefix)
                for transaction in transactions:
                    with self._apply_lock:
                        self._commit(transaction)
            except (ConflictError, EtcdUnavailableError) as error:
                log.warning("name key repair pass failed; retrying", extra={"error": str(error), "retry_in": delay})
                stop.wait(delay)
                delay = min(delay * 2, REPAIR_MAX_RETRY_SECONDS)
                continue
            log.info("name key repair pass done", extra={
                "names_fixed": len(plans), "puts": sum(len(p.puts) for p in plans),
                "deletes": sum(len(p.deletes) for p in plans), "seconds": round(time.perf_counter() - started, 3)})
            self.metrics.name_keys_repaired.set(len(plans))
            return len(plans)
        return None


def _refuse_keys_outside(transactions: list[Transaction], prefix: str) -> None:
    """Defence in depth: a planning bug must never write or delete a key outside the prefix and its view prefixes."""
    for transaction in transactions:
        for key in (*(key for key, _ in transaction.puts), *transaction.deletes):
            if not owns_key(prefix, key):
                raise RuntimeError(f"refusing to touch {key!r}: outside the prefix {prefix!r} and its view prefixes")
