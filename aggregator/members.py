"""Connections to member clusters: one informer per resource kind, the member-side indexes, and
the member's reachability (connected, unreachable within the grace period, lost).

The indexes map member objects to the intents they affect: a Service or its EndpointSlices to the
ServiceDNSRecord of the same namespace/name and to every IngressDNSRecord whose Ingress uses that
Service as a backend; an Ingress to the IngressDNSRecord of the same name.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

from aggregator.informer import Informer
from aggregator.kubeapi import KubeClient, KubeError
from aggregator.model import (
    IntentKey,
    IntentKind,
    MemberCluster,
    MemberEndpointSlice,
    MemberIngress,
    MemberService,
    parse_endpoint_slice,
    parse_member_ingress,
    parse_member_service,
)
from aggregator.policy import MemberView, Reachability

Notify = Callable[[Iterable[IntentKey]], None]
StateChange = Callable[["MemberConnection"], None]
ServiceRef = tuple[str, str]  # (namespace, name)
_NO_CACHE = (Reachability.UNAVAILABLE, Reachability.LOST, Reachability.CONNECTING)
HEARTBEAT_FAILURES = 2  # consecutive unanswered probes before a member counts as silent


def collection_path(group_version: str, plural: str, namespace: str = "") -> str:
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


class MemberConnection:
    """One member cluster: its informers, indexes and reachability; ``client`` None when unusable."""

    def __init__(self, cluster: MemberCluster, client: KubeClient | None, detail: str, namespace: str,
                 grace_period: float, notify: Notify, on_state: StateChange, since: float | None = None) -> None:
        self.cluster = cluster
        self.client = client
        self.detail = detail
        self.grace_period = grace_period
        self._notify = notify
        self._on_state = on_state
        self._lock = threading.Lock()
        self._slices: dict[ServiceRef, dict[str, int]] = defaultdict(dict)
        self._ingress_backends: dict[ServiceRef, set[str]] = defaultdict(set)
        self._informer_up: dict[str, bool] = {}
        self.down_since: float | None = None
        self.ever_synced = False
        self._hard_failure = False
        self._last_status = 0
        self.created_at = since if since is not None else time.monotonic()  # grace for a never-synced member
        self.informers: list[Informer] = []
        self._stopping = threading.Event()
        self._heartbeat = threading.Thread(target=self._probe_loop, name=f"heartbeat-{cluster.name}", daemon=True)
        if client is not None:
            self.services: Informer[MemberService] = self._informer(
                "services", collection_path("v1", "services", namespace), parse_member_service, self._service_changed)
            self.slices: Informer[MemberEndpointSlice] = self._informer(
                "endpointslices", collection_path("discovery.k8s.io/v1", "endpointslices", namespace),
                parse_endpoint_slice, self._slice_changed, label_selector="kubernetes.io/service-name")
            self.ingresses: Informer[MemberIngress] = self._informer(
                "ingresses", collection_path("networking.k8s.io/v1", "ingresses", namespace),
                parse_member_ingress, self._ingress_changed)

    @property
    def name(self) -> str:
        return self.cluster.name

    def _informer(self, kind: str, path: str, parse: Callable, on_change: Callable,
                  label_selector: str = "") -> Informer:
        assert self.client is not None
        self._informer_up[kind] = False
        informer: Informer = Informer(f"{self.name}/{kind}", self.client, path, parse, on_change,
                                      functools.partial(self._informer_state, kind), label_selector)
        self.informers.append(informer)
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

    def _probe_loop(self) -> None:
        """Watches notice a server that closes its connections at once; a silent one (a cut network)
        only when a read times out. A cheap /readyz probe notices it within a few seconds."""
        assert self.client is not None
        interval = min(5.0, max(0.5, self.grace_period / 4))
        failures = 0
        while not self._stopping.wait(interval):
            try:
                self.client.request("GET", "/readyz", timeout=interval)
                answered = True
            except KubeError as error:
                answered = 0 < error.status < 500
            failures = 0 if answered else failures + 1
            if failures == HEARTBEAT_FAILURES:
                self._informer_state("heartbeat", False, "API server not answering /readyz")
                for informer in self.informers:
                    informer.interrupt()  # dead streams would otherwise hide the silence until a read timeout
            elif answered and not self._informer_up.get("heartbeat", True):
                self._informer_state("heartbeat", True, "answering")

    @property
    def synced_or_failed(self) -> bool:
        """Start-up waits for this: caches filled, or the member known to be down (no answer, or
        credentials refused); a busy server (429, 5xx) is waited for, not written off."""
        return self.client is None or self.ever_synced or self.down_since is not None and self._hard_failure

    @property
    def credentials_refused(self) -> bool:
        """Down with 401/403: the Secret may have been rotated, so the engine rebuilds the connection."""
        return self.down_since is not None and self._last_status in (401, 403)

    # --- reachability -------------------------------------------------------------------------

    def _informer_state(self, kind: str, up: bool, detail: str, status: int = 0) -> None:
        with self._lock:
            if not up:
                self._hard_failure = status in (0, 401, 403)
                self._last_status = status
            before = self.connected
            self._informer_up[kind] = up
            after = self.connected
            if after:
                self.ever_synced = self.ever_synced or all(i.synced.is_set() for i in self.informers)
                self.down_since = None
                self.detail = ""
            elif self.down_since is None:
                self.down_since = time.monotonic()
                self.detail = detail
        if before != after:
            self._on_state(self)

    @property
    def connected(self) -> bool:
        return self.client is not None and all(self._informer_up.values())

    def reachability(self, now: float | None = None) -> Reachability:
        now = now if now is not None else time.monotonic()
        if self.client is None:
            return Reachability.UNAVAILABLE
        if not self.ever_synced:
            in_grace = now - self.created_at < self.grace_period
            return Reachability.CONNECTING if in_grace else Reachability.UNAVAILABLE
        if self.connected or self.down_since is None:
            return Reachability.CONNECTED
        lost_for = now - self.down_since
        return Reachability.IN_GRACE if lost_for < self.grace_period else Reachability.LOST

    def grace_expires_in(self) -> float | None:
        """Seconds until the member's last known answer expires; None while there is nothing to expire."""
        if self.client is not None and not self.ever_synced:
            return max(0.0, self.created_at + self.grace_period - time.monotonic())
        if self.down_since is None:
            return None
        return max(0.0, self.down_since + self.grace_period - time.monotonic())

    # --- views for the policy -----------------------------------------------------------------

    def service_view(self, namespace: str, name: str) -> MemberView:
        reach = self.reachability()
        if self.client is None or reach in _NO_CACHE:
            return MemberView(self.cluster, reach, detail=self.detail)
        key = (namespace, name)
        return MemberView(self.cluster, reach, service=self.services.store.get(f"{namespace}/{name}"),
                          ready_endpoints=sum(self._slices.get(key, {}).values()))

    def ingress_view(self, namespace: str, name: str) -> MemberView:
        reach = self.reachability()
        if self.client is None or reach in _NO_CACHE:
            return MemberView(self.cluster, reach, detail=self.detail)
        ingress = self.ingresses.store.get(f"{namespace}/{name}")
        ready = {}
        if ingress is not None:
            ready = {svc: sum(self._slices.get((namespace, svc), {}).values()) for svc in ingress.backend_services}
        return MemberView(self.cluster, reach, ingress=ingress, backend_ready=ready)

    # --- change handlers (informer threads) ---------------------------------------------------

    def _affected_by_service(self, namespace: str, name: str) -> list[IntentKey]:
        keys = [IntentKey(IntentKind.SERVICE, namespace, name)]
        keys += [IntentKey(IntentKind.INGRESS, namespace, ing)
                 for ing in sorted(self._ingress_backends.get((namespace, name), ()))]
        return keys

    def _service_changed(self, old: MemberService | None, new: MemberService | None) -> None:
        current = new or old
        assert current is not None
        self._notify(self._affected_by_service(current.namespace, current.name))

    def _slice_changed(self, old: MemberEndpointSlice | None, new: MemberEndpointSlice | None) -> None:
        affected: list[IntentKey] = []
        with self._lock:
            for item, present in ((old, False), (new, True)):
                if item is None or not item.service_name:
                    continue
                ref = (item.namespace, item.service_name)
                before = sum(self._slices[ref].values())
                if present:
                    self._slices[ref][item.name] = item.ready_endpoints
                else:
                    self._slices[ref].pop(item.name, None)
                if not self._slices[ref]:
                    del self._slices[ref]
                if before != sum(self._slices.get(ref, {}).values()):
                    affected += self._affected_by_service(*ref)
        if affected:
            self._notify(affected)

    def _ingress_changed(self, old: MemberIngress | None, new: MemberIngress | None) -> None:
        with self._lock:
            if old is not None:
                for svc in old.backend_services:
                    self._ingress_backends[(old.namespace, svc)].discard(old.name)
            if new is not None:
                for svc in new.backend_services:
                    self._ingress_backends[(new.namespace, svc)].add(new.name)
        current = new or old
        assert current is not None
        self._notify([IntentKey(IntentKind.INGRESS, current.namespace, current.name)])
