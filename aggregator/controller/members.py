"""Connections to member clusters: one informer per kind of member object the registered sources need,
the shared EndpointSlice readiness index, each source's index to intents, and the member's
reachability (connected, unreachable within the grace period, lost).

An optional kind (Ingress) that the member forbids (403) or does not serve (404) is set aside: the
member stays connected for its other kinds, and the kind is tried again every ``OPTIONAL_KIND_RETRY``.

A member's informers and its probe share one ``ServerGate`` (``fleetdns.backoff``): while its API server
does not answer, they try it one request at a time with a delay growing to 30 s, so a dead or hung member
costs a couple of connections a minute however many kinds are watched; its first answer resumes them all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aggregator.health.readiness import KindProblem, MemberView, Reachability
from aggregator.model import IntentKey, MemberCluster
from aggregator.sources import SOURCES
from aggregator.sources.base import MemberIndex, MemberKind, SourceRegistry
from aggregator.sources.endpoint_slices import ENDPOINT_SLICE_KIND, ReadinessIndex
from fleetdns.apipaths import Resource
from fleetdns.backoff import ServerGate, gate_for
from fleetdns.informer import Informer
from fleetdns.kubeapi import KubeClient, KubeError

logger = logging.getLogger("aggregator.members")
Notify = Callable[[Iterable[IntentKey]], None]
ObjectChanged = Callable[[str, "MemberKind", Any, Any], None]  # (member, kind, old, new): besides the intents' indexes
StateChange = Callable[["MemberConnection"], None]
Clock = Callable[[], float]
HEARTBEAT = "heartbeat"  # the /readyz probe reports like one more watch
HEARTBEAT_FAILURES = 2  # consecutive unanswered probes before a member counts as silent
OPTIONAL_KIND_RETRY = 30.0  # seconds between attempts to list an optional kind the member refused
_KIND_REFUSED = (403, 404)


class MemberHealth:
    """One member's reachability, from what its watches and its probe report (thread-safe; clock injectable).

    Connecting until every watched kind has listed once; Connected while every watch and the probe are
    up; UnreachableInGrace for the grace period after one drops, then Unreachable. A member never synced
    becomes Unavailable once the grace period since its creation has passed. An optional kind refused
    with 403/404 is set aside: it neither holds the member down nor counts for its sync.
    """

    def __init__(self, kinds: Mapping[str, bool], grace_period: float, clock: Clock = time.monotonic,
                 since: float | None = None) -> None:
        self.grace_period = grace_period
        self._clock = clock
        self._watched = frozenset(kinds)
        self._optional = frozenset(name for name, required in kinds.items() if not required)
        self._up: dict[str, bool] = dict.fromkeys(kinds, False)
        self._synced: set[str] = set()
        self._problems: dict[str, KindProblem] = {}
        self._lock = threading.Lock()
        self.created_at = since if since is not None else clock()  # grace for a never-synced member
        self.down_since: float | None = None
        self.ever_synced = False
        self.detail = ""
        self._hard_failure = False
        self._last_status = 0

    def report(self, kind: str, up: bool, detail: str, status: int = 0, synced: bool = False) -> bool:
        """One watch's (or the probe's) state; True when connectedness or a kind's availability changed."""
        with self._lock:
            before = (self._connected(), set(self._problems))
            if up:
                self._problems.pop(kind, None)
                if synced:
                    self._synced.add(kind)
            elif kind in self._optional and status in _KIND_REFUSED:
                self._problems[kind] = KindProblem(kind, status, detail)
            else:
                self._hard_failure = status in (0, 401, 403)
                self._last_status = status
            self._up[kind] = up
            connected = self._connected()
            if connected:
                self.ever_synced = self.ever_synced or self._watched - set(self._problems) <= self._synced
                self.down_since = None
                self.detail = ""
            elif self.down_since is None:
                self.down_since = self._clock()
                self.detail = detail if not up else "not every watch is up yet"
            return before != (connected, set(self._problems))

    def _connected(self) -> bool:
        return all(up for kind, up in self._up.items() if kind not in self._problems)

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected()

    def is_up(self, kind: str) -> bool:
        return self._up.get(kind, True)

    def problem(self, kind: str) -> KindProblem | None:
        return self._problems.get(kind)

    def reachability(self) -> Reachability:
        now = self._clock()
        if not self.ever_synced:
            in_grace = now - self.created_at < self.grace_period
            return Reachability.CONNECTING if in_grace else Reachability.UNAVAILABLE
        down_since = self.down_since
        if down_since is None or self.connected:
            return Reachability.CONNECTED
        return Reachability.IN_GRACE if now - down_since < self.grace_period else Reachability.LOST

    def grace_expires_in(self) -> float | None:
        """Seconds until the member's last known answer expires; None while there is nothing to expire."""
        if not self.ever_synced:
            return max(0.0, self.created_at + self.grace_period - self._clock())
        down_since = self.down_since
        if down_since is None:
            return None
        return max(0.0, down_since + self.grace_period - self._clock())

    @property
    def synced_or_failed(self) -> bool:
        """Start-up waits for this: caches filled, or the member known to be down (no answer, or
        credentials refused); a busy server (429, 5xx) is waited for, not written off."""
        return self.ever_synced or self.down_since is not None and self._hard_failure

    @property
    def credentials_refused(self) -> bool:
        """Down with 401/403: the Secret may have been rotated, so the engine rebuilds the connection."""
        return self.down_since is not None and self._last_status in (401, 403)


class MemberConnection:
    """One member cluster: its informers, indexes and health; ``client`` None when unusable (``detail`` says why)."""

    def __init__(self, cluster: MemberCluster, client: KubeClient | None, detail: str, namespace: str,
                 grace_period: float, notify: Notify, on_state: StateChange, since: float | None = None,
                 sources: SourceRegistry = SOURCES, clock: Clock = time.monotonic,
                 on_object: ObjectChanged | None = None) -> None:
        """``on_object``: told of every member object change (a delegated Domain follows its nameservers' Services)."""
        self.cluster = cluster
        self._on_object = on_object
        self.client = client
        self.kinds = sources.member_kinds()
        self.health = MemberHealth({kind.name: kind.required for kind in self.kinds}, grace_period, clock, since)
        self._unusable = detail
        self._namespace = namespace
        self._notify = notify
        self._on_state = on_state
        self._clock = clock
        self._lock = threading.Lock()  # serialises index updates from the informer threads
        self._readiness = ReadinessIndex()
        self._indexes: dict[Resource, list[MemberIndex]] = {kind.resource: [] for kind in self.kinds}
        for source in sources:
            index = source.new_index()
            for kind in source.member_kinds:
                self._indexes[kind.resource].append(index)
        self._informers: dict[Resource, Informer[Any] | None] = {}
        self._gate: ServerGate | None = gate_for(client) if client is not None else None
        self._retry_at: dict[Resource, float] = {}
        self._stopping = threading.Event()
        self._heartbeat = threading.Thread(target=self._probe_loop, name=f"heartbeat-{cluster.name}", daemon=True)
        if client is not None:
            for kind in self.kinds:
                self._informers[kind.resource] = self._new_informer(kind)

    @property
    def name(self) -> str:
        return self.cluster.name

    @property
    def detail(self) -> str:
        return self._unusable if self.client is None else self.health.detail

    @property
    def informers(self) -> list[Informer[Any]]:
        return [informer for informer in self._informers.values() if informer is not None]

    def _new_informer(self, kind: MemberKind) -> Informer[Any]:
        assert self.client is not None
        informer: Informer[Any] = Informer(
            f"{self.name}/{kind.name}", self.client, kind.resource.path(self._namespace), kind.parse,
            lambda old, new: self._changed(kind, informer, old, new),
            lambda up, detail, status: self._informer_state(kind, informer, up, detail, status),
            kind.label_selector)
        return informer

    def start(self) -> MemberConnection:
        for informer in self.informers:
            informer.start()
        if self.client is not None:
            self._heartbeat.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        for informer in self.informers:
            informer.stop()
        if self._gate is not None:
            self._gate.wake()

    @property
    def retry_interval(self) -> float:
        """Seconds between tries of a member API server that does not answer (0 while it answers)."""
        return 0.0 if self._gate is None else self._gate.retry_interval

    def _probe_loop(self) -> None:
        """Watches notice a server that closes its connections at once; a silent one (a cut network)
        only when a read times out. A cheap /readyz probe notices it within a few seconds. While the
        server does not answer, the probe takes its turn through the member's gate like the informers,
        and probes at once when the gate opens, so the member counts as connected again without delay."""
        assert self.client is not None and self._gate is not None
        interval = min(5.0, max(0.5, self.health.grace_period / 4))
        failures = 0
        while not (self._gate.is_open and self._stopping.wait(interval)):
            if not self._gate.enter(self._stopping):
                return
            self._retry_refused_kinds()
            try:
                self.client.request("GET", "/readyz", timeout=interval)
                answered = True
                self._gate.answered()
            except KubeError as error:
                answered = 0 < error.status < 500
                if error.status == 0:
                    self._gate.unanswered(str(error), refused=error.refused)
                else:
                    self._gate.answered()
            finally:
                self._gate.leave()
            failures = 0 if answered else failures + 1
            if failures == HEARTBEAT_FAILURES:
                self._report(HEARTBEAT, False, "API server not answering /readyz")
                for informer in self.informers:
                    informer.interrupt()  # dead streams would otherwise hide the silence until a read timeout
            elif answered and not self.health.is_up(HEARTBEAT):
                self._report(HEARTBEAT, True, "answering")

    def _retry_refused_kinds(self) -> None:
        for kind in self.kinds:
            due = self._retry_at.get(kind.resource)
            if due is not None and self._clock() >= due and not self._stopping.is_set():
                del self._retry_at[kind.resource]
                informer = self._informers[kind.resource] = self._new_informer(kind)
                informer.start()
                if self._stopping.is_set():  # stopped meanwhile
                    informer.stop()

    # --- state (informer threads) -------------------------------------------------------------

    def _report(self, kind: str, up: bool, detail: str, status: int = 0, synced: bool = False) -> None:
        if self.health.report(kind, up, detail, status, synced):
            self._state_changed()

    def _state_changed(self) -> None:
        if not self._stopping.is_set():  # a replaced connection's last words must not overwrite its successor's
            self._on_state(self)

    def _informer_state(self, kind: MemberKind, informer: Informer[Any], up: bool, detail: str, status: int) -> None:
        if self._informers.get(kind.resource) is not informer:
            return  # replaced meanwhile
        was_refused = self.health.problem(kind.name) is not None
        changed = self.health.report(kind.name, up, detail, status, informer.synced.is_set())
        problem = self.health.problem(kind.name)
        if problem is not None and not up:
            # Forbidden or not served: stop asking every few seconds; try again after a while.
            informer.stop()
            self._informers[kind.resource] = None
            self._retry_at[kind.resource] = self._clock() + OPTIONAL_KIND_RETRY
            self._forget(kind, informer)
            if not was_refused:
                # Not served (404: no CRD) is normal for an optional kind; forbidden (403) is RBAC to fix.
                log = logger.info if status == 404 else logger.warning
                log("member kind unavailable; the member stays connected for its other kinds", extra={
                    "cluster": self.name, "kind": kind.name, "status": status, "detail": detail,
                    "retry_in_seconds": OPTIONAL_KIND_RETRY})
        elif was_refused and problem is None:
            logger.info("member kind available again", extra={"cluster": self.name, "kind": kind.name})
        if changed:
            self._state_changed()

    def _forget(self, kind: MemberKind, informer: Informer[Any]) -> None:
        """A kind set aside: its objects leave the indexes (called on its informer's thread)."""
        for old in list(informer.store.values()):
            self._changed(kind, None, old, None)

    @property
    def connected(self) -> bool:
        return self.client is not None and self.health.connected

    def reachability(self) -> Reachability:
        return Reachability.UNAVAILABLE if self.client is None else self.health.reachability()

    def grace_expires_in(self) -> float | None:
        return None if self.client is None else self.health.grace_expires_in()

    @property
    def synced_or_failed(self) -> bool:
        return self.client is None or self.health.synced_or_failed

    @property
    def credentials_refused(self) -> bool:
        return self.health.credentials_refused

    @property
    def down_since(self) -> float | None:
        return self.health.down_since

    @property
    def created_at(self) -> float:
        return self.health.created_at

    # --- what the sources read (MemberObjects) ------------------------------------------------

    def view(self) -> MemberView:
        return MemberView(self.cluster, self.reachability(), self.detail)

    def get(self, kind: MemberKind, namespace: str, name: str) -> Any | None:
        informer = self._informers.get(kind.resource)
        return None if informer is None else informer.store.get(f"{namespace}/{name}")

    def objects(self, kind: MemberKind) -> list[Any]:
        """Every cached object of ``kind`` (a DiscoveryRule that changed looks for what it selects now)."""
        informer = self._informers.get(kind.resource)
        return [] if informer is None else list(informer.store.values())

    def ready_endpoints(self, namespace: str, service: str) -> int:
        return self._readiness.ready_endpoints(namespace, service)

    def kind_problem(self, kind: MemberKind) -> KindProblem | None:
        return self.health.problem(kind.name)

    # --- change handlers (informer threads) ---------------------------------------------------

    def _changed(self, kind: MemberKind, informer: Informer[Any] | None, old: Any, new: Any) -> None:
        if informer is not None and self._informers.get(kind.resource) is not informer:
            return  # a replaced informer's last words
        affected: list[IntentKey] = []
        with self._lock:
            indexes = self._indexes.get(kind.resource, [])
            if kind.resource == ENDPOINT_SLICE_KIND.resource:
                for service in self._readiness.apply(old, new):
                    for index in indexes:
                        affected += index.readiness_changed(service)
            else:
                for index in indexes:
                    affected += index.object_changed(kind, old, new)
        if affected:
            self._notify(affected)
        if self._on_object is not None:
            self._on_object(self.name, kind, old, new)
