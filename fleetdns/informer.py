"""List+watch of one resource kind on one API server, keeping a parsed cache and reporting changes.

Resumes from the last resourceVersion (bookmarks keep it fresh) after a dropped stream or while the
server does not answer (no connection, 429). While it does not answer at all, the informers on its client
take turns through one shared gate (``fleetdns.backoff``): one request at a time, 0.2 s doubling to 30 s,
and all of them resume at the first answer. Error answers back off per informer, to the same cap. A watch the
server refuses to resume, whatever its reason (410 Gone, any other ERROR event, any error answer),
re-lists instead of retrying the same resourceVersion forever, as client-go's reflector does.
A server whose etcd was restored from a backup or wiped refuses nothing: v1.36 accepts a watch from a
resourceVersion ahead of its history and sends nothing until its revision passes it. So before each
resume a one-item consistent list asks for the server's newest resourceVersion; older than ours means
its history went back, and the cache is re-listed. Reports whether the server answers.
Change handlers see (old, new) parsed views and are called only when the parsed view changed, so
status noise the aggregator does not read never reaches the work queue.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from fleetdns.backoff import Backoff, ServerGate, gate_for
from fleetdns.kubeapi import OPENED, KubeClient, KubeError

T = TypeVar("T")
ChangeHandler = Callable[[T | None, T | None], None]
StateHandler = Callable[[bool, str, int], None]  # connected, detail, HTTP status (0: no answer)

logger = logging.getLogger("fleetdns.informer")
LIST_PAGE = 500
WATCH_SECONDS = (240, 300)  # server-side watch timeout, randomised so streams do not reconnect together
# A stream silent this long is re-opened from its resourceVersion (cheap, no re-list): after a network
# cut heals, a watch stuck on a dead connection recovers within this bound, not the full watch timeout.
QUIET_STREAM_SECONDS = 70.0


class Gone(Exception):
    """The resourceVersion is too old (410): the cache must be rebuilt from a fresh list."""


class WatchRefused(Exception):
    """The server ended the watch with an ERROR event other than 410 (e.g. 504 "Too large resource
    version"): resuming from the same resourceVersion would fail again, so the cache is re-listed."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code


def compare_resource_versions(a: str, b: str) -> int | None:
    """-1, 0 or 1 as ``a`` is older than, equal to or newer than ``b`` (two resourceVersions of one
    resource, comparable as integers since Kubernetes 1.34, KEP-5504); None when either is not a
    well-formed positive integer (then nothing is concluded)."""
    if not all(v.isdigit() and not v.startswith("0") for v in (a, b)):
        return None
    return (int(a) > int(b)) - (int(a) < int(b))


def resumable(status: int) -> bool:
    """Whether a failed watch may resume from its resourceVersion: only when the server did not answer
    (status 0) or asked us to slow down (429); any other answer may be about the resourceVersion itself."""
    return status in (0, 429)


def object_key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or ""
    return f"{namespace}/{meta.get('name', '')}" if namespace else str(meta.get("name", ""))


class Informer(Generic[T]):
    """One resource kind on one server; ``store`` maps ``namespace/name`` to the parsed view."""

    def __init__(self, name: str, client: KubeClient, path: str, parse: Callable[[dict[str, Any]], T],
                 on_change: ChangeHandler[T], on_state: StateHandler | None = None,
                 label_selector: str = "", gate: ServerGate | None = None) -> None:
        self.name = name
        self.client = client
        self.path = path
        self.parse = parse
        self.on_change = on_change
        self.on_state = on_state
        self.label_selector = label_selector
        self.store: dict[str, T] = {}
        self.synced = threading.Event()
        self.connected = False
        # shared with every informer on this client (fleetdns.backoff); an informer built without a client (its
        # store filled by hand, never started) gets one of its own
        self.gate = gate or (gate_for(client) if client is not None else ServerGate("no client"))
        self._backoff = Backoff()  # paces retries after error answers (reset once connected)
        self._relist_backoff = Backoff()  # paces re-lists after refused watches (reset by a watch that ran)
        self._response: Any = None
        # The resourceVersion of the last event applied to the store (None: list first). Kept here, not
        # in a local of the loop, so a stream that breaks mid-way resumes after what it delivered: resuming
        # from where that watch began would replay older versions of objects to the handlers.
        self._version: str | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"informer-{name}", daemon=True)

    def start(self) -> Informer[T]:
        self._thread.start()
        return self

    def interrupt(self) -> None:
        """Cut the current watch (a silent server keeps a dead stream open until the read times out)."""
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # already closed or closing: nothing left to cut
                response.shutdown()

    def _hold(self, response: Any) -> None:
        self._response = response

    def stop(self) -> None:
        """Stop after the current read; the thread is a daemon, so a blocked read never holds up exit."""
        self._stopping.set()
        self.gate.wake()

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    def _run(self) -> None:
        while self.gate.enter(self._stopping):
            try:
                if self._version is None or self._history_went_back(self._version):
                    self._version = self._list()
                    self._set_state(True, "listed")
                self._watch(self._version)
                self._relist_backoff.reset()
            except Gone:
                self.gate.answered()
                logger.info("watch expired; re-listing", extra={"informer": self.name})
                self._version = None
            except WatchRefused as error:
                self.gate.answered()
                logger.warning("watch cannot resume from its resourceVersion; re-listing",
                               extra={"informer": self.name, "error": str(error)})
                self._version = None
                self._stopping.wait(self._relist_backoff.next())
            except (KubeError, ValueError, OSError) as error:
                if self._stopping.is_set():
                    return
                self._failed(error)
            except Exception:  # noqa: BLE001 - a bug in a handler must not end the watch for good
                logger.exception("informer loop failed", extra={"informer": self.name})
                self._stopping.wait(self._backoff.next())
                self._version = None
            finally:
                self.gate.leave()

    def _failed(self, error: KubeError | ValueError | OSError) -> None:
        """A request failed: no answer closes the shared gate (which paces the next try of every informer on
        this server); an error answer waits this informer's own backoff."""
        status = error.status if isinstance(error, KubeError) else 0
        self._set_state(False, str(error), status)
        if self._version is not None and not resumable(status):
            logger.warning("watch refused; re-listing", extra={"informer": self.name, "error": str(error)})
            self._version = None
        if status == 0 and not isinstance(error, ValueError):
            self.gate.unanswered(str(error), refused=isinstance(error, KubeError) and error.refused)
        else:
            self.gate.answered()
            self._stopping.wait(self._backoff.next())

    def _set_state(self, connected: bool, detail: str, status: int = 200) -> None:
        changed = connected != self.connected
        if connected:
            self.gate.answered()
            self._backoff.reset()
        self.connected = connected
        if changed:
            logger.info("connection " + ("up" if connected else "down"),
                        extra={"informer": self.name, "detail": detail})
        if self.on_state is not None:
            self.on_state(connected, detail, status)

    def _query(self) -> dict[str, Any]:
        return {"labelSelector": self.label_selector} if self.label_selector else {}

    def _list(self) -> str:
        fresh: dict[str, T] = {}
        query: dict[str, Any] = {**self._query(), "limit": LIST_PAGE}
        while True:
            page = self.client.get(self.path, query, timeout=30)
            self.gate.answered()  # at the first page: a long list must not keep the other informers waiting
            for raw in page.get("items") or []:
                parsed = self._parse(raw)
                if parsed is not None:
                    fresh[object_key(raw)] = parsed
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                version = str((page.get("metadata") or {}).get("resourceVersion", ""))
                break
            query["continue"] = cont
        self._replace(fresh)
        self.synced.set()
        return version

    def _history_went_back(self, version: str) -> bool:
        """Whether the server's newest resourceVersion is older than ours (its etcd restored or replaced)."""
        page = self.client.get(self.path, {**self._query(), "limit": 1}, timeout=30)
        self.gate.answered()
        newest = str((page.get("metadata") or {}).get("resourceVersion") or "")
        if compare_resource_versions(newest, version) != -1:
            return False
        logger.warning("server's history went back (etcd restored or replaced); re-listing",
                       extra={"informer": self.name, "resource_version": version, "server_newest": newest})
        return True

    def _replace(self, fresh: dict[str, T]) -> None:
        """Swap in a re-listed cache, reporting what changed while the watch was away."""
        old = self.store
        self.store = fresh
        for key, value in old.items():
            if key not in fresh:
                self.on_change(value, None)
        for key, value in fresh.items():
            previous = old.get(key)
            if previous != value:
                self.on_change(previous, value)

    def _watch(self, version: str) -> str:
        query = {**self._query(), "resourceVersion": version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": random.randint(*WATCH_SECONDS)}
        for event in self.client.watch(self.path, query, read_timeout=QUIET_STREAM_SECONDS,
                                       on_open=self._hold):
            if self._stopping.is_set():
                break
            kind, raw = event.get("type"), event.get("object") or {}
            if kind == OPENED:
                if not self.connected:
                    self._set_state(True, "watching")
                continue
            if kind == "ERROR":
                if raw.get("code") == 410:
                    raise Gone()
                raise WatchRefused(int(raw.get("code") or 0), str(raw.get("reason")), str(raw.get("message")))
            version = str((raw.get("metadata") or {}).get("resourceVersion") or version)
            if kind != "BOOKMARK":
                self._apply(kind, raw)
            self._version = version
        return version

    def _apply(self, kind: str | None, raw: dict[str, Any]) -> None:
        key = object_key(raw)
        old = self.store.get(key)
        new = None if kind == "DELETED" else self._parse(raw)
        if new is None:
            self.store.pop(key, None)
        else:
            self.store[key] = new
        if old != new:
            self.on_change(old, new)

    def _parse(self, raw: dict[str, Any]) -> T | None:
        try:
            return self.parse(raw)
        except (ValueError, TypeError) as error:
            logger.warning("skipping object that cannot be parsed",
                           extra={"informer": self.name, "object": object_key(raw), "error": str(error)})
            return None


def wait_synced(informers: list[Informer[Any]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    return all(i.synced.wait(max(0.0, deadline - time.monotonic())) for i in informers)
