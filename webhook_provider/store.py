"""etcd I/O: a lazily connected client, paged prefix reads at one revision, and guarded transactions."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import pyetcd

from webhook_provider.metrics import Metrics
from webhook_provider.planner import Transaction
from webhook_provider.records import StoredEntry
from webhook_provider.settings import EtcdSettings
from webhook_provider.skydns import decode_entry

log = logging.getLogger(__name__)

PAGE_SIZE = 5000  # keys per range call: far below gRPC's message limit even with large labels
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
T = TypeVar("T")


class EtcdUnavailableError(RuntimeError):
    """etcd did not answer or refused; the API turns it into 503 so ExternalDNS retries."""


class ConflictError(RuntimeError):
    """A transaction's compare failed: someone else changed a key since it was read."""


def _prefix_end(prefix: str) -> bytes:
    """The first key after every key starting with ``prefix`` (etcd's range_end for a prefix)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return bytes(raw)


class EtcdStore:
    """Connects on first use, so the webhook starts (and negotiates) while etcd is still down."""

    def __init__(self, settings: EtcdSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._client: pyetcd.MultiEndpointEtcd3Client | None = None
        self._endpoint_index = 0
        self._lock = threading.Lock()

    def _connect(self) -> pyetcd.MultiEndpointEtcd3Client:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> pyetcd.MultiEndpointEtcd3Client:
        endpoint = self.settings.endpoints[self._endpoint_index % len(self.settings.endpoints)]
        options: list[tuple[str, int | str]] = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
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

    def _reset(self) -> None:
        """Forget the client after a failure: the next call reconnects (next endpoint, fresh auth token)."""
        with self._lock:
            if self._client is not None:
                with contextlib.suppress(Exception):  # closing a broken channel may fail too
                    self._client.close()
                self._client = None
                self._endpoint_index += 1

    def _call(self, operation: str, action: Callable[[pyetcd.MultiEndpointEtcd3Client], T]) -> T:
        """Run ``action``; after a failure try the next endpoint, so one dead member costs no 503.

        Retrying a transaction is safe: if the lost attempt did commit, its mod-revision compares fail now
        and the provider re-plans (finding nothing left to do).
        """
        attempts = len(self.settings.endpoints)
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            try:
                return action(self._connect())
            except Exception as error:
                self.metrics.etcd_errors.labels(operation).inc()
                self._reset()
                log.warning("etcd operation failed", extra={"operation": operation, "error": _describe(error),
                                                            "attempt": attempt, "endpoints": attempts})
                if attempt == attempts:
                    raise EtcdUnavailableError(f"etcd {operation} failed: {_describe(error)}") from error
            finally:
                self.metrics.etcd_latency.labels(operation).observe(time.perf_counter() - started)
        raise AssertionError("unreachable")  # the loop returns or raises

    def ping(self) -> None:
        """One cheap range call; raises EtcdUnavailableError."""
        self._call("ping", lambda client: client.get_response("health", count_only=True))

    def read_prefix(self, prefix: str) -> list[StoredEntry]:
        """Every key under ``prefix``, decoded, read in pages at a single revision (a consistent view)."""
        return self._call("read", lambda client: list(self._pages(client, prefix)))

    def _pages(self, client: Any, prefix: str) -> Iterator[StoredEntry]:
        start: bytes = prefix.encode()
        end = _prefix_end(prefix)
        revision = None
        while True:
            response = client.get_range_response(start, end, limit=PAGE_SIZE, revision=revision)
            if revision is None:
                revision = response.header.revision
            for kv in response.kvs:
                yield decode_entry(prefix, kv.key.decode("utf-8", "replace"), kv.value, kv.mod_revision)
            if not response.more or not response.kvs:
                return
            start = response.kvs[-1].key + b"\0"

    def commit(self, transaction: Transaction) -> None:
        """Run one transaction; ConflictError when a compared key changed since it was read."""
        def run(client: pyetcd.MultiEndpointEtcd3Client) -> bool:
            ops = client.transactions
            compares = [ops.mod(key) == revision for key, revision in transaction.compares]
            success = [ops.put(key, value) for key, value in transaction.puts]
            success += [ops.delete(key) for key in transaction.deletes]
            succeeded, _ = client.transaction(compare=compares, success=success, failure=[])
            return bool(succeeded)

        if not self._call("txn", run):
            self.metrics.etcd_errors.labels("txn_conflict").inc()
            raise ConflictError(f"a key of {', '.join(transaction.names[:3])} changed concurrently")

    def close(self) -> None:
        self._reset()


def _describe(error: Exception) -> str:
    """A short reason without credentials (gRPC details never include the password)."""
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__

