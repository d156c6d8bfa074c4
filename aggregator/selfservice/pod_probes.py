"""The health check of a discovered app, derived from its backend pods' HTTP readiness probe (docs/design/sources.md
§3, as redhat-cop's global-load-balancer operator does): same path and scheme, sent through the cluster's VIP.

- A Service: the probe's container port (a number, or a container port's name) is mapped to the Service port
  whose ``targetPort`` targets it (by number or by name): that is the port on the VIP.
- An Ingress or a route: port 80 (HTTP) or 443 (HTTPS) of the ingress or gateway, Host = the published name.
- No HTTP readiness probe (none, or exec/tcpSocket/grpc): no health check; readiness of the endpoints alone decides.
- Pods that disagree: the most common probe (then the first in order), and the disagreement is reported.

The mapping is pure; ``PodProbes`` lists the pods of a selector on demand (when an app is found or its Service
changes), off every informer thread, and caches the verdict: pods are never watched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aggregator.model import as_dict, as_list
from aggregator.sources.service import ServicePort
from fleetdns.apipaths import PODS
from fleetdns.healthcheck import HealthCheck, HttpGet, Scheme
from fleetdns.kubeapi import KubeClient, KubeError

logger = logging.getLogger("aggregator.selfservice.readiness")
POD_SAMPLE = 100  # pods read per selector: enough to find the common probe, bounded for a large Deployment
RETRY_SECONDS = 30.0  # a failed pod list is tried again after this long
INGRESS_PORTS = {Scheme.HTTP: 80, Scheme.HTTPS: 443}
MAX_PERIOD = 3600  # the CRD's bounds on the generated check
MAX_THRESHOLD = 100


@dataclass(frozen=True)
class PodProbe:
    """One pod's HTTP readiness probe, with the container port it targets resolved to its number (and name)."""

    path: str
    scheme: Scheme
    port: int  # the container port number
    port_name: str = ""  # the container port's name, when the pod names it
    period_seconds: int = 10
    timeout_seconds: int = 1
    failure_threshold: int = 3
    success_threshold: int = 1

    def __str__(self) -> str:
        port = f"{self.port_name} ({self.port})" if self.port_name else str(self.port)
        return f"{self.scheme} {self.path} on container port {port}"


@dataclass(frozen=True)
class ProbeVerdict:
    """What a selector's pods say: the most common HTTP readiness probe (None: no pod has one) and why."""

    probe: PodProbe | None
    pods: int = 0
    note: str = ""  # disagreement among the pods, or why the pods could not be read
    error: bool = False  # the pods could not be listed (the note says why)


@dataclass(frozen=True)
class DerivedCheck:
    """The generated intent's health check (None: none) and, when it is not the plain probe, why."""

    check: HealthCheck | None
    note: str = ""


def pod_probe(pod: Mapping[str, Any]) -> PodProbe | None:
    """The HTTP readiness probe of the pod's first container that has one (None: no container has one, or its
    port names no container port)."""
    for container in as_list((pod.get("spec") or {}).get("containers")):
        probe = as_dict(container.get("readinessProbe"))
        http = probe.get("httpGet")
        if not isinstance(http, dict):
            continue
        ports = {str(p["name"]): p.get("containerPort") for p in map(as_dict, as_list(container.get("ports")))
                 if p.get("name") and isinstance(p.get("containerPort"), int)}
        raw_port = http.get("port")
        if isinstance(raw_port, str) and not raw_port.isdigit():
            number, name = ports.get(raw_port), raw_port
            if not isinstance(number, int):
                return None  # a named port the container does not declare: kubelet cannot probe it either
        elif isinstance(raw_port, int | str):
            number = int(raw_port)
            name = next((n for n, p in ports.items() if p == number), "")
        else:
            return None
        path = str(http.get("path") or "/")
        scheme = Scheme.HTTPS if str(http.get("scheme") or "").upper() == "HTTPS" else Scheme.HTTP
        return PodProbe(path if path.startswith("/") else f"/{path}", scheme, number, name,
                        _bounded(probe.get("periodSeconds"), 10, MAX_PERIOD),
                        _bounded(probe.get("timeoutSeconds"), 1, MAX_PERIOD),
                        _bounded(probe.get("failureThreshold"), 3, MAX_THRESHOLD),
                        _bounded(probe.get("successThreshold"), 1, MAX_THRESHOLD))
    return None


def common_probe(probes: Sequence[PodProbe | None]) -> ProbeVerdict:
    """The most common HTTP readiness probe among the pods (ties: the first seen); pods without one count as a
    different answer. None when no pod has one."""
    if not probes:
        return ProbeVerdict(None, 0, "no pod matches the Service's selector")
    counts = Counter(probes)
    order = {probe: index for index, probe in reversed(list(enumerate(probes)))}
    ranked = sorted(counts, key=lambda p: (p is None, -counts[p], order[p]))
    best = next((p for p in ranked if p is not None), None)
    if best is None:
        return ProbeVerdict(None, len(probes))
    note = ""
    if len(counts) > 1:
        others = "; ".join(f"{counts[p]} with {'no HTTP readiness probe' if p is None else p}"
                           for p in ranked if p != best)
        note = f"pods disagree: {counts[best]} of {len(probes)} with {best} (used); {others}"
    return ProbeVerdict(best, len(probes), note)


def service_port_for(probe: PodProbe, ports: Iterable[ServicePort]) -> int | None:
    """The Service port whose targetPort is the probe's container port (by number or by name); None if none."""
    for port in sorted(ports, key=lambda p: p.port):
        if port.protocol.upper() != "TCP":
            continue
        if isinstance(port.target_port, int) and port.target_port == probe.port:
            return port.port
        if isinstance(port.target_port, str) and probe.port_name and port.target_port == probe.port_name:
            return port.port
    return None


def derive_health_check(verdict: ProbeVerdict, service_ports: Iterable[ServicePort] | None) -> DerivedCheck:
    """The check of a generated intent from its pods' verdict. ``service_ports``: the Service's ports when the app
    is a Service (its VIP is the Service's); None for an Ingress or a route (port 80/443 of the ingress or gateway)."""
    probe = verdict.probe
    if probe is None:
        return DerivedCheck(None, verdict.note)
    port = INGRESS_PORTS[probe.scheme] if service_ports is None else service_port_for(probe, service_ports)
    if port is None:
        return DerivedCheck(None, f"no Service port targets the readiness probe's container port "
                                  f"{probe.port_name or probe.port}: no health check")
    timeout = min(probe.timeout_seconds, probe.period_seconds)
    check = HealthCheck(http_get=HttpGet(port, probe.path, probe.scheme), period_seconds=probe.period_seconds,
                        timeout_seconds=timeout, failure_threshold=probe.failure_threshold,
                        success_threshold=probe.success_threshold)
    return DerivedCheck(check, verdict.note)


def combine(verdicts: Sequence[ProbeVerdict]) -> ProbeVerdict:
    """The verdict over several backend Services' pods (an Ingress or a route): each pod's probe counts once, so
    the most common probe over all of them wins; a failed list is passed on when nothing else is known."""
    if len(verdicts) == 1:
        return verdicts[0]
    weighted: list[PodProbe | None] = []
    for verdict in verdicts:
        weighted += [verdict.probe] * max(verdict.pods, 1 if verdict.probe is not None else 0)
    combined = common_probe(weighted)
    failed = [v.note for v in verdicts if v.error]
    if combined.probe is None and failed:
        return ProbeVerdict(None, combined.pods, "; ".join(failed), error=True)
    return combined


def health_check_spec(check: HealthCheck) -> dict[str, Any]:
    """``spec.healthCheck`` as the intent CRDs take it (what a generated intent carries)."""
    spec: dict[str, Any] = {"periodSeconds": check.period_seconds, "timeoutSeconds": check.timeout_seconds,
                            "failureThreshold": check.failure_threshold, "successThreshold": check.success_threshold}
    if check.http_get is not None:
        http: dict[str, Any] = {"path": check.http_get.path, "port": check.http_get.port,
                                "scheme": str(check.http_get.scheme)}
        if check.http_get.host:
            http["host"] = check.http_get.host
        if check.http_get.headers:
            http["httpHeaders"] = [{"name": name, "value": value} for name, value in check.http_get.headers]
        spec["httpGet"] = http
    elif check.tcp_socket is not None:
        spec["tcpSocket"] = {"port": check.tcp_socket.port}
    return spec


def selector_query(selector: Iterable[tuple[str, str]]) -> str:
    """A Service's ``spec.selector`` as a ``labelSelector`` query (equality only, as Services select)."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector))


PodsKey = tuple[str, str, str]  # (cluster, namespace, label selector)
Lister = Callable[[str, str], list[dict[str, Any]]]  # (namespace, label selector) → pods


class PodProbes:
    """The readiness-probe verdict per (cluster, namespace, selector), read on demand by one background thread.

    ``lookup`` never blocks: it answers from the cache, or None while the pods are being listed (then ``on_ready``
    is called with the key once the verdict is known). ``refresh`` lists again (the app's Service changed);
    ``retain`` forgets every key no app uses any more."""

    def __init__(self, on_ready: Callable[[PodsKey], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._on_ready = on_ready
        self._clock = clock
        self._verdicts: dict[PodsKey, tuple[ProbeVerdict, float]] = {}  # verdict, when it was read
        self._listers: dict[PodsKey, Lister] = {}
        self._pending: list[PodsKey] = []
        self._lock = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> PodProbes:
        self._thread = threading.Thread(target=self._run, name="pod-probes", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()

    def lookup(self, key: PodsKey, client: KubeClient) -> ProbeVerdict | None:
        with self._lock:
            cached = self._verdicts.get(key)
            if cached is not None and not (cached[0].error and self._clock() - cached[1] >= RETRY_SECONDS):
                return cached[0]
            self._queue(key, member_lister(client))
            return cached[0] if cached is not None else None

    def refresh(self, key: PodsKey, client: KubeClient) -> None:
        """List again (the Service changed); the cached verdict answers meanwhile."""
        with self._lock:
            self._queue(key, member_lister(client))

    def retain(self, keys: Iterable[PodsKey]) -> None:
        wanted = set(keys)
        with self._lock:
            for key in [k for k in self._verdicts if k not in wanted]:
                del self._verdicts[key]

    def _queue(self, key: PodsKey, lister: Lister) -> None:
        self._listers[key] = lister
        if key not in self._pending:
            self._pending.append(key)
            self._lock.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                key = self._pending.pop(0)
                lister = self._listers.pop(key)
            verdict = read_verdict(lister, key)
            with self._lock:
                before = self._verdicts.get(key)
                self._verdicts[key] = (verdict, self._clock())
            if before is None or before[0] != verdict:
                self._on_ready(key)


def member_lister(client: KubeClient) -> Lister:
    def list_pods(namespace: str, selector: str) -> list[dict[str, Any]]:
        answer = client.get(PODS.path(namespace), {"labelSelector": selector, "limit": POD_SAMPLE})
        return [item for item in answer.get("items") or [] if isinstance(item, dict)]
    return list_pods


def read_verdict(lister: Lister, key: PodsKey) -> ProbeVerdict:
    """List the pods of ``key`` and judge their probes; a failed list is a verdict with ``error`` (no check)."""
    cluster, namespace, selector = key
    try:
        pods = lister(namespace, selector)
    except KubeError as error:
        logger.warning("cannot list pods for a readiness probe", extra={
            "cluster": cluster, "namespace": namespace, "selector": selector, "status": error.status,
            "reason": error.reason})
        return ProbeVerdict(None, 0, f"cannot list pods in {cluster}: {error.status} {error.reason}", error=True)
    running = [pod for pod in pods if not as_dict(pod.get("metadata")).get("deletionTimestamp")]
    return common_probe([pod_probe(pod) for pod in running])


def _bounded(raw: Any, default: int, upper: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        return default
    return min(raw, upper)


