"""End-to-end failover with HTTP health checks: an app starts answering 500 (its endpoints stay ready) -> every
regional CoreDNS stops returning its cluster's address, through the whole real chain (stand-in ingress on a real
VIP, probers in three regions' network namespaces, quorum in the aggregator, DNSEndpoint, ExternalDNS, webhook,
etcd, CoreDNS).

Two serving paths in the same run: each DNS region runs the shipped CoreDNS (`file` plugin, zone file rendered from
etcd by fleetdns-zonefiles) and a second CoreDNS on the same etcd with the Corefile shipped before (`etcd` +
`cache 1`), so every trial measures both on the same events.

    python -m bench.health_failover [--trials 20] [--no-doc]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fleetdns.apipaths import DNS_ENDPOINTS, HEALTH_REPORTS
from fleetdns.kubeapi import KubeClient
from rig.aggregator import client_for
from rig.coredns import CoreDNS, dns_answers, etcd_cached_corefile, regional_coredns
from rig.federation import Federation
from rig.workloads import ensure_namespace

NAMESPACE, APP, DOMAIN_REF = "bench", "app", "fleet"
PROBER_REGIONS = ("east", "west", "north")
GOAL_P99 = 2.0
PAUSES = random.Random(11)  # seeded: reruns pause alike
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks-health-failover.md"
SHIPPED, PREVIOUS = "shipped Corefile (zone file)", "etcd + cache 1 (shipped before)"


def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (with 20 trials, p99 lies between the two slowest)."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Trial:
    """Seconds from the switch to 500 until each milestone."""

    first_report: float = float("nan")  # the first region's HealthReport lists the app Down
    quorum_reports: float = float("nan")  # a majority (2 of 3) lists it
    dns_endpoint: float = float("nan")  # the DNSEndpoint no longer targets east
    answers: dict[str, float] = field(default_factory=dict)  # per CoreDNS label: stopped returning east


@dataclass
class Stack:
    federation: Federation
    host: KubeClient
    name: str
    east: str
    west: str
    servers: dict[str, tuple[str, CoreDNS]]  # label -> (serving path, server)


def start(workdir: Path) -> Stack:
    print("[health-failover] starting 3 API servers, 2 DNS regions, 3 prober regions, the aggregator", flush=True)
    federation = Federation(workdir, prober_regions=PROBER_REGIONS)
    try:
        federation.start()
        host = client_for(federation.fleet.host)
        for server in federation.fleet.servers:
            ensure_namespace(server.api_client(), NAMESPACE)
        name = f"{APP}.{NAMESPACE}.{DOMAIN_REF}.svc.{federation.zone}"
        vips = {m: federation.run_app(m, NAMESPACE, APP, name, ["10.1.0.1"]) for m in federation.fleet.members}
        federation.create_service_intent(NAMESPACE, APP, DOMAIN_REF, spec={
            "healthCheck": {"httpGet": {"port": 80, "path": "/healthz"}, "periodSeconds": 1, "timeoutSeconds": 1,
                            "failureThreshold": 1, "successThreshold": 1}})
        servers: dict[str, tuple[str, CoreDNS]] = {}
        for region_name, region in federation.regions.items():
            assert region.coredns is not None
            servers[f"{region_name}/zonefile"] = (SHIPPED, region.coredns)
            previous = regional_coredns(federation.zone, region.etcd.endpoints, workdir / "etcd" / region_name,
                                        f"coredns-{region_name}-etcd",
                                        corefile=etcd_cached_corefile(federation.zone, region.etcd.endpoints,
                                                                      cache=1)).start()
            servers[f"{region_name}/etcd-cache1"] = (PREVIOUS, previous)
        stack = Stack(federation, host, name, vips["east"][0], vips["west"][0], servers)
        wait(stack, lambda s: all(answers(s, label) == {s.east, s.west} for label in s.servers), 120, "publication")
        return stack
    except BaseException:
        federation.stop()
        raise


def answers(stack: Stack, label: str) -> set[str]:
    server = stack.servers[label][1]
    try:
        return dns_answers(server.host, server.port, stack.name, "A", timeout=1)
    except Exception:  # noqa: BLE001 - a timeout is "no answer yet" for the poll
        return set()


def wait(stack: Stack, done, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not done(stack):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(0.02)


def keep_asking(stack: Stack, seconds: float) -> None:
    """Query every CoreDNS every 10 ms for ``seconds``, as clients keep doing between failures. Idle servers
    would let their cache entries expire, and the trial's first query would then refill every cache just as
    the app fails: each cache's one-second cycle would start with the trial and its lag be a whole second."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for label in stack.servers:
            answers(stack, label)
        time.sleep(0.01)


def reports_down(stack: Stack) -> int:
    """How many regions' reports list the app Down on east."""
    items = stack.host.get(HEALTH_REPORTS.path(NAMESPACE)).get("items") or []
    return sum(1 for r in items if r["spec"]["cluster"] == "east"
               and any(e["intent"] == f"ServiceDNSRecord/{APP}" for e in (r.get("status") or {}).get("down") or []))


def endpoint_targets(stack: Stack) -> set[str]:
    obj = stack.host.get(DNS_ENDPOINTS.path(NAMESPACE, f"service-{APP}"))
    return {t for e in obj["spec"].get("endpoints") or [] if e["recordType"] == "A"
            and e["dnsName"] == stack.name for t in e.get("targets") or []}


def trial(stack: Stack) -> Trial:
    result = Trial()
    stack.federation.dataplane.set_app_status("east", stack.name, 500)  # type: ignore[union-attr]
    started = time.monotonic()
    api_every, last_api = 0.05, 0.0
    while len(result.answers) < len(stack.servers):
        now = time.monotonic() - started
        if now > 60:
            raise TimeoutError(f"failover not seen everywhere after 60 s: {result}")
        for label in stack.servers:
            if label not in result.answers and stack.east not in answers(stack, label):
                result.answers[label] = time.monotonic() - started
        if now - last_api >= api_every:  # the API milestones at a coarser grain: they cost the host API server
            last_api = now
            if result.quorum_reports != result.quorum_reports:  # NaN: not yet
                down = reports_down(stack)
                if down >= 1 and result.first_report != result.first_report:
                    result.first_report = time.monotonic() - started
                if down >= 2:
                    result.quorum_reports = time.monotonic() - started
            if result.dns_endpoint != result.dns_endpoint and stack.east not in endpoint_targets(stack):
                result.dns_endpoint = time.monotonic() - started
        time.sleep(0.005)
    stack.federation.dataplane.set_app_status("east", stack.name, None)  # type: ignore[union-attr]
    wait(stack, lambda s: all(answers(s, label) == {s.east, s.west} for label in s.servers), 60, "recovery")
    return result


def row(label: str, values: list[float]) -> str:
    values = [v for v in values if v == v]
    if not values:
        return f"| {label} | - | - | - |"
    return (f"| {label} | {statistics.median(values):.2f} s | {percentile(values, 0.99):.2f} s | "
            f"{max(values):.2f} s |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--no-doc", action="store_true", help=f"do not rewrite {DOC.name}")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fleetdns-bench-health-"))
    stack = start(workdir)
    trials: list[Trial] = []
    try:
        for index in range(args.trials):
            keep_asking(stack, PAUSES.uniform(0.5, 1.5))  # the change lands at every phase of probe, sync, cache
            result = trial(stack)
            trials.append(result)
            worst = {s: max(v for k, v in result.answers.items() if stack.servers[k][0] == s) for s in (SHIPPED,
                                                                                                        PREVIOUS)}
            print(f"[health-failover] trial {index + 1}/{args.trials}: first report {result.first_report:.2f} s, "
                  f"quorum {result.quorum_reports:.2f} s, DNSEndpoint {result.dns_endpoint:.2f} s, every CoreDNS: "
                  f"zone file {worst[SHIPPED]:.2f} s, etcd + cache 1 {worst[PREVIOUS]:.2f} s "
                  f"({', '.join(f'{k} {v:.2f}' for k, v in sorted(result.answers.items()))})", flush=True)
    finally:
        for setting, server in stack.servers.values():
            if setting == PREVIOUS:
                server.stop()
        stack.federation.stop()
    every = {s: [max(v for k, v in t.answers.items() if stack.servers[k][0] == s) for t in trials]
             for s in (SHIPPED, PREVIOUS)}
    rows = [row("first region reports Down", [t.first_report for t in trials]),
            row("a majority of regions report Down", [t.quorum_reports for t in trials]),
            row("DNSEndpoint without the address", [t.dns_endpoint for t in trials]),
            row(f"every regional CoreDNS stopped answering it: **{SHIPPED}**", every[SHIPPED]),
            row(f"every regional CoreDNS stopped answering it: {PREVIOUS}", every[PREVIOUS])]
    for line in rows:
        print(f"[health-failover] {line}")
    p99 = percentile(every[SHIPPED], 0.99)
    verdict = "met" if p99 <= GOAL_P99 else "MISSED"
    print(f"[health-failover] p99 with the shipped Corefile: {p99:.2f} s (goal <= {GOAL_P99} s: {verdict})")
    if not args.no_doc:
        DOC.write_text(render_doc(rows, p99, verdict, args.trials))
        print(f"[health-failover] wrote {DOC}")
    return 0


ANCHORS = "\n".join("| " + " | ".join(cells) + " |" for cells in (
    ("FleetDNS", "HTTP check through the VIP from 3 regions every `periodSeconds` (1 s here), quorum of 2",
     "measured above"),
    ("k8gb", "no HTTP check: ready endpoints only (ready pods answering 500 stay in); after readiness fails, "
             "peers poll each other every 30 s, then the record TTL (30 s)",
     "30 s + TTL (its demo: about 48 s); never for ready-but-broken apps"),
    ("Kuadrant dns-operator v0.17", "HTTPS probe through each VIP every 5 min, failureThreshold 5",
     "5 min x threshold (about 30 min at the defaults)"),
    ("PowerDNS LUA `ifurlup`", "each DNS server process probes on its own, every 5 s",
     "about 5-10 s; servers disagree meanwhile, a restarted one starts with every target down"),
))


def render_doc(rows: list[str], p99: float, verdict: str, trials: int) -> str:
    return f"""# Failover with HTTP health checks, end to end

`python -m bench.health_failover` (`make bench-health-failover`), run
{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, {os.cpu_count()} cores.

| seconds from the app's first 500 until | p50 | p99 | max |
|---|---|---|---|
{chr(10).join(rows)}

p99 until every regional CoreDNS with the shipped Corefile stops returning the address: **{p99:.2f} s**
(goal ≤ {GOAL_P99} s: {verdict}). {trials} trials; with 20 the p99 lies between the two slowest.

## Where the time goes, and why CoreDNS serves a zone file
Each stage above owns a share of the time: the probe phase (the first of three regions to check after the
failure, then the others corroborate at once), the report and the aggregator's quorum and DNSEndpoint (tens of
ms), ExternalDNS's next sync (its loop runs on a fixed one-second ticker: up to 1 s), the webhook and etcd (ms),
then the serving path. The shipped path adds the sidecar's pick-up (it polls its etcd mirror every 100 ms) and
CoreDNS's reload tick (100 ms) plus the parse of the zone. The Corefile shipped before (`etcd` + `cache 1`,
measured on the same events in the second row) adds a cache entry that lives one whole second: two uniform
one-second waits (ExternalDNS and the cache) alone have a p99 of 1.86 s, so it cannot stay under 2 s once the
probe and the aggregator add their few hundred ms, and without the cache the `etcd` plugin serves 0.24x of
`file` (`benchmarks-serving.md`). The zone file meets both goals: serving at the `file` plugin's rate by
construction, failover within the goal; clients see each record's own TTL (`recordTTL`).

## Beside the anchors (their documented models, same check settings where they have them)

| system | what detects an app answering 500 | time until DNS answers change |
|---|---|---|
{ANCHORS}

## Method
- Real processes: host, east and west kube-apiservers; per DNS region (east, west) etcd, the shipped CoreDNS
  (`coredns/Corefile`: `file` with `reload 100ms` + `loadbalance weighted`, its fleetdns-zonefiles sidecar), a
  second CoreDNS on the same etcd with the Corefile shipped before (`etcd` + `cache 1`), the webhook provider
  and ExternalDNS v0.22.0 (`--interval=500ms`: it syncs on its 1 s ticker); the aggregator; a prober in each
  of east, west and north, each in its own network namespace reaching the VIPs over a veth pair and the rig's
  delaying forwarder at 0 ms (rig/dataplane.py, rig/delay.py).
- Each member's VIP (198.18.0.0/16 in the rig's LB namespace) is served by a stand-in ingress controller that
  routes by Host. One ServiceDNSRecord with `healthCheck: httpGet /healthz, periodSeconds: 1, timeoutSeconds: 1,
  failureThreshold: 1, successThreshold: 1`, RoundRobin over east and west.
- Each trial tells east's stand-in to answer 500 for the app (endpoints stay ready), then polls every CoreDNS
  (A queries, 5 ms apart) until none returns east's address; HealthReports and the DNSEndpoint are read every
  50 ms for the stage columns (so those carry up to 50 ms of polling grain). Then the app answers 200 again and
  the trial ends when every CoreDNS answers both addresses; a random 0.5-1.5 s pause, during which every
  CoreDNS keeps being asked every 10 ms as clients would, starts the next one at another phase of the probe,
  sync and cache cycles (an idle pause would let every cache entry expire, and the trial's first query would
  then align each cache's one-second cycle with the failure: a measured lag of exactly 1 or 2 s).
- The chain's parts: probe phase (< 1 period; a region that sees a new Down from another region checks at once),
  report write, aggregator quorum and DNSEndpoint (ms), ExternalDNS's next tick (< 1 s), webhook and etcd (ms),
  then the serving path: sidecar poll (< 100 ms), render and rename (ms), CoreDNS reload tick (< 100 ms) and
  parse (ms at this size) for the shipped Corefile; the cache (< 1 s) for `etcd` + `cache 1`.
"""


if __name__ == "__main__":
    raise SystemExit(main())
