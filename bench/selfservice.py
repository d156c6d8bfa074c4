"""Self-service benchmark: 2,000 annotated apps of mixed kinds across 3 member clusters (real kube-apiservers).

No intent is written by hand: every app carries ``fleetdns.io/global: "true"`` on its member objects and the
aggregator generates the host intents. Measures cold start (process start → every generated app's DNSEndpoint
correct), one change → DNSEndpoint updated (p50/p99, an annotation change and a readiness change, each seen
through a watch on the host as ExternalDNS would see it) and the aggregator's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.aggregator import EndpointWatch, progress, slice_body
from bench.machine import rss_mb
from fleetdns.apipaths import (
    DOMAINS,
    ENDPOINT_SLICES,
    GATEWAY_API_GROUP,
    GATEWAYS,
    HTTP_ROUTES,
    INGRESSES,
    NAMESPACES,
    OPENSHIFT_ROUTES,
    SERVICES,
    Resource,
)
from fleetdns.kubeapi import KubeClient
from rig import Fleet
from rig.aggregator import AggregatorProcess, client_for
from rig.binaries import REPO_ROOT
from rig.workloads import apply_crds, register_member

MEMBERS = ("east", "west", "central")
NAMESPACE = "bench"
ZONE = "bench.example.com"
GOALS = {"cold_s": 60.0, "p99_ms": 250.0, "rss_mb": 300.0}
DOC = REPO_ROOT / "docs" / "benchmarks-selfservice.md"
TTL = 30
WRITE_METRICS = tuple(f"fleetdns_aggregator_{name}" for name in (
    "dnsendpoint_writes_total{", "status_writes_total{", "events_total{", "generated_intent", "reconcile_errors_total{",
    "reconcile_duration_seconds_count", "reconcile_duration_seconds_sum"))


@dataclass(frozen=True)
class AppKind:
    """One kind of exposure: how an app of this kind is created in a member and where its answer shows."""

    name: str  # the member kind
    endpoint_prefix: str  # the generated intent's DNSEndpoint: <prefix>-<app>
    create: Callable[[KubeClient, int, str, int], None]  # (member client, member index, app, app index)
    answer_name: Callable[[str], str]  # the name whose A record the benchmark follows
    resource: Resource  # where the annotated object lives (annotation changes)


def member_vip(member_index: int, app_index: int) -> str:
    return f"10.{10 + member_index}.{app_index // 250}.{app_index % 250 + 1}"


def ingress_vip(member_index: int) -> str:
    return f"10.{20 + member_index}.0.1"


def gateway_vip(member_index: int) -> str:
    return f"10.{30 + member_index}.0.1"


def router_vip(member_index: int) -> str:
    return f"10.{40 + member_index}.0.1"


ROUTER_NAMESPACE = "openshift-ingress"  # the aggregator's default --openshift-router-namespace


def app_annotations(ttl: int = TTL) -> dict[str, str]:
    return {"fleetdns.io/global": "true", "fleetdns.io/domain": "fleet", "fleetdns.io/ttl": str(ttl)}


def backend(client: KubeClient, app: str, service_type: str = "ClusterIP", meta: dict[str, Any] | None = None) -> None:
    body = SERVICES.manifest(app, spec={"type": service_type, "selector": {"app": app}, "ports": [{"port": 80}]})
    body["metadata"].update(meta or {})
    client.create(SERVICES.path(NAMESPACE), body)
    client.create(ENDPOINT_SLICES.path(NAMESPACE), slice_body(app, True))


def create_service_app(client: KubeClient, member_index: int, app: str, index: int) -> None:
    backend(client, app, "LoadBalancer", {"annotations": app_annotations()})
    client.merge_patch(SERVICES.path(NAMESPACE, app, "status"),
                       {"status": {"loadBalancer": {"ingress": [{"ip": member_vip(member_index, index)}]}}})


def create_ingress_app(client: KubeClient, member_index: int, app: str, index: int) -> None:
    backend(client, app)
    body = INGRESSES.manifest(app, spec={"rules": [{"host": f"{app}.{ZONE}", "http": {"paths": [{
        "path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": app, "port": {"number": 80}}}}]}}]})
    body["metadata"]["annotations"] = app_annotations()
    client.create(INGRESSES.path(NAMESPACE), body)
    client.merge_patch(INGRESSES.path(NAMESPACE, app, "status"),
                       {"status": {"loadBalancer": {"ingress": [{"ip": ingress_vip(member_index)}]}}})


def create_httproute_app(client: KubeClient, member_index: int, app: str, index: int) -> None:
    backend(client, app)
    body = HTTP_ROUTES.manifest(app, NAMESPACE, spec={
        "parentRefs": [{"name": "public"}], "hostnames": [f"{app}.{ZONE}"],
        "rules": [{"backendRefs": [{"name": app, "port": 80}]}]})
    body["metadata"]["annotations"] = app_annotations()
    client.create(HTTP_ROUTES.path(NAMESPACE), body)
    client.merge_patch(HTTP_ROUTES.path(NAMESPACE, app, "status"), {"status": {"parents": [{
        "parentRef": {"group": GATEWAY_API_GROUP, "kind": "Gateway", "namespace": NAMESPACE, "name": "public"},
        "controllerName": "bench.fleetdns.io/gateway",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "bench",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}]}})


def create_route_app(client: KubeClient, member_index: int, app: str, index: int) -> None:
    backend(client, app)
    body = OPENSHIFT_ROUTES.manifest(app, NAMESPACE, spec={"host": f"{app}.{ZONE}",
                                                          "to": {"kind": "Service", "name": app}})
    body["metadata"]["annotations"] = app_annotations()
    client.create(OPENSHIFT_ROUTES.path(NAMESPACE), body)
    client.merge_patch(OPENSHIFT_ROUTES.path(NAMESPACE, app, "status"), {"status": {"ingress": [{
        "host": f"{app}.{ZONE}", "routerName": "default", "wildcardPolicy": "None",
        "conditions": [{"type": "Admitted", "status": "True"}]}]}})


def create_shared_infrastructure(client: KubeClient, member_index: int) -> None:
    """What the routes hang on in each member: one Gateway and the default OpenShift router's Service."""
    client.create(GATEWAYS.path(NAMESPACE), GATEWAYS.manifest("public", NAMESPACE, spec={
        "gatewayClassName": "bench", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                                                    "hostname": f"*.{ZONE}"}]}))
    client.merge_patch(GATEWAYS.path(NAMESPACE, "public", "status"), {"status": {"addresses": [
        {"type": "IPAddress", "value": gateway_vip(member_index)}]}})
    client.create(NAMESPACES.path(), NAMESPACES.manifest(ROUTER_NAMESPACE))
    client.create(SERVICES.path(ROUTER_NAMESPACE), SERVICES.manifest("router-default", spec={
        "type": "LoadBalancer", "selector": {"app": "router"}, "ports": [{"port": 443}]}))
    client.merge_patch(SERVICES.path(ROUTER_NAMESPACE, "router-default", "status"),
                       {"status": {"loadBalancer": {"ingress": [{"ip": router_vip(member_index)}]}}})


KINDS: dict[str, AppKind] = {
    "Service": AppKind("Service", "service", create_service_app,
                       lambda app: f"{app}.{NAMESPACE}.fleet.svc.{ZONE}", SERVICES),
    "Ingress": AppKind("Ingress", "ingress", create_ingress_app, lambda app: f"{app}.{ZONE}", INGRESSES),
    "HTTPRoute": AppKind("HTTPRoute", "gateway", create_httproute_app, lambda app: f"{app}.{ZONE}", HTTP_ROUTES),
    "Route": AppKind("Route", "route", create_route_app, lambda app: f"{app}.{ZONE}", OPENSHIFT_ROUTES),
}
VIPS: dict[str, Callable[[int, int], str]] = {
    "Service": member_vip, "Ingress": lambda m, _: ingress_vip(m), "HTTPRoute": lambda m, _: gateway_vip(m),
    "Route": lambda m, _: router_vip(m)}


@dataclass(frozen=True)
class App:
    index: int
    kind: AppKind

    @property
    def name(self) -> str:
        return f"{self.kind.name.lower()[:5]}-{self.index:05d}"

    @property
    def endpoint(self) -> str:
        return f"{self.kind.endpoint_prefix}-{self.name}"

    def vip(self, member_index: int) -> str:
        return VIPS[self.kind.name](member_index, self.index)


def plan(count: int, kinds: list[str]) -> list[App]:
    """The apps, kinds interleaved round robin."""
    return [App(i, KINDS[kinds[i % len(kinds)]]) for i in range(count)]


class Answers(EndpointWatch[tuple[int, frozenset[str]]]):
    """Per DNSEndpoint, the followed name's A record (TTL, targets)."""

    def __init__(self, host: KubeClient, followed: dict[str, str]) -> None:
        self.followed = followed  # DNSEndpoint name → the DNS name to follow
        super().__init__(host, NAMESPACE)

    def _parse(self, raw: dict[str, Any]) -> tuple[str, tuple[int, frozenset[str]]]:
        name = raw["metadata"]["name"]
        for endpoint in (raw.get("spec") or {}).get("endpoints") or []:
            if endpoint["dnsName"] == self.followed.get(name) and endpoint["recordType"] == "A" \
                    and not endpoint.get("setIdentifier"):
                return name, (int(endpoint.get("recordTTL") or 0), frozenset(endpoint.get("targets") or []))
        return name, (0, frozenset())

    def wait_for_answer(self, endpoint: str, want: tuple[int, frozenset[str]], timeout: float) -> bool:
        return self.wait(lambda: self.answers.get(endpoint) == want, timeout)


def populate(members: dict[str, KubeClient], apps: list[App]) -> None:
    for member_index, (name, client) in enumerate(members.items()):
        started = time.monotonic()
        client.create(NAMESPACES.path(), NAMESPACES.manifest(NAMESPACE))
        create_shared_infrastructure(client, member_index)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda app, c=client, m=member_index: app.kind.create(c, m, app.name, app.index), apps))
        progress(f"{name}: {len(apps)} annotated apps in {time.monotonic() - started:.1f}s")


def run(count: int, kinds: list[str], changes: int, workdir: Path, log_level: str = "warning") -> dict[str, Any]:
    progress(f"starting host + {len(MEMBERS)} member kube-apiservers (workdir {workdir})")
    fleet = Fleet(MEMBERS, workdir / "fleet").start()
    aggregator: AggregatorProcess | None = None
    try:
        host_api = fleet.host.api_client()
        apply_crds(host_api)
        fleet.install_gateway_api(*MEMBERS)
        fleet.install_openshift_routes(*MEMBERS)
        host = client_for(fleet.host)
        members = {name: client_for(server) for name, server in fleet.members.items()}
        apps = plan(count, kinds)
        populate(members, apps)
        for name, server in fleet.members.items():
            register_member(host_api, name, name, f"{name}-a", server.embedded_kubeconfig())
        host.create(NAMESPACES.path(), NAMESPACES.manifest(NAMESPACE))
        host.create(DOMAINS.path(NAMESPACE), DOMAINS.manifest("fleet", spec={"domain": ZONE}))

        answers = Answers(host, {app.endpoint: app.kind.answer_name(app.name) for app in apps})
        answers.informer.start()
        expected = {app.endpoint: (TTL, frozenset(app.vip(m) for m in range(len(MEMBERS)))) for app in apps}

        def correct() -> int:
            return sum(1 for k, v in expected.items() if answers.answers.get(k) == v)

        progress("starting the aggregator (cold start; no intent exists yet)")
        started = time.monotonic()
        aggregator = AggregatorProcess(fleet.host.kubeconfig, [f"--log-level={log_level}"], workdir,
                                       name="aggregator")
        aggregator.start(timeout=120)
        ready_s = time.monotonic() - started
        last = [0.0]

        def converged() -> bool:
            if time.monotonic() - last[0] > 5:
                last[0] = time.monotonic()
                progress(f"  {correct()}/{count} DNSEndpoints correct")
            return len(answers.answers) >= count and correct() == count

        if not answers.wait(converged, 300):
            raise SystemExit(f"cold start did not converge within 300 s ({correct()}/{count})")
        cold_s = time.monotonic() - started
        progress(f"cold start converged in {cold_s:.1f}s (ready after {ready_s:.1f}s)")

        annotation_latencies = measure_annotation_changes(members, answers, expected, apps, changes)
        readiness_latencies = measure_readiness_changes(members, answers, expected, apps, changes)
        rss = rss_mb(aggregator.pid)
        progress(f"peak RSS {rss:.0f} MB")
        return {"count": count, "kinds": kinds, "members": len(MEMBERS), "ready_s": ready_s, "cold_s": cold_s,
                "annotation": summary(annotation_latencies), "readiness": summary(readiness_latencies),
                "rss_mb": rss, "metrics": [line for line in aggregator.metrics().splitlines()
                                           if line.startswith(WRITE_METRICS)]}
    finally:
        if aggregator is not None:
            stopping = time.monotonic()
            code = aggregator.stop()
            progress(f"aggregator stopped (exit code {code}) in {time.monotonic() - stopping:.1f}s")
        fleet.stop()
        progress("API servers stopped")


def summary(latencies: list[float]) -> dict[str, float]:
    return {"n": len(latencies), "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": statistics.quantiles(latencies, n=100)[98] * 1000 if len(latencies) >= 2 else latencies[0] * 1000,
            "max_ms": max(latencies) * 1000}


def measure_annotation_changes(members: dict[str, KubeClient], answers: Answers,
                               expected: dict[str, tuple[int, frozenset[str]]], apps: list[App],
                               changes: int) -> list[float]:
    """Change ``fleetdns.io/ttl`` on the winning (oldest: first member's) object of one random app; the clock
    stops when the host watch shows the app's record with the new TTL (member watch → generated intent written
    → intent watch → reconcile → DNSEndpoint)."""
    rng = random.Random(10)
    first = next(iter(members.values()))
    latencies: list[float] = []
    for change in range(changes):
        app = apps[rng.randrange(len(apps))]
        ttl, targets = expected[app.endpoint]
        new_ttl = 60 if ttl == TTL else TTL
        started = time.monotonic()
        first.merge_patch(app.kind.resource.path(NAMESPACE, app.name),
                          {"metadata": {"annotations": {"fleetdns.io/ttl": str(new_ttl)}}})
        if not answers.wait_for_answer(app.endpoint, (new_ttl, targets), 10):
            raise SystemExit(f"annotation change {change}: {app.name} did not follow within 10 s")
        latencies.append(time.monotonic() - started)
        expected[app.endpoint] = (new_ttl, targets)
        if (change + 1) % 50 == 0:
            progress(f"  {change + 1}/{changes} annotation changes, p50 so far "
                     f"{statistics.median(latencies) * 1000:.1f} ms")
        time.sleep(0.01)
    return latencies


def measure_readiness_changes(members: dict[str, KubeClient], answers: Answers,
                              expected: dict[str, tuple[int, frozenset[str]]], apps: list[App],
                              changes: int) -> list[float]:
    """Flip one member's backend readiness of one random app; the clock stops when the answer follows."""
    rng = random.Random(11)
    names = list(members)
    latencies: list[float] = []
    for change in range(changes):
        app, member_index = apps[rng.randrange(len(apps))], rng.randrange(len(names))
        ttl, targets = expected[app.endpoint]
        target = app.vip(member_index)
        now_ready = target not in targets
        want = (ttl, targets | {target} if now_ready else targets - {target})
        started = time.monotonic()
        members[names[member_index]].replace(ENDPOINT_SLICES.path(NAMESPACE, f"{app.name}-1"),
                                             slice_body(app.name, now_ready))
        if not answers.wait_for_answer(app.endpoint, want, 10):
            raise SystemExit(f"readiness change {change}: {app.name} did not follow within 10 s")
        latencies.append(time.monotonic() - started)
        expected[app.endpoint] = want
        if (change + 1) % 50 == 0:
            progress(f"  {change + 1}/{changes} readiness changes, p50 so far "
                     f"{statistics.median(latencies) * 1000:.1f} ms")
        time.sleep(0.01)
    return latencies


def write_doc(result: dict[str, Any]) -> None:
    def verdict(value: float, goal: float) -> str:
        return "met" if value <= goal else "MISSED"

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    a, r = result["annotation"], result["readiness"]
    metrics = "\n".join(f"    {line}" for line in result["metrics"])
    apps = f"{result['count']:,}"
    rows = [
        ("measure", "result", "goal", ""), ("---", "---", "---", "---"),
        (f"cold start: process start → all {apps} generated apps' DNSEndpoints correct",
         f"{result['cold_s']:.1f} s (ready after {result['ready_s']:.1f} s)", "≤ 60 s",
         verdict(result["cold_s"], GOALS["cold_s"])),
    ]
    for label, m in (("annotation", a), ("readiness", r)):
        rows += [(f"{label} change → DNSEndpoint updated, p50", f"{m['p50_ms']:.1f} ms", "", ""),
                 (f"{label} change → DNSEndpoint updated, p99 (n={m['n']})",
                  f"{m['p99_ms']:.1f} ms (max {m['max_ms']:.1f} ms)", "≤ 250 ms",
                  verdict(m["p99_ms"], GOALS["p99_ms"]))]
    rows.append(("aggregator peak RSS (VmHWM)", f"{result['rss_mb']:.0f} MB", "≤ 300 MB",
                 verdict(result["rss_mb"], GOALS["rss_mb"])))
    table = "\n".join("| " + " | ".join(row) + " |" for row in rows)
    DOC.write_text(f"""# Self-service benchmark

`make bench-selfservice` (`python -m bench.selfservice`), run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.

## Results

{table}

From the aggregator's /metrics at the end:

{metrics}

## Method

- Rig: real kube-apiservers on loopback (host + {result['members']} members: {', '.join(MEMBERS)}), each with its
  own etcd. No controllers: the benchmark writes the load-balancer statuses and EndpointSlices they would.
- {result['count']:,} apps, kinds interleaved ({', '.join(result['kinds'])}), each present in every member with
  `fleetdns.io/global: "true"`, `fleetdns.io/domain: fleet` and `fleetdns.io/ttl`, a backend Service and a ready
  EndpointSlice. The host holds one Domain and **no intent**: the aggregator generates every one.
- Cold start: from spawning `python -m aggregator` (defaults, leader election on) until a watch on the host's
  DNSEndpoints (what ExternalDNS sees) shows every app's A record with all {result['members']} members' addresses.
  It includes generating {result['count']:,} intents, then reconciling each.
- Annotation change: {a['n']} sequential changes of `fleetdns.io/ttl` on one random app's winning object (the
  oldest: the first member's); the clock stops when the host watch shows the new TTL. The path: member watch →
  generated intent updated on the host → intent watch → reconcile → DNSEndpoint.
- Readiness change: {r['n']} sequential flips of one random member's EndpointSlice of one random app's backend;
  the clock stops when the answer gains or loses that member's address.
- Peak RSS: `VmHWM` of the aggregator process at the end of the run.
- Machine: {cpu}, {platform.machine()}, {os.cpu_count()} CPUs shared with the API servers and etcds,
  {mem_gb:.0f} GB RAM;
  Python {platform.python_version()}.
""")
    progress(f"results written to {DOC.relative_to(REPO_ROOT)}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.selfservice", description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=2000)
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--changes", type=int, default=200, help="changes of each sort")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks-selfservice.md")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if unknown := [k for k in kinds if k not in KINDS]:
        parser.error(f"unknown kinds {unknown}: choose from {', '.join(KINDS)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fleetdns-bench-selfservice-"))
    result = run(args.apps, kinds, args.changes, workdir, args.log_level)
    a, r = result["annotation"], result["readiness"]
    progress(f"cold start {result['cold_s']:.1f}s; annotation change p99 {a['p99_ms']:.1f} ms; readiness change "
             f"p99 {r['p99_ms']:.1f} ms; peak RSS {result['rss_mb']:.0f} MB")
    for line in result["metrics"]:
        progress(f"  {line}")
    if not args.no_doc:
        write_doc(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
