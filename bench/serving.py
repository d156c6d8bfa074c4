"""Serving speed of one regional CoreDNS: the shipped Corefile against CoreDNS's ``file`` plugin, same answers.

1,000 names (A and AAAA, two addresses each; every other name weighted 80/20 through ``webhook/weights``) are
written through the real webhook into a real etcd. Side by side in one run, on their own ports:
- ``shipped``: coredns/Corefile as shipped (``file`` reading the zone file ``fleetdns-zonefiles`` renders from
  etcd, ``loadbalance weighted``, probes, metrics; the sidecar running);
- ``file``: CoreDNS's ``file`` plugin serving the same records from a zone file written by this benchmark, with
  the same weights, probes and metrics: the goal's baseline;
- ``file-bare``: the ``file`` plugin alone (plus ``errors``), the least a server can do per query;
- ``etcd-cache1``: the Corefile shipped before (``etcd`` + ``cache 1``; ``rig.coredns.etcd_cached_corefile``);
- ``etcd-nocache``: the same without its cache (every query an etcd read).
Each variant gets ``dnsperf -l DURATION`` at full speed, the variants alternating over ``--rounds``; then a
fixed-rate run (``-Q``) with per-query latencies (``-v``) for the percentiles. dnsperf and CoreDNS share the
machine's cores, as they would on a small DNS host.

Run: ``make bench-serving`` (``python -m bench.serving``). Results go to docs/benchmarks-serving.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import dns.message
import dns.query

from bench.machine import cpu_seconds, machine
from rig import CoreDNS, EtcdCluster, EtcdServer, dnsperf
from rig.binaries import REPO_ROOT, binary
from rig.coredns import RegionalCoreDNS, etcd_cached_corefile, regional_coredns
from rig.dnsperf import Load, dnsperf_version
from rig.ports import free_port
from rig.region import WebhookProvider
from rig.waiting import wait_for
from serving.weightfile import render

ZONE = "gslb.example.com"
DOC = REPO_ROOT / "docs" / "benchmarks-serving.md"
TTL = 30
GOAL_RATIO = 0.8
HEADER_FULL = ("| variant | QPS, median (each round) | vs `file` | vs `file-bare` | average latency, ms (dnsperf) "
               "| max latency, ms | lost | CoreDNS CPU per query, µs | TTL clients see | goal | |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|")
VARIANTS = ("shipped", "file", "file-bare", "etcd-cache1", "etcd-nocache")
DESCRIPTIONS = {
    "shipped": "coredns/Corefile as shipped: `file` (zone file rendered from etcd by fleetdns-zonefiles, "
               "`reload 100ms`), `loadbalance weighted`, probes, metrics",
    "file": "`file` serving a zone file of the same records written by the benchmark, with the same "
            "`loadbalance weighted` file contents, `health`, `ready`, `prometheus`, `errors`",
    "file-bare": "`file` and `errors` only",
    "etcd-cache1": "the Corefile shipped before: rewrite (lower case), `etcd`, `cache 1`, `loadbalance weighted`",
    "etcd-nocache": "the same without `cache` (every query reads etcd)",
}


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# --- the data --------------------------------------------------------------------------------------------------

def addresses(index: int) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two IPv4 and two IPv6 addresses of name ``index`` (benchmark ranges 198.18.0.0/15, 2001:db8:f::/48)."""
    host = f"{index // 250}.{index % 250 + 1}"
    v6 = (str(ipaddress.IPv6Address(f"2001:db8:f:{index:x}::{side}")) for side in (1, 2))  # canonical, as stored
    return (f"198.18.{host}", f"198.19.{host}"), (next(v6), next(v6))


def endpoints(names: int) -> list[dict]:
    """Every name: A and AAAA with two addresses; even names weighted 255/64 as the aggregator writes them."""
    result = []
    for index in range(names):
        for record_type, pair in zip(("A", "AAAA"), addresses(index), strict=True):
            endpoint: dict = {"dnsName": f"n{index}.{ZONE}", "recordType": record_type, "targets": list(pair),
                              "recordTTL": TTL}
            if index % 2 == 0:
                endpoint["providerSpecific"] = [{"name": "webhook/weights", "value": f"{pair[0]}=255,{pair[1]}=64"}]
            result.append(endpoint)
    return result


def zone_file(names: int) -> str:
    lines = [f"$ORIGIN {ZONE}.", f"$TTL {TTL}",
             f"@ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 7200 3600 1209600 {TTL}", f"@ IN NS ns.{ZONE}.",
             "ns IN A 127.0.0.1"]
    for index in range(names):
        v4, v6 = addresses(index)
        lines += [f"n{index} IN A {address}" for address in v4]
        lines += [f"n{index} IN AAAA {address}" for address in v6]
    return "\n".join(lines) + "\n"


def query_file(names: int) -> str:
    return "".join(f"n{index}.{ZONE} {record_type}\n" for index in range(names) for record_type in ("A", "AAAA"))


# --- the servers -----------------------------------------------------------------------------------------------

def weight_file(names: int) -> str:
    """The weight file fleetdns-zonefiles renders for these endpoints (its own render), for the file variants."""
    weights: dict[str, dict[str, int]] = {}
    for endpoint in endpoints(names):
        for prop in endpoint.get("providerSpecific", []):
            weights.setdefault(endpoint["dnsName"], {}).update(
                {address: int(weight) for address, weight in (item.split("=") for item in prop["value"].split(","))})
    return render(weights)


def file_corefile(workdir: Path, bare: bool) -> str:
    """The file plugin alone, or in the shipped Corefile's company (same weights, probes and metrics)."""
    lines = [f"{ZONE}:{{port}} {{", f"    file {workdir / 'db.zone'}"]
    if not bare:
        lines += [f"    loadbalance weighted {workdir / 'weights'} {{", "        reload 1s", "    }",
                  *(f"    {plugin} 127.0.0.1:{free_port()}" for plugin in ("health", "ready", "prometheus"))]
    return "\n".join([*lines, "    errors", "}", ""])


def start_variant(variant: str, etcd: EtcdCluster, workdir: Path, names: int) -> CoreDNS:
    if variant in ("file", "file-bare"):
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "db.zone").write_text(zone_file(names))
        (workdir / "weights").write_text(weight_file(names))
        return CoreDNS(file_corefile(workdir, variant == "file-bare"), workdir, name=f"coredns-{variant}").start()
    corefile = None
    if variant.startswith("etcd-"):
        corefile = etcd_cached_corefile(ZONE, etcd.endpoints, cache=1 if variant == "etcd-cache1" else None,
                                        cache_capacity=max(10_000, 4 * names))
    server: RegionalCoreDNS = regional_coredns(ZONE, etcd.endpoints, workdir, f"coredns-{variant}",
                                               corefile=corefile)
    return server.start()


def answer_ttl(server: CoreDNS, name: str) -> int:
    reply = dns.query.udp(dns.message.make_query(name, "A"), server.host, port=server.port, timeout=2)
    return min(rrset.ttl for rrset in reply.answer)


def pid_of(server: CoreDNS) -> int:
    assert server.process is not None and server.process.proc is not None
    return server.process.proc.pid


def load_average() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


# --- dnsperf ---------------------------------------------------------------------------------------------------

@dataclass
class Run:
    variant: str
    qps: float
    seconds: float
    avg_ms: float
    min_ms: float
    max_ms: float
    stddev_ms: float
    sent: int
    completed: int
    lost: int
    rcodes: str
    coredns_cpu_us_per_query: float
    load_before: str
    load_after: str
    percentiles_ms: dict[str, float] = field(default_factory=dict)


def dnsperf_load(server: CoreDNS, queries: Path, seconds: int, args: argparse.Namespace,
                 rate: int | None = None) -> Load:
    return Load(server.host, server.port, queries, seconds, rate=rate, clients=args.clients, threads=args.threads,
                outstanding=args.outstanding)


def measure(variant: str, server: CoreDNS, queries: Path, seconds: int, args: argparse.Namespace,
            rate: int | None = None, verbose: bool = False) -> Run:
    before_load, pid = load_average(), pid_of(server)
    cpu_before = cpu_seconds(pid)
    report = dnsperf.run(dnsperf_load(server, queries, seconds, args, rate), verbose)
    cpu = cpu_seconds(pid) - cpu_before
    run = Run(variant=variant, qps=report.qps, seconds=report.seconds, avg_ms=report.avg_ms, min_ms=report.min_ms,
              max_ms=report.max_ms, stddev_ms=report.stddev_ms, sent=report.sent, completed=report.completed,
              lost=report.lost, rcodes=report.rcodes,
              coredns_cpu_us_per_query=1e6 * cpu / max(1, report.completed),
              load_before=before_load, load_after=load_average())
    if verbose:
        run.percentiles_ms = report.percentiles_ms()
    return run


def combined(slices: list[Run]) -> Run:
    """One run from interleaved slices of the same variant: totals, and latency averaged per query."""
    completed = sum(run.completed for run in slices)
    return Run(variant=slices[0].variant, qps=completed / sum(run.seconds for run in slices),
               seconds=sum(run.seconds for run in slices),
               avg_ms=sum(run.avg_ms * run.completed for run in slices) / max(1, completed),
               min_ms=min(run.min_ms for run in slices), max_ms=max(run.max_ms for run in slices),
               stddev_ms=max(run.stddev_ms for run in slices), sent=sum(run.sent for run in slices),
               completed=completed, lost=sum(run.lost for run in slices), rcodes=slices[-1].rcodes,
               coredns_cpu_us_per_query=sum(run.coredns_cpu_us_per_query * run.completed for run in slices)
               / max(1, completed),
               load_before=slices[0].load_before, load_after=slices[-1].load_after)


def slice_plan(duration: int, slice_seconds: int) -> list[int]:
    """``duration`` seconds as slices of ``slice_seconds`` (0: one uninterrupted run), the last one shorter."""
    if slice_seconds <= 0 or slice_seconds >= duration:
        return [duration]
    return [slice_seconds] * (duration // slice_seconds) + ([duration % slice_seconds] if duration % slice_seconds
                                                            else [])


# --- the run ---------------------------------------------------------------------------------------------------

@dataclass
class Results:
    saturated: list[Run] = field(default_factory=list)
    fixed_rate: list[Run] = field(default_factory=list)
    ttls: dict[str, int] = field(default_factory=dict)
    seed_seconds: float = 0.0


def run_bench(args: argparse.Namespace, workdir: Path) -> Results:
    results = Results()
    queries = workdir / "queries"
    queries.write_text(query_file(args.names))
    with EtcdServer(workdir / "etcd") as etcd:
        webhook = WebhookProvider(etcd.endpoints, workdir, domain_filter=ZONE, prefix="/skydns/").start()
        try:
            started = time.monotonic()
            response = webhook.client.apply({"create": endpoints(args.names)})
            if response.status_code != 204:
                raise RuntimeError(f"seeding failed: {response.status_code} {response.text[:500]}")
            results.seed_seconds = time.monotonic() - started
        finally:
            webhook.stop()  # not needed while serving: keep the cores for CoreDNS and dnsperf
        progress(f"{args.names:,} names ({2 * args.names:,} endpoints) in etcd in {results.seed_seconds:.2f} s")
        servers: dict[str, CoreDNS] = {}
        try:
            last = f"n{args.names - 1}.{ZONE}"
            for variant in args.variants:
                server = servers[variant] = start_variant(variant, etcd, workdir / variant, args.names)
                wait_for(partial(answer_ttl, server, last), 30, f"{variant} answering")
                results.ttls[variant] = answer_ttl(server, f"n0.{ZONE}")
                progress(f"{variant}: up on {server.address}, clients see TTL {results.ttls[variant]}")
            for round_index in range(args.rounds):
                slices: dict[str, list[Run]] = {variant: [] for variant in args.variants}
                for seconds in slice_plan(args.duration, args.slice):
                    for variant in args.variants:  # interleaved: a burst of other load hits every variant alike
                        slices[variant].append(measure(variant, servers[variant], queries, seconds, args))
                for variant in args.variants:
                    run = combined(slices[variant])
                    results.saturated.append(run)
                    progress(f"round {round_index + 1} {variant}: {run.qps:,.0f} QPS, avg {run.avg_ms:.3f} ms, "
                             f"lost {run.lost}, CoreDNS {run.coredns_cpu_us_per_query:.1f} µs CPU/query, "
                             f"load {run.load_before} -> {run.load_after}, slices "
                             f"{', '.join(f'{one.qps:,.0f}' for one in slices[variant])}")
            for variant in args.variants:
                run = measure(variant, servers[variant], queries, args.latency_duration, args, rate=args.rate,
                              verbose=True)
                results.fixed_rate.append(run)
                progress(f"{args.rate:,} QPS offered, {variant}: p50 {run.percentiles_ms['p50']:.3f} ms, "
                         f"p99 {run.percentiles_ms['p99']:.3f} ms, max {run.max_ms:.3f} ms, lost {run.lost}")
        finally:
            for server in servers.values():
                server.stop()
    return results


# --- the report ------------------------------------------------------------------------------------------------


def median_of(runs: list[Run], variant: str, attribute: str) -> float:
    return statistics.median(getattr(run, attribute) for run in runs if run.variant == variant)


def write_doc(results: Results, args: argparse.Namespace) -> str:
    variants = list(args.variants)
    base = median_of(results.saturated, "file", "qps")
    bare = median_of(results.saturated, "file-bare", "qps") if "file-bare" in variants else float("nan")
    rows = []
    for variant in variants:
        runs = [run for run in results.saturated if run.variant == variant]
        qps = median_of(results.saturated, variant, "qps")
        ratio = qps / base
        goal = f"≥ {GOAL_RATIO}× of file" if variant == "shipped" else ""
        met = ("met" if ratio >= GOAL_RATIO else "missed") if variant == "shipped" else ""
        rows.append(f"| {variant} | {qps:,.0f} ({', '.join(f'{run.qps:,.0f}' for run in runs)}) | {ratio:.2f}× | "
                    f"{f'{qps / bare:.2f}×' if bare == bare else '—'} | "  # NaN when file-bare was not run
                    f"{median_of(results.saturated, variant, 'avg_ms'):.3f} | "
                    f"{max(run.max_ms for run in runs):.1f} | {sum(run.lost for run in runs)} | "
                    f"{median_of(results.saturated, variant, 'coredns_cpu_us_per_query'):.1f} | "
                    f"{results.ttls[variant]} | {goal} | {met} |")
    latency_rows = [
        f"| {run.variant} | {run.qps:,.0f} | {run.percentiles_ms['p50']:.3f} | {run.percentiles_ms['p99']:.3f} | "
        f"{run.percentiles_ms['p99.9']:.3f} | {run.avg_ms:.3f} | {run.max_ms:.1f} | {run.lost} | "
        f"{run.coredns_cpu_us_per_query:.1f} |" for run in results.fixed_rate]

    def cpu(variant: str) -> float:
        if variant not in variants:
            return float("nan")
        return median_of(results.saturated, variant, "coredns_cpu_us_per_query")

    interval = 2 * args.names / args.rate  # seconds between two queries of one name and type, dnsperf in order
    miss_share = 1.0 if interval >= 1 else 1 / (math.floor(1 / interval) + 1)
    slicing = (f"as `dnsperf -l {args.slice}` slices taken in turn by the variants" if 0 < args.slice < args.duration
               else f"one `dnsperf -l {args.duration}` per variant, the variants in turn")
    loads = "; ".join(f"{run.variant} {run.load_before}→{run.load_after}" for run in results.saturated)
    described = "\n".join(f"- `{variant}`: {DESCRIPTIONS[variant]}" for variant in variants)
    doc = f"""# Serving speed: the shipped Corefile against CoreDNS's `file` plugin

Latest run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench-serving` (`python -m bench.serving`).
{args.names:,} names; {args.duration} s of dnsperf per variant and round ({slicing}), {args.rounds} rounds.

## Full speed (dnsperf sends as fast as answers come back, {args.outstanding} queries outstanding)

{HEADER_FULL}
{chr(10).join(rows)}

At full speed dnsperf keeps {args.outstanding} queries in flight, so its average latency is mostly queueing
(≈ {args.outstanding} / QPS); the fixed-rate run below gives the latency of one query.

## Fixed rate ({args.rate:,} QPS offered, {args.latency_duration} s; percentiles of dnsperf's per-query times, `-v`)

| variant | QPS achieved | p50, ms | p99, ms | p99.9, ms | average, ms | max, ms | lost | CoreDNS CPU per query, µs |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(latency_rows)}

## Variants
{described}

## Machine and load
{machine()}; CoreDNS v1.15.0, etcd 3.5.21 (`--unsafe-no-fsync`, rig default), dnsperf {dnsperf_version()},
Python {platform.python_version()}. dnsperf, CoreDNS and etcd share the machine's cores (and, during this run,
other work on the machine: load averages before→after each full-speed run: {loads}).

## Method
- One real etcd (`rig.EtcdServer`). {args.names:,} names `n<i>.{ZONE}`, each with an A endpoint and an AAAA
  endpoint of two addresses (TTL {TTL}); every other name carries `webhook/weights` `255/64` on both (80/20, as
  the aggregator writes Weighted answers). They are written through the real webhook (one POST /records,
  {results.seed_seconds:.2f} s), so etcd holds exactly what production stores (values with group, ownership
  metadata, name keys); the webhook is stopped before measuring.
- Each variant is its own CoreDNS process on its own port, all started before the first measurement. The
  shipped and etcd variants run through `rig.coredns.regional_coredns` (with the `fleetdns-zonefiles` sidecar,
  which renders the zone file `shipped` serves and the weight file every variant reads); the `file` variants
  serve a zone file the benchmark writes with the same A/AAAA records and TTL, `file` with the weight file
  rendered for these records (the same `render`) and the shipped Corefile's probes and metrics.
- Queries: every name's A and AAAA ({2 * args.names:,} lines), repeated by dnsperf in order
  (`-c {args.clients} -T {args.threads} -q {args.outstanding}`). Full speed: in each of {args.rounds} rounds
  every variant gets {args.duration} s of dnsperf, {slicing}, so that a burst of other work on the shared
  machine falls on every variant alike; a round's QPS is its answered queries over its dnsperf run time, and
  the table gives the median of the rounds and each round. "CoreDNS CPU per query" is the
  process's utime+stime over the run divided by the queries answered: what a query costs the server,
  independent of how the cores were shared with dnsperf.
- TTL clients see: the TTL of `n0.{ZONE}`'s A answer from each variant (record TTL {TTL}).
- Fixed rate: `dnsperf -Q {args.rate} -l {args.latency_duration} -v`, latencies of all answered queries.

## Reading the figures
- `shipped` is the `file` plugin serving a zone file of the same records, so it matches `file` by
  construction; the difference between them is noise plus the zone file's SOA/NS and the sidecar sharing the
  cores. Failover time is the other half of this choice: `docs/benchmarks-health-failover.md`.
- The etcd backend (the Corefile shipped before) needs its cache to compete: without it every query is one or
  two etcd range reads (`etcd-nocache`: {cpu('etcd-nocache'):.0f} µs of CoreDNS CPU per query, and etcd's own
  on top); with `cache 1` a name and type is read from etcd at most once a second, but an answer can be a
  second old and clients see TTL 1 whatever the record's `recordTTL` (the cache rewrites TTLs to its lifetime).
- At the fixed rate each name and type is asked every {2 * args.names / args.rate:.2f} s, so about
  {miss_share:.0%} of `etcd-cache1`'s queries find their 1 s cache entry expired and wait for an etcd read: its
  median is the cache's, its p99 etcd's (compare `etcd-nocache`).
- Full-speed QPS depends on how dnsperf and CoreDNS share the cores with each other and with whatever else
  runs (see the load averages); CPU per query is the steadier comparison.
"""
    DOC.write_text(doc)
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=30, help="seconds of dnsperf per variant and round")
    parser.add_argument("--rounds", type=int, default=2, help="full-speed rounds, the variants alternating")
    parser.add_argument("--slice", type=int, default=5,
                        help="seconds per dnsperf run: each round's DURATION is split into slices, the variants "
                             "taking turns slice by slice (0: one dnsperf -l DURATION per variant and round)")
    parser.add_argument("--names", type=int, default=1_000)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--rate", type=int, default=5_000, help="offered QPS of the latency run")
    parser.add_argument("--latency-duration", type=int, default=10, help="seconds of the fixed-rate run")
    parser.add_argument("--clients", type=int, default=1, help="dnsperf -c")
    parser.add_argument("--threads", type=int, default=1, help="dnsperf -T")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q")
    args = parser.parse_args()
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown or "file" not in args.variants:
        parser.error(f"--variants: unknown {sorted(unknown)}; `file` is required (the baseline)")
    binary("dnsperf")  # fails with `make tools` named before anything starts
    workdir = Path(tempfile.mkdtemp(prefix="fleetdns-bench-serving-"))
    progress(f"work directory {workdir}; load {load_average()}")
    results = run_bench(args, workdir)
    print(write_doc(results, args))
    progress(f"results written to {DOC.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
