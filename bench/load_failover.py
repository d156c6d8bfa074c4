"""Serving latency of one regional CoreDNS under a sustained dnsperf load: its apps steady vs failing over and back.

A federation (rig/federation.py: host, members east and west, a DNS stack per region, probers in east, west and
north) and ``--apps`` Failover apps with HTTP checks (rig/failovers.py). dnsperf asks east's CoreDNS for every
app's A and AAAA at ``--rate`` queries a second for ``--duration`` seconds (``-v``: every query's latency), twice
per round: once with every app steady, once while every app fails over and back in waves through the whole chain.
The two phases alternate over ``--rounds``, so other work on the shared machine falls on both alike. Beside
dnsperf an AnswerWatch asks the same CoreDNS for every app (empty answers, which dnsperf counts as NOERROR).

Run: ``make bench-load-failover`` (``python -m bench.load_failover``). Results go to
docs/benchmarks-load-failover.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.machine import cpu_seconds, machine
from bench.serving import load_average
from rig.binaries import REPO_ROOT, binary
from rig.dnsperf import dnsperf_version, percentiles_ms
from rig.failovers import (
    BUFFER_KB,
    CHECKS_PER_SECOND,
    OUTSTANDING,
    RATE,
    FailoverApp,
    LoadRun,
    health_check,
    run_load,
    start_apps,
)
from rig.federation import Federation

DOC = REPO_ROOT / "docs" / "benchmarks-load-failover.md"
REGION = "east"
PROBER_REGIONS = ("east", "west", "north")
PHASES = {False: "steady", True: "failing over"}
HEADER = ("| apps | dnsperf, s | QPS achieved | p50, ms | p95, ms | p99, ms | p99.9, ms | max, ms | lost (of them "
          "dropped at CoreDNS's socket) | SERVFAIL | watch: failed / asked | CoreDNS CPU per query, µs | cycles over "
          "and back | slowest wave |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


@dataclass(frozen=True)
class Phase:
    """One dnsperf run and what the machine did meanwhile."""

    round: int
    run: LoadRun
    coredns_cpu_us_per_query: float
    load_before: str
    load_after: str


def measure(fed: Federation, apps: list[FailoverApp], args: argparse.Namespace, workdir: Path, index: int,
            churn: bool) -> Phase:
    coredns = fed.regions[REGION].coredns
    assert coredns is not None and coredns.process is not None and coredns.process.proc is not None
    pid, load_before = coredns.process.proc.pid, load_average()
    before = cpu_seconds(pid)
    run = run_load(fed, apps, REGION, args.duration, workdir, churn=churn, rate=args.rate, until_cycles=int(churn))
    cpu = cpu_seconds(pid) - before
    return Phase(index + 1, run, 1e6 * cpu / max(1, run.report.completed), load_before, load_average())


def summary(phase: Phase) -> str:
    run, latency = phase.run, phase.run.report.percentiles_ms()
    return (f"round {phase.round} {PHASES[run.churned]}: {run.report.seconds:.0f} s, {run.report.qps:,.0f} QPS, lost "
            f"{run.report.lost} "
            f"({run.socket_drops} at CoreDNS's socket), {run.report.rcodes}; p50 {latency['p50']:.2f} ms, p95 "
            f"{latency['p95']:.2f} ms, p99 {latency['p99']:.2f} ms, max {latency['max']:.1f} ms; CoreDNS "
            f"{phase.coredns_cpu_us_per_query:.0f} µs CPU/query; watch {dict(run.answers)}, {run.moves} moves, "
            f"{run.cycles} cycles (waves {', '.join(f'{w:.1f} s' for w in run.waves) or '—'}); load "
            f"{phase.load_before} -> {phase.load_after}" + (f"; stalled: {run.stalled}" if run.stalled else ""))


def row(label: str, phases: list[Phase]) -> str:
    """One table row: the phases' runs pooled (latencies of every query, counts summed)."""
    runs = [phase.run for phase in phases]
    latency = percentiles_ms([ms for run in runs for ms in run.report.latencies_ms])
    answers: Counter[str] = sum((run.answers for run in runs), Counter())
    waves = [seconds for run in runs for seconds in run.waves]
    qps = sum(run.report.completed for run in runs) / sum(run.report.seconds for run in runs)
    cpu = sum(p.coredns_cpu_us_per_query * p.run.report.completed for p in phases) / max(
        1, sum(run.report.completed for run in runs))
    servfail = sum(run.report.rcode_counts().get("SERVFAIL", 0) for run in runs)
    seconds = sum(run.report.seconds for run in runs)
    return (f"| {label} | {seconds:.0f} | {qps:,.0f} | {latency['p50']:.2f} | {latency['p95']:.2f} | "
            f"{latency['p99']:.2f} | {latency['p99.9']:.2f} | {latency['max']:.1f} | "
            f"{sum(run.report.lost for run in runs)} ({sum(run.socket_drops for run in runs)}) | {servfail} | "
            f"{sum(answers.values()) - answers['ok']} / {sum(answers.values()):,} | {cpu:.0f} | "
            f"{sum(run.cycles for run in runs)} | {f'{max(waves):.1f} s' if waves else '—'} |")


def write_doc(phases: list[Phase], args: argparse.Namespace, setup_seconds: float) -> str:
    rows = [row(f"**{PHASES[churn]}**", [p for p in phases if p.run.churned == churn]) for churn in (False, True)]
    runs = "\n".join(f"- {summary(phase)}" for phase in phases)
    doc = f"""# Serving under load while every app fails over and back

Latest run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench-load-failover` (`python -m bench.load_failover`).
{args.apps} apps; dnsperf at {args.rate:,} queries a second on {REGION}'s CoreDNS, {args.rounds} rounds of (steady for
{args.duration} s, failing over for {args.duration} s and until every app has failed over and back once).

{HEADER}
{chr(10).join(rows)}

Latencies are every answered query's (dnsperf `-v`), the rounds of a phase pooled; "lost" is dnsperf's (no reply
within its 5 s timeout). The watch's "failed" counts replies that were not one of the app's two addresses: empty
(NOERROR without a record), another answer, another response code or no reply.

## Each run
{runs}

## Machine and load
{machine()}; CoreDNS v1.15.0, etcd 3.5.21, ExternalDNS v0.22.0, dnsperf {dnsperf_version()}, Python
{platform.python_version()}. Every process of the federation shares the cores with CoreDNS and dnsperf (and,
during this run, other work on the machine: the load averages before and after each run are above). Start-up
(federation and {args.apps} apps published and checked): {setup_seconds:.0f} s.

## Method
- Real processes (rig/federation.py): host, east and west kube-apiservers, each with its etcd; per DNS region
  (east, west) etcd, the chart's CoreDNS pod (CoreDNS on `coredns/Corefile`: `file` with `reload 100ms`, the
  fleetdns-zonefiles sidecar rendering the zone from etcd), the webhook provider and ExternalDNS; the aggregator;
  a prober in each of east, west and north, in its own network namespace, reaching each member's VIPs (a
  stand-in ingress controller routing by Host).
- {args.apps} ServiceDNSRecords `app<i>`, each with `loadBalancing: Failover` between east and west (even apps
  east first, odd apps west first) and `healthCheck: {json.dumps(health_check(args.apps))}`
  (`periodSeconds` 1, or longer so that at most {CHECKS_PER_SECOND} checks a second cross the rig's data plane: 12
  per app and period); each app's Service in both members behind the member's IPv4 and IPv6 VIPs. Before the
  first run every app is answered by its first member in every region and checked by every prober region; every
  run starts once no prober reports an app Down and the watch sees every app answered by its first member.
- Load: `dnsperf -Q {args.rate} -l {args.duration} -q {OUTSTANDING} -b {BUFFER_KB} -v` against {REGION}'s
  CoreDNS (failing over: a longer `-l`, stopped as below), asking every app's A and AAAA in order
  ({2 * args.apps} lines). `-q {OUTSTANDING}` keeps the offered
  rate whatever the latency; `-b {BUFFER_KB}` (KiB of socket buffer) keeps a stall of dnsperf itself from losing
  replies, so a lost query is one the server side dropped; "dropped at CoreDNS's socket" is the kernel's count of
  datagrams that found its receive buffer full (`/proc/net/udp`, `drops`).
- Failing over (rig/failovers.py `FailoverChurn`): every app's first member's stand-in answers 500 (endpoints stay
  ready: only the probers see it); once the watch has seen every app answered by its second member (A and AAAA) in
  {REGION}'s CoreDNS, they answer 200 again, until it has seen every app back; then the next wave. The run lasts
  {args.duration} s and, past them, until every app has failed over and back once; then dnsperf is stopped
  (SIGINT: queries still awaiting a reply are neither answered nor lost, and none were dropped at CoreDNS's
  socket if that column says 0). "Cycles" counts the complete over-and-back cycles within the run; a wave's
  seconds run from the 500s (or 200s) to the last app's new answer in {REGION}'s CoreDNS.
- Watch (rig/failovers.py `AnswerWatch`): dnspython asks the same CoreDNS for every app's A and AAAA in turn, 100
  queries a second; dnsperf counts response codes only.
- CoreDNS CPU per query: the CoreDNS process's utime+stime over the run divided by dnsperf's answered queries
  (the watch's queries are a fifth more, and the zone reloads are in the failing-over figure).

## Reading the figures
- The phases differ by what failing over adds: zone reloads in CoreDNS (every wave rewrites the zone file and
  CoreDNS parses it again), and the chain's work (probers, aggregator, API servers, ExternalDNS, webhook, etcd,
  sidecar) competing for the same two cores.
- The load averages (before and after each run, above) say how much other work shared the two cores: several
  times the core count, and the tail percentiles and the waves' seconds are mostly the scheduler's; compare the
  phases within one run, where the other work fell on both.
- The rate ({args.rate:,} QPS) is `rig/failovers.py` `RATE`, the rate the fault test `tests/e2e/test_faults_load.py`
  offers: CoreDNS alone serves ~47,000 a second on this machine when it is quiet (docs/benchmarks-serving.md), but
  the whole chain shares the cores with it here, and a CoreDNS that waits for a core longer than its kernel receive
  buffer lasts (~200 queries) loses queries (docs/design/faults.md §2).
"""
    DOC.write_text(doc)
    return doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--rate", type=int, default=RATE, help="dnsperf -Q: offered queries a second")
    parser.add_argument("--duration", type=int, default=30, help="seconds of dnsperf per phase")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (steady, failing over)")
    parser.add_argument("--no-doc", action="store_true", help=f"do not rewrite {DOC.name}")
    args = parser.parse_args()
    binary("dnsperf")  # fails with `make tools` named before anything starts
    workdir = Path(tempfile.mkdtemp(prefix="fleetdns-bench-load-failover-"))
    progress(f"work directory {workdir}; load {load_average()}")
    started = time.monotonic()
    fed = Federation(workdir / "federation", prober_regions=PROBER_REGIONS)
    phases: list[Phase] = []
    try:
        fed.start()
        apps = start_apps(fed, "bench", args.apps)
        setup = time.monotonic() - started
        progress(f"federation and {args.apps} apps up in {setup:.0f} s")
        for index in range(args.rounds):
            for churn in (False, True):
                phases.append(measure(fed, apps, args, workdir, index, churn))
                progress(summary(phases[-1]))
    finally:
        fed.stop()
    if not args.no_doc:
        print(write_doc(phases, args, setup))
        progress(f"results written to {DOC.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
