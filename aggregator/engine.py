"""The watch engine: host informers (intents, Domains, MemberClusters, our DNSEndpoints), member
connections, the work queue and its workers. Writes happen only while this replica leads."""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import yaml

from aggregator.informer import Informer
from aggregator.kubeapi import KubeClient, KubeError, NotLeaderError, member_api_client
from aggregator.members import MemberConnection, collection_path
from aggregator.metrics import AggregatorMetrics
from aggregator.model import (
    API_VERSION,
    LABEL_INTENT_KIND,
    DNSEndpointObject,
    Domain,
    IngressIntent,
    Intent,
    IntentKey,
    IntentKind,
    MemberCluster,
    ServiceIntent,
    parse_dns_endpoint,
    parse_domain,
    parse_ingress_intent,
    parse_member_cluster,
    parse_service_intent,
)
from aggregator.policy import Reachability
from aggregator.reconciler import Reconciler
from aggregator.settings import Settings
from aggregator.workqueue import WorkQueue

logger = logging.getLogger("aggregator.engine")
SECRET_RETRY = 10.0
MEMBER_SYNC_TIMEOUT = 60.0  # a member still busy after this long no longer holds up start-up


class Engine:
    def __init__(self, settings: Settings, host: KubeClient, metrics: AggregatorMetrics, identity: str) -> None:
        self.settings = settings
        self.host = host
        self.metrics = metrics
        self.identity = identity
        self.queue: WorkQueue[IntentKey] = WorkQueue()
        self.leading = threading.Event()
        self.members: dict[str, MemberConnection] = {}
        self._members_lock = threading.RLock()
        self.desired_endpoints: dict[IntentKey, tuple[dict[str, Any], ...]] = {}
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self.started_at = time.monotonic()
        ns = settings.namespace
        self.service_intents: Informer[ServiceIntent] = Informer(
            "host/servicednsrecords", host, collection_path(API_VERSION, "servicednsrecords", ns),
            parse_service_intent, self._intent_changed)
        self.ingress_intents: Informer[IngressIntent] = Informer(
            "host/ingressdnsrecords", host, collection_path(API_VERSION, "ingressdnsrecords", ns),
            parse_ingress_intent, self._intent_changed)
        self.domains: Informer[Domain] = Informer(
            "host/domains", host, collection_path(API_VERSION, "domains"), parse_domain, self._domain_changed)
        self.member_clusters: Informer[MemberCluster] = Informer(
            "host/memberclusters", host, collection_path(API_VERSION, "memberclusters"), parse_member_cluster,
            self._member_cluster_changed)
        self.dns_endpoints: Informer[DNSEndpointObject] = Informer(
            "host/dnsendpoints", host, collection_path("externaldns.k8s.io/v1alpha1", "dnsendpoints", ns),
            parse_dns_endpoint, self._dns_endpoint_changed, label_selector=LABEL_INTENT_KIND)
        self.host_informers: list[Informer[Any]] = [self.service_intents, self.ingress_intents, self.domains,
                                                    self.member_clusters, self.dns_endpoints]
        # Set to the elector's freshness check when leader election is on (see LeaseElector.holds_fresh_lease).
        self.lease_fresh: Callable[[], bool] = lambda: True
        self.reconciler = Reconciler(self, host.fenced(self.may_write), settings.domain_namespace)
        metrics.watch_intent_conditions(self.reconciler.condition_counts)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Engine:
        for informer in self.host_informers:
            informer.start()
        threading.Thread(target=self._retry_members, name="member-retry", daemon=True).start()
        for index in range(self.settings.workers):
            worker = threading.Thread(target=self._work, name=f"worker-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.queue.shutdown()
        for informer in self.host_informers:
            informer.stop()
        with self._members_lock:
            for member in self.members.values():
                member.stop()
        for worker in self._workers:
            worker.join(timeout=2)

    def ready(self) -> tuple[bool, str]:
        """Ready once the host caches are filled and every member is synced or known down."""
        if not all(i.synced.is_set() for i in self.host_informers):
            return False, "host caches syncing"
        pending = [m.name for m in self.member_list() if not m.synced_or_failed]
        if pending and time.monotonic() - self.started_at < MEMBER_SYNC_TIMEOUT:
            return False, "member caches syncing: " + ", ".join(pending)
        return True, "leader" if self.leading.is_set() else "standby"

    def may_write(self) -> bool:
        """Checked by every write the reconciler sends: leading, with a lease renewed in time."""
        return self.leading.is_set() and self.lease_fresh()

    def set_leading(self, leading: bool) -> None:
        """Leadership gained: reconcile everything (also sweeps orphans); lost: stop writing at once."""
        if leading == self.leading.is_set():
            return
        if leading:
            self.reconciler.last_status.clear()  # another replica may have written since we last led
            self.leading.set()
            self.metrics.leader.set(1)
            self.enqueue_all()
            for member in self.member_list():
                self._schedule_grace_expiry(member)
        else:
            self.leading.clear()
            self.metrics.leader.set(0)

    # --- reading the caches -------------------------------------------------------------------

    def intent(self, key: IntentKey) -> Intent | None:
        informer = self.service_intents if key.kind is IntentKind.SERVICE else self.ingress_intents
        return informer.store.get(f"{key.namespace}/{key.name}")

    def member_list(self) -> list[MemberConnection]:
        with self._members_lock:
            return sorted(self.members.values(), key=lambda m: m.name)

    def all_intent_keys(self) -> list[IntentKey]:
        keys = [i.key for i in list(self.service_intents.store.values())]
        keys += [i.key for i in list(self.ingress_intents.store.values())]
        keys += [k for d in list(self.dns_endpoints.store.values()) if (k := d.intent_key) is not None]
        return keys

    def enqueue_all(self) -> None:
        for key in self.all_intent_keys():
            self.queue.add(key)

    # --- change handlers (informer threads) ---------------------------------------------------

    def _enqueue_known(self, keys: Iterable[IntentKey]) -> None:
        """Member changes name intents that may not exist; only real ones (or leftovers) are queued."""
        for key in keys:
            if self.intent(key) is not None or key in self.desired_endpoints:
                self.queue.add(key)

    def _intent_changed(self, old: Intent | None, new: Intent | None) -> None:
        current = new or old
        assert current is not None
        if old is not None and new is not None and old.generation == new.generation \
                and new.status == self.reconciler.last_status.get(new.key):
            return  # our own status write coming back
        self.queue.add(current.key)

    def _domain_changed(self, old: Domain | None, new: Domain | None) -> None:
        names = {d.name for d in (old, new) if d is not None}
        for intent in list(self.service_intents.store.values()):
            if intent.domain_ref in names:
                self.queue.add(intent.key)

    def _dns_endpoint_changed(self, old: DNSEndpointObject | None, new: DNSEndpointObject | None) -> None:
        current = new or old
        assert current is not None
        key = current.intent_key
        if key is None:
            return
        if new is not None and self.desired_endpoints.get(key) == new.endpoints:
            return  # our own write coming back
        self.queue.add(key)

    def _member_cluster_changed(self, old: MemberCluster | None, new: MemberCluster | None) -> None:
        with self._members_lock:
            if new is None:
                assert old is not None
                gone = self.members.pop(old.name, None)
                if gone is not None:
                    gone.stop()
                self._forget_member_metrics(old.name)
            elif old is None or old.kubeconfig_secret != new.kubeconfig_secret or new.name not in self.members:
                previous = self.members.pop(new.name, None)
                if previous is not None:
                    previous.stop()
                self.members[new.name] = self._connect(new)
            else:
                self.members[new.name].cluster = new
        self.enqueue_all()

    def _connect(self, cluster: MemberCluster, since: float | None = None) -> MemberConnection:
        """Build the member's client from its kubeconfig Secret; the Secret's content is never logged."""
        client, detail = None, ""
        ref = cluster.kubeconfig_secret
        try:
            secret = self.host.get(f"/api/v1/namespaces/{ref.namespace}/secrets/{ref.name}")
            encoded = (secret.get("data") or {}).get(ref.key)
            if not encoded:
                raise ValueError(f"Secret {ref.namespace}/{ref.name} has no key {ref.key!r}")
            kubeconfig = yaml.safe_load(base64.b64decode(encoded))
            client = KubeClient(member_api_client(kubeconfig))
        except KubeError as error:
            detail = f"Secret {ref.namespace}/{ref.name}: {error.status} {error.reason}"
        except Exception as error:  # noqa: BLE001 - any bad kubeconfig; the message must not quote it
            detail = f"kubeconfig in Secret {ref.namespace}/{ref.name} key {ref.key!r} unusable: " \
                     f"{type(error).__name__}"
        if client is None:
            logger.warning("member cluster unavailable", extra={"cluster": cluster.name, "detail": detail})
        else:
            logger.info("connecting to member cluster", extra={"cluster": cluster.name})
        member = MemberConnection(cluster, client, detail, self.settings.namespace, self.settings.member_grace_period,
                                  self._enqueue_known, self._member_state_changed, since)
        self._record_member_state(member)
        member.start()
        self._schedule_grace_expiry(member)
        return member

    def _schedule_grace_expiry(self, member: MemberConnection) -> None:
        """Reconcile everything again when the member's last known answer expires (nothing else would)."""
        expires = member.grace_expires_in()
        if expires is not None:
            for key in self.all_intent_keys():
                self.queue.add_after(key, expires + 0.05)

    def _retry_members(self) -> None:
        """Members whose Secret was missing or unusable, or whose credentials are refused, are rebuilt
        from their Secret every 10 s (the Secret may arrive later, or be rotated)."""
        while not self._stopping.wait(SECRET_RETRY):
            with self._members_lock:
                broken = [m for m in self.members.values() if m.client is None or m.credentials_refused]
            for stale in broken:
                with self._members_lock:
                    if self.members.get(stale.name) is not stale:
                        continue
                    stale.stop()
                    # the grace period keeps running from the first failure, however often we rebuild
                    replacement = self._connect(stale.cluster, since=stale.down_since or stale.created_at)
                    self.members[stale.name] = replacement
                if replacement.client is not None:
                    self.enqueue_all()

    def _member_state_changed(self, member: MemberConnection) -> None:
        self._record_member_state(member)
        reach = member.reachability()
        logger.info("member cluster state", extra={"cluster": member.name, "state": str(reach),
                                                   "detail": member.detail})
        self.enqueue_all()
        self._schedule_grace_expiry(member)

    def _forget_member_metrics(self, name: str) -> None:
        with contextlib.suppress(KeyError):
            self.metrics.member_connected.remove(name)
        for state in Reachability:
            with contextlib.suppress(KeyError):
                self.metrics.member_state.remove(name, str(state))

    def _record_member_state(self, member: MemberConnection) -> None:
        reach = member.reachability()
        self.metrics.member_connected.labels(member.name).set(1 if member.connected else 0)
        for state in Reachability:
            self.metrics.member_state.labels(member.name, str(state)).set(1 if state is reach else 0)

    # --- workers ------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            item = self.queue.get()
            if item is None:
                return
            key, queued_at = item
            try:
                if self.leading.is_set():
                    self.reconciler.reconcile(key)
                    self.metrics.reconcile_seconds.labels(str(key.kind)).observe(time.monotonic() - queued_at)
                self.queue.forget(key)
            except NotLeaderError:
                pass  # leadership is being lost; whoever leads next reconciles everything
            except Exception as error:  # noqa: BLE001 - retried with backoff; one bad intent must not stop the others
                self.metrics.reconcile_errors.labels(str(key.kind)).inc()
                delay = self.queue.add_rate_limited(key)
                logger.warning("reconcile failed; retrying", extra={
                    "intent": str(key), "error": str(error), "retry_in_seconds": delay,
                    "failures": self.queue.failures(key)})
            finally:
                self.queue.done(key)
                self.metrics.queue_depth.set(len(self.queue))
