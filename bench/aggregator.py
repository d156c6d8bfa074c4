"""Aggregator benchmark: thousands of intents across ten member clusters (real kube-apiservers).

Each app runs in ``--placement`` of the ``--members`` member clusters, behind a LoadBalancer Service with
``--slices`` EndpointSlices of ``--endpoints`` endpoints each, as a real cluster has; ``--unselected`` more Services
per member belong to no intent (the aggregator still watches them). The host holds one ServiceDNSRecord per app: a
mix of RoundRobin, Weighted and Failover, a third of them with an HTTP health check (no prober runs here, so
readiness decides, as it does before the first report).

Measures, per size: cold start (process start → every DNSEndpoint correct), EndpointSlice change → DNSEndpoint
updated (p50/p99 over ``--changes`` changes, seen through a watch on the host as ExternalDNS would see it), a member
lost (every app in it unready at once: seconds until every DNSEndpoint left it, and back), the aggregator's peak RSS
(VmHWM) and its CPU; and the cost per intent and per member object. ``--intents 2000,10000`` runs each size on a
fresh fleet in the same run, so the growth is measured, not assumed. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from bench.machine import cpu_seconds, machine, rss_mb
from fleetdns.apipaths import DNS_ENDPOINTS, DOMAINS, ENDPOINT_SLICES, NAMESPACES, SERVICE_DNS_RECORDS, SERVICES
from fleetdns.informer import Informer
from fleetdns.kubeapi import KubeClient
from rig import Fleet
from rig.aggregator import AggregatorProcess, client_for
from rig.binaries import REPO_ROOT
from rig.scrape import scrape
from rig.waiting import wait_for
from rig.workloads import apply_crds, register_member

MEMBER_NAMES = ("east", "west", "central", "north", "south", "paris", "tokyo", "sydney", "lima", "mumbai")
NAMESPACE = "bench"
ZONE = "bench.example.com"
POLICIES = ("RoundRobin", "Weighted", "Failover")
T = TypeVar("T")
GOALS = {"cold_s": 60.0, "p99_ms": 250.0, "rss_mb": 1024.0}
DOC = REPO_ROOT / "docs" / "benchmarks-aggregator.md"
CREATE_THREADS = 16


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


@dataclass(frozen=True)
class Shape:
    """What the fleet holds: ``intents`` apps, each in ``placement`` of ``members`` clusters."""

    intents: int
    members: int = 10
    placement: int = 3
    slices: int = 2
    endpoints: int = 20
    unselected: float = 0.2

    @property
    def member_names(self) -> tuple[str, ...]:
        return MEMBER_NAMES[:self.members]

    def placed(self, app: int) -> tuple[int, ...]:
        """The members ``app`` runs in, in its failover order."""
        return tuple((app + offset) % self.members for offset in range(self.placement))

    def apps_in(self, member: int) -> list[int]:
        return [app for app in range(self.intents) if member in self.placed(app)]

    def extras(self, member: int) -> int:
        return round(len(self.apps_in(member)) * self.unselected)

    def member_objects(self) -> int:
        """Services and EndpointSlices across every member."""
        services = sum(len(self.apps_in(m)) + self.extras(m) for m in range(self.members))
        return services * (1 + self.slices)


def policy(app: int) -> str:
    return POLICIES[app % len(POLICIES)]


def checked(app: int) -> bool:
    """A third of each policy's apps have a health check."""
    return (app // len(POLICIES)) % 3 == 0


def vip(member: int, app: int) -> str:
    return f"10.{10 + member}.{app // 250}.{app % 250 + 1}"


def service_name(app: int) -> str:
    return f"svc-{app:05d}"


def global_name(app: int) -> str:
    return f"{service_name(app)}.{NAMESPACE}.fleet.svc.{ZONE}"


def answer(shape: Shape, app: int, ready: Callable[[int, int], bool], last: frozenset[str]) -> frozenset[str]:
    """The A targets the intent should publish given which members are ready for it: every ready member's VIP
    (RoundRobin, Weighted: weights order the answers, they do not drop any), or the first ready one (Failover);
    with none ready, the ``last`` answer (fail open)."""
    up = [member for member in shape.placed(app) if ready(member, app)]
    if not up:
        return last
    if policy(app) == "Failover":
        up = up[:1]
    return frozenset(vip(member, app) for member in up)


def slice_body(name: str, ready: bool, index: int = 1, endpoints: int = 1) -> dict[str, Any]:
    """EndpointSlice ``<name>-<index>`` of Service ``name``: ``endpoints`` endpoints, all ready or none."""
    body = ENDPOINT_SLICES.manifest(f"{name}-{index}")
    body["metadata"]["labels"] = {"kubernetes.io/service-name": name}
    listed = [{"addresses": [f"10.{200 + index}.{n // 250}.{n % 250 + 1}"], "conditions": {"ready": ready},
               "nodeName": f"node-{n % 7}", "zone": f"zone-{n % 3}"} for n in range(endpoints)]
    return {**body, "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": listed}


def set_ready(client: KubeClient, shape: Shape, name: str, ready: bool) -> None:
    """Every endpoint of every slice of the Service ready or not (the member is in the answer iff any is ready)."""
    for index in range(1, shape.slices + 1):
        client.replace(ENDPOINT_SLICES.path(NAMESPACE, f"{name}-{index}"),
                       slice_body(name, ready, index, shape.endpoints))


def create_member_objects(client: KubeClient, shape: Shape, member: int, pool: ThreadPoolExecutor) -> None:
    client.create(NAMESPACES.path(), NAMESPACES.manifest(NAMESPACE))
    names = [(service_name(app), vip(member, app)) for app in shape.apps_in(member)]
    names += [(f"extra-{n:05d}", f"10.{10 + member}.{200 + n // 250}.{n % 250 + 1}")
              for n in range(shape.extras(member))]

    def one(item: tuple[str, str]) -> None:
        name, address = item
        client.create(SERVICES.path(NAMESPACE), SERVICES.manifest(name, spec={
            "type": "LoadBalancer", "allocateLoadBalancerNodePorts": False,  # else the node-port range runs out
            "selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}))
        client.merge_patch(SERVICES.path(NAMESPACE, name, "status"),
                           {"status": {"loadBalancer": {"ingress": [{"ip": address}]}}})
        for index in range(1, shape.slices + 1):
            client.create(ENDPOINT_SLICES.path(NAMESPACE), slice_body(name, True, index, shape.endpoints))

    list(pool.map(one, names))


def create_host_objects(host: KubeClient, shape: Shape, pool: ThreadPoolExecutor) -> None:
    host.create(NAMESPACES.path(), NAMESPACES.manifest(NAMESPACE))
    host.create(DOMAINS.path(NAMESPACE), DOMAINS.manifest("fleet", spec={"domain": ZONE}))
    names = shape.member_names

    def one(app: int) -> None:
        spec: dict[str, Any] = {"domainRef": "fleet"}
        placed = [names[m] for m in shape.placed(app)]
        if policy(app) == "Weighted":
            spec["loadBalancing"] = {"policy": "Weighted", "weights": [
                {"target": member, "weight": 100 - 20 * rank} for rank, member in enumerate(placed)]}
        elif policy(app) == "Failover":
            spec["loadBalancing"] = {"policy": "Failover", "failoverOrder": placed}
        if checked(app):
            spec["healthCheck"] = {"httpGet": {"port": 80, "path": "/healthz"}, "periodSeconds": 5}
        host.create(SERVICE_DNS_RECORDS.path(NAMESPACE), SERVICE_DNS_RECORDS.manifest(service_name(app), spec=spec))

    list(pool.map(one, range(shape.intents)))


class EndpointWatch(Generic[T]):
    """Watches DNSEndpoints on the host (as ExternalDNS does): per DNSEndpoint, what ``_parse`` follows of it."""

    def __init__(self, host: KubeClient, namespace: str = NAMESPACE) -> None:
        self.answers: dict[str, T] = {}
        self.changed = threading.Condition()
        self.informer = Informer("bench/dnsendpoints", host, DNS_ENDPOINTS.path(namespace), self._parse,
                                 self._changed)

    def _parse(self, raw: dict[str, Any]) -> tuple[str, T]:
        raise NotImplementedError

    def _changed(self, old: Any, new: Any) -> None:
        with self.changed:
            if new is None:
                self.answers.pop(old[0], None)
            else:
                self.answers[new[0]] = new[1]
            self.changed.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(remaining)
        return True


class GlobalAnswers(EndpointWatch[frozenset[str]]):
    """Each intent's global A answer, and when it last changed (monotonic)."""

    def __init__(self, host: KubeClient) -> None:
        super().__init__(host)
        self.changed_at: dict[str, float] = {}

    def _parse(self, raw: dict[str, Any]) -> tuple[str, frozenset[str]]:
        name = raw["metadata"]["name"].removeprefix("service-")
        index = int(name.removeprefix("svc-"))
        for endpoint in (raw.get("spec") or {}).get("endpoints") or []:
            if endpoint["dnsName"] == global_name(index) and endpoint["recordType"] == "A":
                return name, frozenset(endpoint.get("targets") or [])
        return name, frozenset()

    def _changed(self, old: Any, new: Any) -> None:
        if new is not None:
            self.changed_at[new[0]] = time.monotonic()
        super()._changed(old, new)

    def correct(self, expected: dict[str, frozenset[str]]) -> int:
        return sum(1 for name, want in expected.items() if self.answers.get(name) == want)


def metrics_url(aggregator: AggregatorProcess) -> str:
    return f"http://127.0.0.1:{aggregator.port}/metrics"


def settled(aggregator: AggregatorProcess) -> bool:
    """Nothing left to do: no intent queued, no status waiting to be written, no Event waiting to be posted."""
    found = scrape(metrics_url(aggregator))
    return all(found.get(f"fleetdns_aggregator_{name}", 1) == 0
               for name in ("queue_depth", "statuses_pending", "events_pending"))


def gc_pauses(aggregator: AggregatorProcess) -> dict[str, tuple[int, float, float]]:
    """Per generation: (collections, seconds in all, the longest pause's bucket bound) since the process started."""
    found, name = scrape(metrics_url(aggregator)), "fleetdns_aggregator_gc_pause_seconds"
    result = {}
    for generation in ("0", "1", "2"):
        count = found.get(f'{name}_count{{generation="{generation}"}}', 0)
        prefix = f'{name}_bucket{{generation="{generation}",le="'
        bounds = sorted((float(key[len(prefix):].split('"')[0]), value) for key, value in found.items()
                        if key.startswith(prefix))
        longest = next((bound for bound, value in bounds if value >= count), float("inf")) if count else 0.0
        result[generation] = (int(count), found.get(f'{name}_sum{{generation="{generation}"}}', 0.0), longest)
    return result


@dataclass
class Result:
    shape: Shape
    member_objects: int
    setup_s: float = 0.0
    ready_s: float = 0.0
    cold_s: float = 0.0
    settled_s: float = 0.0  # cold start until every status written and every Event posted
    cold_cpu_s: float = 0.0
    rss_after_cold_mb: float = 0.0
    latencies: list[float] = field(default_factory=list)
    changes_cpu_s: float = 0.0
    wave: dict[str, float] = field(default_factory=dict)
    rss_mb: float = 0.0
    writes: list[str] = field(default_factory=list)
    gc: dict[str, tuple[int, float, float]] = field(default_factory=dict)

    def percentile_ms(self, q: int) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] * 1000 if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=100)[q - 1] * 1000


def run(shape: Shape, changes: int, workdir: Path, log_level: str = "warning", memray: bool = False) -> Result:
    names = shape.member_names
    result = Result(shape, shape.member_objects())
    progress(f"{shape.intents:,} intents: starting host + {len(names)} member kube-apiservers (workdir {workdir})")
    fleet = Fleet(names, workdir / "fleet").start()
    aggregator: AggregatorProcess | None = None
    answers: GlobalAnswers | None = None
    try:
        host_api = fleet.host.api_client()
        apply_crds(host_api)
        host = client_for(fleet.host)
        members = {name: client_for(server) for name, server in fleet.members.items()}
        started = time.monotonic()
        with ThreadPoolExecutor(CREATE_THREADS) as pool:
            for index, (name, server) in enumerate(fleet.members.items()):
                create_member_objects(members[name], shape, index, pool)
                register_member(host_api, name, name, f"{name}-a", server.embedded_kubeconfig())
                progress(f"  {name}: {len(shape.apps_in(index)):,} app Services + {shape.extras(index):,} others, "
                         f"{shape.slices} EndpointSlices of {shape.endpoints} endpoints each")
            create_host_objects(host, shape, pool)
        result.setup_s = time.monotonic() - started
        progress(f"  {result.member_objects:,} member objects and {shape.intents:,} intents in {result.setup_s:.0f}s")

        answers = GlobalAnswers(host)
        answers.informer.start()
        down: set[tuple[int, int]] = set()  # (member, app) not ready
        expected = {service_name(app): answer(shape, app, lambda m, a: (m, a) not in down, frozenset())
                    for app in range(shape.intents)}

        progress("  starting the aggregator (cold start)")
        started = time.monotonic()
        aggregator = AggregatorProcess(fleet.host.kubeconfig, [f"--log-level={log_level}"], workdir, name="aggregator")
        if memray:  # the same process under memray's tracker (the allocations at the high watermark, by line)
            aggregator.argv = [str(Path(sys.executable).with_name("memray")), "run", "--force", "-o",
                               str(workdir / "aggregator.memray"), *aggregator.argv]
        aggregator.start(timeout=180)
        result.ready_s = time.monotonic() - started
        last = [0.0]

        def report() -> bool:
            done = answers.correct(expected)
            if time.monotonic() - last[0] > 5:
                last[0] = time.monotonic()
                progress(f"    {done:,}/{shape.intents:,} DNSEndpoints correct")
            return done == shape.intents

        if not answers.wait(report, 600):
            raise SystemExit("cold start did not converge within 600 s")
        result.cold_s = time.monotonic() - started
        result.cold_cpu_s = cpu_seconds(aggregator.pid)
        result.rss_after_cold_mb = rss_mb(aggregator.pid, "VmRSS")
        progress(f"  cold start converged in {result.cold_s:.1f}s (ready after {result.ready_s:.1f}s), "
                 f"{result.cold_cpu_s:.1f} s CPU, RSS {result.rss_after_cold_mb:.0f} MB")

        wait_for(lambda: settled(aggregator), 600, "the aggregator settled (statuses, Events)", interval=0.2)
        result.settled_s = time.monotonic() - started
        progress(f"  settled (every status written, every Event posted) after {result.settled_s:.1f}s")
        cpu_before = cpu_seconds(aggregator.pid)
        result.latencies = measure_changes(shape, members, answers, expected, down, changes)
        result.changes_cpu_s = cpu_seconds(aggregator.pid) - cpu_before
        result.wave = member_lost(shape, members, answers, expected, down)
        result.rss_mb = rss_mb(aggregator.pid)
        result.writes = [line for line in aggregator.metrics().splitlines()
                         if line.startswith("fleetdns_aggregator_dnsendpoint_writes_total{")]
        result.gc = gc_pauses(aggregator)
        progress("  GC pauses: " + "; ".join(f"generation {g}: {n} ({total:.2f} s, longest ≤ {longest:g} s)"
                                              for g, (n, total, longest) in result.gc.items()))
        progress(f"  peak RSS {result.rss_mb:.0f} MB")
        return result
    finally:
        if answers is not None:
            answers.informer.stop()
        if aggregator is not None:
            code = aggregator.stop()
            progress(f"  aggregator stopped (exit code {code})")
        fleet.stop()
        if memray and aggregator is not None:  # where the memory was at the high watermark, by function
            summary = subprocess.run([str(Path(sys.executable).with_name("memray")), "summary", "-r", "25",
                                      str(workdir / "aggregator.memray")], capture_output=True, text=True,
                                     check=False, env={**os.environ, "COLUMNS": "200"})
            print(summary.stdout or summary.stderr, flush=True)


def measure_changes(shape: Shape, members: dict[str, KubeClient], answers: GlobalAnswers,
                    expected: dict[str, frozenset[str]], down: set[tuple[int, int]], changes: int) -> list[float]:
    """Flip one app's readiness in one of its members at a time; time from the last slice written until the host's
    DNSEndpoint answer follows (a change that leaves the answer as it was, e.g. a Failover app's standby, is not
    timed: nothing would be seen)."""
    rng = random.Random(4)
    names = shape.member_names
    latencies: list[float] = []
    while len(latencies) < changes:
        app = rng.randrange(shape.intents)
        member = rng.choice(shape.placed(app))
        name = service_name(app)
        down.symmetric_difference_update({(member, app)})
        want = answer(shape, app, lambda m, a: (m, a) not in down, expected[name])
        set_ready(members[names[member]], shape, name, (member, app) not in down)
        started = time.monotonic()
        if not answers.wait(lambda: answers.answers.get(name) == want, 10):  # noqa: B023 - waited on at once
            raise SystemExit(f"change {len(latencies)}: {name} did not follow within 10 s")
        if want != expected[name]:
            latencies.append(time.monotonic() - started)
            if len(latencies) % 50 == 0:
                progress(f"    {len(latencies)}/{changes} changes, p50 so far "
                         f"{statistics.median(latencies) * 1000:.1f} ms")
        expected[name] = want
        time.sleep(0.01)
    return latencies


def member_lost(shape: Shape, members: dict[str, KubeClient], answers: GlobalAnswers,
                expected: dict[str, frozenset[str]], down: set[tuple[int, int]]) -> dict[str, float]:
    """Every app in the first member unready at once (its slices rewritten by 16 threads, as a cluster losing its
    nodes has them rewritten), then ready again: per direction, seconds until every DNSEndpoint followed, the p50 and
    p99 of the apps' own times, and how many DNSEndpoints changed a second."""
    client, apps = members[shape.member_names[0]], shape.apps_in(0)
    figures: dict[str, float] = {"apps": float(len(apps))}
    for direction, ready in (("lost", False), ("back", True)):
        for app in apps:
            (down.discard if ready else down.add)((0, app))
        moving = set()
        for app in apps:
            want = answer(shape, app, lambda m, a: (m, a) not in down, expected[service_name(app)])
            if want != expected[service_name(app)]:
                moving.add(service_name(app))
            expected[service_name(app)] = want
        started = time.monotonic()
        with ThreadPoolExecutor(CREATE_THREADS) as pool:
            list(pool.map(lambda app: set_ready(client, shape, service_name(app), ready), apps))  # noqa: B023
        written = time.monotonic() - started
        if not answers.wait(lambda: all(answers.answers.get(n) == expected[n] for n in moving), 600):  # noqa: B023
            behind = [f"{n}: {sorted(answers.answers.get(n) or [])}, expected {sorted(expected[n])}"
                      for n in sorted(moving) if answers.answers.get(n) != expected[n]]
            raise SystemExit(f"member {direction}: {len(behind)} DNSEndpoints did not follow within 600 s, e.g. "
                             f"{behind[:3]}")
        times = sorted(answers.changed_at[name] - started for name in moving)
        figures[f"{direction}_apps_moved"] = float(len(moving))
        figures[f"{direction}_written_s"] = written
        figures[f"{direction}_all_s"] = times[-1]
        figures[f"{direction}_p50_s"] = statistics.median(times)
        figures[f"{direction}_p99_s"] = statistics.quantiles(times, n=100)[98] if len(times) > 1 else times[0]
        figures[f"{direction}_per_s"] = len(times) / times[-1]
        progress(f"  member {shape.member_names[0]} {direction}: {len(moving):,} DNSEndpoints moved, all after "
                 f"{times[-1]:.1f}s (slices written in {written:.1f}s), p50 {figures[f'{direction}_p50_s']:.1f}s")
    return figures


def table(results: Iterable[Result]) -> str:
    results = list(results)
    head = "| measure | " + " | ".join(f"{r.shape.intents:,} intents" for r in results) + " | goal |"
    rows = [head, "|---|" + "---|" * len(results) + "---|"]

    def row(label: str, values: Iterable[str], goal: str = "") -> None:
        rows.append(f"| {label} | " + " | ".join(values) + f" | {goal} |")

    row("member objects watched (Services + EndpointSlices)", (f"{r.member_objects:,}" for r in results))
    row("cold start: process start → every DNSEndpoint correct",
        (f"{r.cold_s:.1f} s (ready {r.ready_s:.1f} s)" for r in results), "≤ 60 s")
    row("settled: every status written, every Event posted", (f"{r.settled_s:.1f} s" for r in results))
    row("change → DNSEndpoint, p50", (f"{r.percentile_ms(50):.1f} ms" for r in results))
    row("change → DNSEndpoint, p99", (f"{r.percentile_ms(99):.1f} ms (max {max(r.latencies) * 1000:.0f} ms, "
                                     f"n={len(r.latencies)})" for r in results), "≤ 250 ms")
    for direction in ("lost", "back"):
        row(f"member {direction}: every moved DNSEndpoint followed",
            (f"{r.wave[f'{direction}_all_s']:.1f} s ({r.wave[f'{direction}_apps_moved']:,.0f} apps; slices written "
             f"in {r.wave[f'{direction}_written_s']:.1f} s)" for r in results))
        row(f"member {direction}: per app p50 / p99",
            (f"{r.wave[f'{direction}_p50_s']:.1f} s / {r.wave[f'{direction}_p99_s']:.1f} s" for r in results))
    row("peak RSS (VmHWM)", (f"{r.rss_mb:.0f} MB" for r in results), "≤ 1 GiB")
    row("RSS after cold start", (f"{r.rss_after_cold_mb:.0f} MB" for r in results))
    row("CPU for the cold start", (f"{r.cold_cpu_s:.1f} s ({r.cold_cpu_s / r.shape.intents * 1000:.2f} ms an intent)"
                                   for r in results))
    row("GC pauses of the oldest generation: count, total, longest",
        (f"{r.gc['2'][0]}, {r.gc['2'][1]:.2f} s, ≤ {r.gc['2'][2]:g} s" for r in results))
    row("CPU per change", (f"{r.changes_cpu_s / max(1, len(r.latencies)) * 1000:.1f} ms" for r in results))
    for small, large in zip(results, results[1:], strict=False):
        if large.shape.intents <= small.shape.intents:
            continue  # a repeat of the same size (the spread across runs), not a growth
        intents = large.shape.intents - small.shape.intents
        objects = large.member_objects - small.member_objects
        rows.append(f"\nFrom {small.shape.intents:,} to {large.shape.intents:,} intents ({objects:,} more member "
                    f"objects): {(large.rss_after_cold_mb - small.rss_after_cold_mb) * 1024 / intents:.1f} KiB of RSS "
                    f"and {(large.cold_cpu_s - small.cold_cpu_s) / intents * 1000:.2f} ms of cold-start CPU per added "
                    f"intent with its {objects / intents:.1f} member objects; CPU per change "
                    f"{large.changes_cpu_s / small.changes_cpu_s:.2f}x, change p99 "
                    f"{large.percentile_ms(99) / small.percentile_ms(99):.2f}x.")
    return "\n".join(rows)


def write_doc(results: list[Result], argv: str) -> None:
    shape = results[0].shape
    writes = "\n".join(f"    {r.shape.intents:,} intents: {line}" for r in results for line in r.writes)
    kept = ""  # hand-written notes (the spread across runs, the profile) survive a re-run
    if DOC.exists() and "\n## Notes" in DOC.read_text():
        kept = "\n## Notes" + DOC.read_text().split("\n## Notes", 1)[1]
    DOC.write_text(f"""# Aggregator benchmark

`make bench-aggregator` (`python -m bench.aggregator {argv}`), run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on
{machine()} (the CPUs shared with every API server and etcd of the run); Python {platform.python_version()},
kube-apiserver v1.36.3. Each size on a fresh fleet, one after the other in the same run.

## Results

{table(results)}

DNSEndpoint writes (the aggregator's /metrics at the end of each size):

{writes}

## Method

- Rig: real kube-apiservers on loopback (host + {shape.members} members: {', '.join(shape.member_names)}), each with
  its own etcd. No controller-manager: the benchmark plays the controllers (Service `status.loadBalancer`, the
  EndpointSlices).
- Each app runs in {shape.placement} of the {shape.members} members, behind a LoadBalancer Service
  (`allocateLoadBalancerNodePorts: false`) with {shape.slices} EndpointSlices of {shape.endpoints} endpoints each;
  each member also holds {shape.unselected:.0%} more Services (with their slices) that no intent selects. The host
  holds one ServiceDNSRecord per app: RoundRobin, Weighted and Failover in turn, a third with an HTTP health check
  (no prober runs, so readiness decides). Everything exists before the aggregator starts.
- Cold start: from spawning `python -m aggregator` (leader election on, defaults otherwise) until a watch on the
  host's DNSEndpoints (the view ExternalDNS has) shows every intent's global A record as its policy answers it.
  CPU is the process's own (utime + stime) at that moment; RSS its VmRSS.
- Change: one app's readiness flipped in one of its members (every slice rewritten), timed from the last write
  until the host watch shows the answer following; changes that leave the answer as it was (a Failover standby)
  are made but not timed. Sequential.
- Member lost: every app of the first member unready at once (16 threads rewriting the slices), timed from the first
  write until each app's DNSEndpoint left that member; then back.
""" + kept)
    progress(f"results written to {DOC.relative_to(REPO_ROOT)}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench-aggregator", description=__doc__.splitlines()[0])
    parser.add_argument("--intents", default="2000,2000,2000,2000,2000,10000",
                        help="comma-separated sizes, each on a fresh fleet in this run (default: 2,000 five times, "
                             "the spread across runs, then 10,000)")
    parser.add_argument("--members", type=int, default=10, choices=range(2, len(MEMBER_NAMES) + 1),
                        metavar=f"2..{len(MEMBER_NAMES)}")
    parser.add_argument("--placement", type=int, default=3, help="members each app runs in")
    parser.add_argument("--slices", type=int, default=2, help="EndpointSlices per Service")
    parser.add_argument("--endpoints", type=int, default=20, help="endpoints per EndpointSlice")
    parser.add_argument("--unselected", type=float, default=0.2, help="share of Services no intent selects")
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--no-doc", action="store_true", help=f"print only; do not rewrite {DOC.name}")
    parser.add_argument("--log-level", default="warning", help="the aggregator's --log-level (its log is in workdir)")
    parser.add_argument("--memray", action="store_true",
                        help="run the aggregator under memray and print where its memory is at the high watermark")
    args = parser.parse_args()
    sizes = [int(size) for size in args.intents.split(",") if size.strip()]
    if args.memray and not Path(sys.executable).with_name("memray").exists():
        pip = Path(sys.executable).with_name("pip")
        parser.error(f"--memray needs memray in this virtualenv: {pip} install memray")
    if args.placement > args.members:
        parser.error("--placement cannot exceed --members")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fleetdns-bench-agg-"))
    results = [run(Shape(size, args.members, args.placement, args.slices, args.endpoints, args.unselected),
                   args.changes, workdir / f"run-{index + 1}-intents-{size}", args.log_level, args.memray)
               for index, size in enumerate(sizes)]
    print(table(results), flush=True)
    if not args.no_doc:
        argv = " ".join(f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                        if k in ("intents", "members", "placement", "slices", "endpoints", "unselected", "changes"))
        write_doc(results, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
