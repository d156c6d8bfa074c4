"""etcd I/O: a lazily connected client, paged prefix reads at one revision, guarded transactions, a prefix watch.

A "prefix" here is the webhook's default prefix (``/skydns/``) with its view prefixes (``/skydns-<view>/``): reads,
counts and the watch cover the key space's root (``/skydns``) and decode each key under its own prefix
(``encoding.decode_key``)."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import pyetcd
from pyetcd import etcdrpc

from fleetdns.skydns.encoding import decode_key, key_space_root
from fleetdns.skydns.metrics import StoreMetrics
from fleetdns.skydns.records import StoredEntry
from fleetdns.skydns.settings import EtcdSettings
from fleetdns.skydns.transaction import Transaction

log = logging.getLogger("webhook_provider.store")  # the name it had before the move, kept for log filters

PAGE_SIZE = 5000  # keys per range call: below gRPC's message limit for ordinary values (large ones: see _pages)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# A watch stream idles for hours: pings notice a peer that vanished without closing the connection.
# etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time).
KEEPALIVE_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000
REQUIRE_LEADER = ("hasleader", "true")  # etcd cancels the watch if its member loses the leader (no silent stall)
DELETE_EVENT = 1  # mvccpb.Event.EventType.DELETE
T = TypeVar("T")


class EtcdUnavailableError(RuntimeError):
    """etcd did not answer or refused; the API turns it into 503 so ExternalDNS retries."""


class ConflictError(RuntimeError):
    """A transaction's compare failed: someone else changed a key since it was read."""


class WatchStartError(RuntimeError):
    """etcd did not create the watch; ``reason`` is ``compacted``, ``refused`` or ``unreachable``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PrefixState:
    """What etcd holds under a prefix now, in two numbers (see EtcdStore.prefix_state)."""

    keys: int
    newest_mod_revision: int


@dataclass(frozen=True)
class PrefixSnapshot:
    """Every key under a prefix as of one etcd revision."""

    entries: list[StoredEntry]
    revision: int


@dataclass(frozen=True)
class WatchEvent:
    """One change under the watched prefix; ``entry`` is None for a delete."""

    key: str
    revision: int
    entry: StoredEntry | None


def _prefix_end(prefix: str) -> bytes:
    """The first key after every key starting with ``prefix`` (etcd's range_end for a prefix)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return bytes(raw)


def _key_range(prefix: str) -> tuple[bytes, bytes]:
    """etcd's (key, range_end) for the key space of the default prefix ``prefix`` and its view prefixes."""
    root = key_space_root(prefix)
    return root.encode(), _prefix_end(root)


def txn_request(transaction: Transaction) -> etcdrpc.TxnRequest:
    """The etcd request of a transaction: every compare must hold, then every put and delete runs."""
    return etcdrpc.TxnRequest(
        compare=[etcdrpc.Compare(key=key.encode(), target=etcdrpc.Compare.MOD, result=etcdrpc.Compare.EQUAL,
                                 mod_revision=revision) for key, revision in transaction.compares],
        success=[*(etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key.encode(), value=value.encode()))
                   for key, value in transaction.puts),
                 *(etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=key.encode()))
                   for key in transaction.deletes)])


class EtcdStore:
    """Connects on first use, so the webhook starts (and negotiates) while etcd is still down."""

    def __init__(self, settings: EtcdSettings, metrics: StoreMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._client: pyetcd.MultiEndpointEtcd3Client | None = None
        self._endpoint_index = 0
        self._lock = threading.Lock()

    def _connect(self) -> pyetcd.MultiEndpointEtcd3Client:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._new_client()
                except Exception:
                    # With a user set, creating the client authenticates: a dead member fails here, before
                    # there is a client to reset. The next attempt must try the next endpoint.
                    self._endpoint_index += 1
                    raise
            return self._client

    def _new_client(self) -> pyetcd.MultiEndpointEtcd3Client:
        endpoint = self.settings.endpoints[self._endpoint_index % len(self.settings.endpoints)]
        options: list[tuple[str, int | str]] = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                                                ("grpc.keepalive_time_ms", KEEPALIVE_MS),
                                                ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS)]
        if self.settings.tls_server_name:
            options.append(("grpc.ssl_target_name_override", self.settings.tls_server_name))
        channel = pyetcd.Endpoint(endpoint.host, endpoint.port, secure=endpoint.secure,
                                  creds=self._credentials() if endpoint.secure else None, opts=options)
        # Authenticates here when a user is set, so this too can fail while etcd is down.
        return pyetcd.MultiEndpointEtcd3Client(endpoints=[channel], timeout=self.settings.timeout,
                                               user=self.settings.username, password=self.settings.password)

    def _credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as handle:
                return handle.read()

        return grpc.ssl_channel_credentials(read(self.settings.ca_file), read(self.settings.key_file),
                                            read(self.settings.cert_file))

    def _reset(self, failed: pyetcd.MultiEndpointEtcd3Client) -> None:
        """Forget the client a call just failed on: the next call reconnects (next endpoint, fresh auth token).

        Only if it is still the current client: concurrent calls on one dead client all fail, and the later
        ones must neither close the fresh client the first one already opened nor skip past its endpoint.
        """
        with self._lock:
            current = self._client
            if current is None or current is not failed:
                return
            self._client = None
            self._endpoint_index += 1
        with contextlib.suppress(Exception):  # closing a broken channel may fail too
            current.close()

    def _call(self, operation: str, action: Callable[[pyetcd.MultiEndpointEtcd3Client], T]) -> T:
        """Run ``action``; after a failure try the next endpoint, so one dead member costs no 503.

        Retrying a transaction is safe: if the lost attempt did commit, its mod-revision compares fail now
        and the provider re-plans (finding nothing left to do).
        """
        attempts = len(self.settings.endpoints)
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            client = None
            try:
                client = self._connect()
                return action(client)
            except Exception as error:
                self.metrics.etcd_errors.labels(operation).inc()
                if client is not None:
                    self._reset(client)
                log.warning("etcd operation failed", extra={"operation": operation, "error": _describe(error),
                                                            "attempt": attempt, "endpoints": attempts})
                if attempt == attempts:
                    raise EtcdUnavailableError(f"etcd {operation} failed: {_describe(error)}") from error
            finally:
                self.metrics.etcd_latency.labels(operation).observe(time.perf_counter() - started)
        raise AssertionError("unreachable")  # the loop returns or raises

    def ping(self, prefix: str) -> None:
        """One cheap range call on a key the region's etcd user may read (its key space root: a user whose role
        covers only the region's prefixes may read nothing else); raises EtcdUnavailableError."""
        root = key_space_root(prefix).encode()
        self._call("ping", lambda client: client.get_response(root, count_only=True))

    def prefix_state(self, prefix: str) -> PrefixState:
        """How many keys ``prefix`` holds now and the newest mod revision among them: what a watch that keeps
        up must have delivered. The key count is an index lookup; the newest key costs etcd a scan of the
        prefix (it sorts by mod revision), which is why the mirror asks only every few seconds."""
        start, end = _key_range(prefix)

        def run(client: pyetcd.MultiEndpointEtcd3Client) -> PrefixState:
            counted = client.get_range_response(start, end, count_only=True)
            newest = client.get_range_response(start, end, sort_order="descend", sort_target="mod",
                                               limit=1, keys_only=True)
            return PrefixState(int(counted.count), max((kv.mod_revision for kv in newest.kvs), default=0))

        return self._call("verify", run)

    def read_prefix(self, prefix: str) -> list[StoredEntry]:
        """Every key under ``prefix``, decoded, read in pages at a single revision (a consistent view)."""
        return self.list_prefix(prefix).entries

    def list_prefix(self, prefix: str) -> PrefixSnapshot:
        """``read_prefix`` with the revision it was read at (a watch from revision + 1 misses nothing)."""
        return self._call("read", lambda client: self._pages(client, prefix))

    def _pages(self, client: Any, prefix: str) -> PrefixSnapshot:
        start, end = _key_range(prefix)
        revision = None
        entries: list[StoredEntry] = []
        limit = PAGE_SIZE
        while True:
            try:
                response = client.get_range_response(start, end, limit=limit, revision=revision)
            except grpc.RpcError as error:
                # Values up to --etcd-max-txn-bytes each: PAGE_SIZE of them can outgrow gRPC's message limit, and
                # a listing that always fails would stop every read. Smaller pages, down to one key.
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or limit == 1:
                    raise
                limit = max(1, limit // 8)
                log.info("a page of the prefix exceeded gRPC's message limit; reading smaller pages",
                         extra={"prefix": prefix, "page_keys": limit})
                continue
            if revision is None:
                revision = response.header.revision
            entries.extend(decode_key(prefix, kv.key.decode("utf-8", "replace"), kv.value, kv.mod_revision)
                           for kv in response.kvs)
            if not response.more or not response.kvs:
                return PrefixSnapshot(entries, revision)
            start = response.kvs[-1].key + b"\0"

    def commit(self, transaction: Transaction) -> int:
        """Run one transaction and return the revision it committed at; ConflictError when a compared key
        changed since it was read."""
        request = txn_request(transaction)

        def run(client: pyetcd.MultiEndpointEtcd3Client) -> tuple[bool, int]:
            response = client.kvstub.Txn(request, client.timeout, credentials=client.call_credentials,
                                         metadata=client.metadata)
            return bool(response.succeeded), int(response.header.revision)

        try:
            succeeded, revision = self._call("txn", run)
        except EtcdUnavailableError as error:
            if _refused_as_too_large(error.__cause__):
                raise EtcdUnavailableError(
                    f"etcd refused a transaction of {transaction.byte_count} bytes as too large ({error}): "
                    f"--etcd-max-txn-bytes ({self.settings.max_txn_bytes}) must stay below etcd's "
                    "--max-request-bytes less 64 KiB") from error
            raise
        if not succeeded:
            self.metrics.etcd_errors.labels("txn_conflict").inc()
            raise ConflictError(f"a key of {', '.join(transaction.names[:3])} changed concurrently")
        return revision

    def watch_prefix(self, prefix: str, start_revision: int, on_events: Callable[[list[WatchEvent]], None],
                     on_end: Callable[[str, str], None]) -> PrefixWatch:
        """Watch every key under ``prefix`` from ``start_revision``; returns once etcd created the watch.

        Raises WatchStartError (and resets the client when etcd did not answer). ``on_events`` gets each
        revision's events whole and in order; ``on_end(reason, detail)`` is called once if the stream ends
        (reason ``compacted``, ``cancelled`` or ``failed``) unless it was cancelled here.
        """
        started = time.perf_counter()
        client = None
        try:
            client = self._connect()
            watch = PrefixWatch(client, prefix, start_revision, on_events, on_end)
            watch.start(self.settings.timeout)
            return watch
        except Exception as error:
            self.metrics.etcd_errors.labels("watch").inc()
            answered = isinstance(error, WatchStartError) and error.reason != "unreachable"
            if client is not None and not answered:
                self._reset(client)
            if isinstance(error, WatchStartError):
                raise
            raise WatchStartError(f"cannot connect: {_describe(error)}", "unreachable") from error
        finally:
            self.metrics.etcd_latency.labels("watch").observe(time.perf_counter() - started)

    def close(self) -> None:
        with self._lock:
            client = self._client
        if client is not None:
            self._reset(client)


class PrefixWatch:
    """One etcd watch stream over a prefix, read on its own thread (pyetcd's watcher hides server-side cancels)."""

    def __init__(self, client: pyetcd.MultiEndpointEtcd3Client, prefix: str, start_revision: int,
                 on_events: Callable[[list[WatchEvent]], None], on_end: Callable[[str, str], None]) -> None:
        self.prefix = prefix
        self._client = client
        self._start_revision = start_revision
        self._on_events = on_events
        self._on_end = on_end
        self._requests: queue.SimpleQueue[etcdrpc.WatchRequest | None] = queue.SimpleQueue()
        self._created = threading.Event()
        self._start_failure: WatchStartError | None = None
        self._cancelled = False
        self._call: Any = None

    def start(self, timeout: float) -> None:
        start, end = _key_range(self.prefix)
        create = etcdrpc.WatchCreateRequest(key=start, range_end=end, start_revision=self._start_revision)
        self._requests.put(etcdrpc.WatchRequest(create_request=create))
        metadata = (*(self._client.metadata or ()), REQUIRE_LEADER)
        try:
            self._call = etcdrpc.WatchStub(self._client.channel).Watch(
                self._request_stream(), credentials=self._client.call_credentials, metadata=metadata)
        except Exception as error:
            raise WatchStartError(f"cannot open the watch stream: {_describe(error)}", "unreachable") from error
        threading.Thread(target=self._run, name="etcd-watch", daemon=True).start()
        if not self._created.wait(timeout):
            self.cancel()
            raise WatchStartError(f"etcd did not create the watch within {timeout:g} s", "unreachable")
        if self._start_failure is not None:
            raise self._start_failure

    def cancel(self) -> None:
        """Stop the stream; ``on_end`` is not called for a cancel asked for here."""
        self._cancelled = True
        self._requests.put(None)
        if self._call is not None:
            with contextlib.suppress(Exception):
                self._call.cancel()

    def _request_stream(self) -> Iterator[etcdrpc.WatchRequest]:
        while (request := self._requests.get()) is not None:
            yield request

    def _run(self) -> None:
        reason, detail = "failed", "the watch stream closed"
        try:
            for response in self._call:
                if not self._created.is_set():
                    if response.compact_revision:
                        self._start_failure = WatchStartError(
                            f"compacted: revision {self._start_revision} is older than etcd's compaction at "
                            f"{response.compact_revision}", "compacted")
                    elif response.canceled or not response.created:
                        self._start_failure = WatchStartError(
                            f"etcd refused the watch: {response.cancel_reason or 'cancelled'}", "refused")
                    self._created.set()
                    if self._start_failure:
                        return
                    continue
                if response.compact_revision:
                    reason, detail = "compacted", f"etcd compacted past the watch (at {response.compact_revision})"
                    return
                if response.canceled:
                    reason, detail = "cancelled", f"etcd cancelled the watch: {response.cancel_reason or 'no reason'}"
                    return
                if response.events:
                    self._on_events([self._event(event) for event in response.events])
        except Exception as error:  # grpc.RpcError when etcd goes away; anything else must end the watch too
            detail = f"the watch stream failed: {_describe(error)}"
        finally:
            if not self._created.is_set():
                self._start_failure = self._start_failure or WatchStartError(detail, "unreachable")
                self._created.set()
            elif not self._cancelled and self._start_failure is None:
                self._requests.put(None)
                self._on_end(reason, detail)

    def _event(self, event: Any) -> WatchEvent:
        key = event.kv.key.decode("utf-8", "replace")
        if event.type == DELETE_EVENT:
            return WatchEvent(key, event.kv.mod_revision, None)
        return WatchEvent(key, event.kv.mod_revision,
                          decode_key(self.prefix, key, event.kv.value, event.kv.mod_revision))


def _refused_as_too_large(error: BaseException | None) -> bool:
    """etcd's answers to a request over --max-request-bytes: its own check, or gRPC's (the limit plus 512 KiB)."""
    if not isinstance(error, grpc.RpcError):
        return False
    code, details = error.code(), error.details() or ""
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED or (
        code == grpc.StatusCode.INVALID_ARGUMENT and "request is too large" in details)


def _describe(error: Exception) -> str:
    """A short reason without credentials (gRPC details never include the password)."""
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__

