"""The member clusters' connections: one MemberConnection (members.py) per MemberCluster, built from its kubeconfig
Secret outside every lock (the Secret read and a credential plugin may block) and swapped in under it; rebuilt
every 10 s while the Secret is missing or unusable or the credentials are refused; and the member metrics.
The engine (engine.py) hands MemberCluster changes in and hears what to reconcile again.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable

import yaml

from aggregator.controller.members import MemberConnection, ObjectChanged
from aggregator.health.readiness import Reachability
from aggregator.metrics import AggregatorMetrics
from aggregator.model import IntentKey, MemberCluster
from aggregator.settings import Settings
from aggregator.sources.base import SourceRegistry
from fleetdns.apipaths import SECRETS
from fleetdns.kubeapi import KubeClient, KubeError, member_api_client

logger = logging.getLogger("aggregator.engine")  # the engine's log lines, as before this class was split out
SECRET_RETRY = 10.0


class MemberConnections:
    """The connections by member name; the lock is held for dictionary updates only, never across I/O."""

    def __init__(self, settings: Settings, host: KubeClient, metrics: AggregatorMetrics, sources: SourceRegistry,
                 stopping: threading.Event, objects_changed: Callable[[Iterable[IntentKey]], None],
                 reconcile_all: Callable[[], None], grace_started: Callable[[MemberConnection], None],
                 object_changed: ObjectChanged | None = None) -> None:
        """``objects_changed``: a member object changed (these intents may be affected); ``reconcile_all``: a member
        changed state, or is reachable again; ``grace_started``: a member's last known answer now expires (later);
        ``object_changed``: every member object change, as it came (the delegated Domains' Services)."""
        self._object_changed = object_changed
        self.settings = settings
        self.host = host
        self.metrics = metrics
        self.sources = sources
        self._stopping = stopping
        self._objects_changed = objects_changed
        self._reconcile_all = reconcile_all
        self._grace_started = grace_started
        self._members: dict[str, MemberConnection] = {}
        self._wanted: dict[str, MemberCluster] = {}  # the latest spec of every MemberCluster
        self._lock = threading.RLock()

    def start(self) -> None:
        threading.Thread(target=self._retry, name="member-retry", daemon=True).start()

    def stop(self) -> None:
        for member in self.members():
            member.stop()

    def members(self) -> list[MemberConnection]:
        with self._lock:
            return sorted(self._members.values(), key=lambda m: m.name)

    def cluster_changed(self, old: MemberCluster | None, new: MemberCluster | None) -> None:
        """A MemberCluster came, changed or went: connect when its Secret reference is new, else keep the
        connection with the new spec; a deleted one is disconnected and its metrics are dropped."""
        if new is None:
            assert old is not None
            with self._lock:
                self._wanted.pop(old.name, None)
                gone = self._members.pop(old.name, None)
            if gone is not None:
                gone.stop()
            self._forget_metrics(old.name)
            return
        with self._lock:
            self._wanted[new.name] = new
            current = self._members.get(new.name)
            reconnect = old is None or current is None or old.kubeconfig_secret != new.kubeconfig_secret
            if not reconnect and current is not None:
                current.cluster = new
        if reconnect:
            self._connect(new)

    def _client(self, cluster: MemberCluster) -> tuple[KubeClient | None, str]:
        """The member's client from its kubeconfig Secret, or why there is none; the Secret's content is
        never logged. Network I/O (and a kubeconfig's credential plugin): never called under a lock."""
        ref = cluster.kubeconfig_secret
        try:
            secret = self.host.get(SECRETS.path(ref.namespace, ref.name))
            encoded = (secret.get("data") or {}).get(ref.key)
            if not encoded:
                raise ValueError(f"Secret {ref.namespace}/{ref.name} has no key {ref.key!r}")
            kubeconfig = yaml.safe_load(base64.b64decode(encoded))
            return KubeClient(member_api_client(kubeconfig)), ""
        except KubeError as error:
            return None, f"Secret {ref.namespace}/{ref.name}: {error.status} {error.reason}"
        except Exception as error:  # noqa: BLE001 - any bad kubeconfig; the message must not quote it
            return None, f"kubeconfig in Secret {ref.namespace}/{ref.name} key {ref.key!r} unusable: " \
                         f"{type(error).__name__}"

    def _connect(self, cluster: MemberCluster, since: float | None = None,
                 replacing: MemberConnection | None = None) -> MemberConnection | None:
        """Build a connection outside the lock, then swap it in unless something newer won meanwhile: the
        MemberCluster's Secret reference changed or it was deleted, or (``replacing``) another rebuild
        already replaced that connection. None when superseded."""
        client, detail = self._client(cluster)
        member = MemberConnection(cluster, client, detail, self.settings.namespace, self.settings.member_grace_period,
                                  self._objects_changed, self._state_changed, since, self.sources,
                                  on_object=self._object_changed)
        with self._lock:
            wanted = self._wanted.get(cluster.name)
            previous = self._members.get(cluster.name)
            if wanted is None or wanted.kubeconfig_secret != cluster.kubeconfig_secret \
                    or replacing is not None and previous is not replacing:
                return None
            member.cluster = wanted
            self._members[cluster.name] = member
        if previous is not None:
            previous.stop()
        if client is None:
            logger.warning("member cluster unavailable", extra={"cluster": cluster.name, "detail": detail})
        else:
            logger.info("connecting to member cluster", extra={"cluster": cluster.name})
        self._record_state(member)
        member.start()
        self._grace_started(member)
        return member

    def _retry(self) -> None:
        """Members whose Secret was missing or unusable, or whose credentials are refused, are rebuilt
        from their Secret every 10 s (the Secret may arrive later, or be rotated)."""
        while not self._stopping.wait(SECRET_RETRY):
            broken = [m for m in self.members() if m.client is None or m.credentials_refused]
            for stale in broken:
                # the grace period keeps running from the first failure, however often we rebuild
                replacement = self._connect(stale.cluster, since=stale.down_since or stale.created_at,
                                            replacing=stale)
                if replacement is not None and replacement.client is not None:
                    self._reconcile_all()

    def _state_changed(self, member: MemberConnection) -> None:
        self._record_state(member)
        reach = member.reachability()
        problems = {kind.name: f"{p.status} {p.detail}" for kind in member.kinds
                    if (p := member.kind_problem(kind)) is not None}
        logger.info("member cluster state", extra={"cluster": member.name, "state": str(reach),
                                                   "detail": member.detail, "kinds_unavailable": problems})
        self._reconcile_all()
        self._grace_started(member)

    def _forget_metrics(self, name: str) -> None:
        with contextlib.suppress(KeyError):
            self.metrics.member_connected.remove(name)
        for state in Reachability:
            with contextlib.suppress(KeyError):
                self.metrics.member_state.remove(name, str(state))
        for kind in self.sources.member_kinds():
            with contextlib.suppress(KeyError):
                self.metrics.member_kind_available.remove(name, kind.name)

    def _record_state(self, member: MemberConnection) -> None:
        reach = member.reachability()
        self.metrics.member_connected.labels(member.name).set(1 if member.connected else 0)
        for state in Reachability:
            self.metrics.member_state.labels(member.name, str(state)).set(1 if state is reach else 0)
        for kind in member.kinds:
            self.metrics.member_kind_available.labels(member.name, kind.name).set(
                0 if member.kind_problem(kind) is not None else 1)
