"""Prober benchmark: 2,000 checked apps × 3 clusters at periodSeconds 5 (1,200 checks a second), HTTP and HTTPS.

A real host kube-apiserver holds the ServiceDNSRecords (with their status written as the aggregator writes
it); three stand-in ingress controllers (rig/ingress.py), one per cluster address, route 2,000 Hosts each.
One ``python -m prober`` per scheme runs against them; over a measured window the benchmark reads its CPU
(utime + stime from /proc), its peak RSS (VmHWM), the achieved check rate against the configured one (its
own /metrics), the results, and the stand-ins' own CPU. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import cpu_seconds, rss_mb
from fleetdns.apipaths import NAMESPACES, SERVICE_DNS_RECORDS
from fleetdns.healthcheck import HealthCheck, HttpGet, Scheme
from fleetdns.kubeapi import KubeClient
from prober.checks import CheckRunner, Outcome, check_target
from rig import Fleet
from rig.aggregator import client_for
from rig.binaries import REPO_ROOT
from rig.ingress import StandInIngress
from rig.ports import free_port
from rig.prober import ProberProcess
from rig.scrape import scrape
from rig.workloads import apply_crds

CLUSTERS = {"c1": "127.0.10.1", "c2": "127.0.10.2", "c3": "127.0.10.3"}
GOALS = {"cpu_core": 0.5, "rss_mb": 200.0}
HEADER = ("| scheme | achieved / configured checks a second | prober CPU (utime+stime) | CPU per check "
          "| prober peak RSS | mean check | results in the window | stand-ins' CPU (3 processes) |")
DOC = REPO_ROOT / "docs" / "benchmarks-prober.md"


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def app_host(namespace: str, index: int) -> str:
    return f"app-{index:04d}.{namespace}.bench.example.com"


def create_apps(host: KubeClient, namespace: str, count: int, scheme: str, port: int, period: int) -> None:
    host.create(NAMESPACES.path(), NAMESPACES.manifest(namespace))
    health = {"httpGet": {"port": port, "path": "/healthz", "scheme": scheme}, "periodSeconds": period,
              "timeoutSeconds": 2, "failureThreshold": 3, "successThreshold": 1}

    def one(index: int) -> None:
        name = f"app-{index:04d}"
        host.create(SERVICE_DNS_RECORDS.path(namespace), SERVICE_DNS_RECORDS.manifest(
            name, spec={"domainRef": "fleet", "healthCheck": health}))
        host.merge_patch(SERVICE_DNS_RECORDS.path(namespace, name, "status"), {"status": {
            "fqdn": app_host(namespace, index), "domain": "bench.example.com",
            "dns": [{"cluster": c, "region": c, "zone": f"{c}-a", "healthy": True, "reason": "",
                     "loadBalancer": {"ingress": [{"ip": ip}]}} for c, ip in CLUSTERS.items()]}})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))


def warm_certificates(ingresses: dict[str, StandInIngress], namespace: str, count: int, port: int) -> float:
    """One HTTPS handshake per Host on every stand-in, a few at a time, before the prober starts: a stand-in
    mints a Host's certificate on its first handshake (milliseconds each), and 6,000 of them inside the
    prober's first 5 s round would measure the stand-ins' start-up, not the prober. Returns seconds taken."""
    runner = CheckRunner()
    targets = [check_target(ingress.addresses[0], HealthCheck(http_get=HttpGet(port, "/healthz", Scheme.HTTPS,
                                                                                 app_host(namespace, i))))
               for ingress in ingresses.values() for i in range(count)]
    started, done, failed = time.monotonic(), [0], [0]

    def finished(outcome: Outcome) -> None:
        done[0] += 1
        failed[0] += not outcome.up

    queue = list(targets)
    while done[0] < len(targets):
        while queue and runner.in_flight < 24:
            runner.start(queue.pop(), 30.0, finished)
        runner.poll(0.05)
    runner.close()
    if failed[0]:
        progress(f"warning: {failed[0]} of {len(targets)} warm-up handshakes failed")
    return time.monotonic() - started


def samples(prober: ProberProcess) -> dict[str, float]:
    return scrape(f"{prober.url}/metrics")


def total(metrics: dict[str, float], name: str) -> float:
    return sum(v for k, v in metrics.items() if k.split("{")[0] == name)


def by_result(metrics: dict[str, float]) -> dict[str, float]:
    return {k.split('result="')[1].rstrip('"}'): v for k, v in metrics.items()
            if k.startswith("fleetdns_prober_checks_total{")}


def measure(host_kubeconfig: Path, workdir: Path, namespace: str, scheme: str, ingresses: dict[str, StandInIngress],
            warmup: float, window: float, log_level: str) -> dict[str, Any]:
    prober = ProberProcess("bench", host_kubeconfig, workdir, name=f"prober-{scheme.lower()}",
                           args=[f"--namespace={namespace}", f"--lease-namespace={namespace}",
                                 f"--log-level={log_level}"])
    started = time.monotonic()
    prober.start(timeout=600)  # HTTPS: the stand-ins mint a certificate per Host on its first handshake
    ready_s = time.monotonic() - started
    progress(f"{scheme}: prober ready (first round done) after {ready_s:.1f}s; warming up {warmup:.0f}s")
    try:
        time.sleep(warmup)
        pids = {name: ingress.process.proc.pid for name, ingress in ingresses.items()  # type: ignore[union-attr]
                }
        before, t0 = samples(prober), time.monotonic()
        cpu0 = cpu_seconds(prober.pid)
        ingress_cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        lagging = 0
        end = t0 + window
        while time.monotonic() < end:  # sample the gauges through the window
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            current = samples(prober)
            lagging += total(current, "fleetdns_prober_keeping_up") < 1
        after, t1 = samples(prober), time.monotonic()
        cpu1 = cpu_seconds(prober.pid)
        ingress_cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        elapsed = t1 - t0
        results = {k: v - by_result(before).get(k, 0.0) for k, v in by_result(after).items()}
        checked = total(after, "fleetdns_prober_check_duration_seconds_count") - total(
            before, "fleetdns_prober_check_duration_seconds_count")
        seconds = total(after, "fleetdns_prober_check_duration_seconds_sum") - total(
            before, "fleetdns_prober_check_duration_seconds_sum")
        result: dict[str, Any] = {
            "scheme": scheme, "ready_s": ready_s, "window_s": elapsed,
            "configured_rate": total(after, "fleetdns_prober_configured_check_rate"),
            "achieved_rate": (total(after, "fleetdns_prober_checks_started_total") -
                              total(before, "fleetdns_prober_checks_started_total")) / elapsed,
            "cpu_core": (cpu1 - cpu0) / elapsed,
            "cpu_us_per_check": (cpu1 - cpu0) / max(1.0, total(after, "fleetdns_prober_checks_started_total") -
                                                    total(before, "fleetdns_prober_checks_started_total")) * 1e6,
            "rss_mb": rss_mb(prober.pid),
            "rss_now_mb": rss_mb(prober.pid, "VmRSS"),
            "ingress_cpu_core": {name: (ingress_cpu1[name] - ingress_cpu0[name]) / elapsed for name in pids},
            "results": {k: v for k, v in results.items() if v},
            "mean_check_ms": seconds / checked * 1000 if checked else float("nan"),
            "tls_resumed": total(after, "fleetdns_prober_tls_resumed_total") -
            total(before, "fleetdns_prober_tls_resumed_total"),
            "skipped": total(after, "fleetdns_prober_checks_skipped_total") -
            total(before, "fleetdns_prober_checks_skipped_total"),
            "report_writes": total(after, "fleetdns_prober_report_writes_total"),
            "lagging_samples": lagging,
            "lease_held": total(after, "fleetdns_prober_lease_held"),
            "probes": total(after, "fleetdns_prober_probes"),
        }
        stand_ins = ", ".join(f"{v * 100:.0f}%" for v in result["ingress_cpu_core"].values())
        progress(f"{scheme}: {result['achieved_rate']:.0f}/{result['configured_rate']:.0f} checks/s, "
                 f"CPU {result['cpu_core'] * 100:.1f}% of a core, peak RSS {result['rss_mb']:.0f} MB, "
                 f"results {result['results']}, stand-ins {stand_ins}")
        return result
    finally:
        prober.stop()


def run(count: int, period: int, warmup: float, window: float, schemes: list[str], workdir: Path,
        log_level: str = "warning") -> dict[str, Any]:
    progress(f"starting the host kube-apiserver (workdir {workdir})")
    fleet = Fleet((), workdir / "fleet").start()
    ingresses: dict[str, StandInIngress] = {}
    try:
        apply_crds(fleet.host.api_client())
        host = client_for(fleet.host)
        http_port, https_port = free_port(CLUSTERS["c1"]), free_port(CLUSTERS["c1"])
        for cluster, address in CLUSTERS.items():
            ingresses[cluster] = StandInIngress(cluster, workdir, [address], http_port=http_port,
                                                https_port=https_port).start()
        namespaces = {scheme: f"bench-{scheme.lower()}" for scheme in schemes}
        for scheme, namespace in namespaces.items():
            started = time.monotonic()
            for ingress in ingresses.values():
                ingress.control.register_many([(app_host(namespace, i), namespace, f"app-{i:04d}")
                                               for i in range(count)])
            create_apps(host, namespace, count, scheme, http_port if scheme == "HTTP" else https_port, period)
            progress(f"{namespace}: {count} ServiceDNSRecords with status, {count} Hosts on each of "
                     f"{len(ingresses)} stand-ins in {time.monotonic() - started:.1f}s")
        runs = []
        for scheme in schemes:
            if scheme == "HTTPS":
                progress("HTTPS: one handshake per Host on each stand-in first (they mint certificates)")
                took = warm_certificates(ingresses, namespaces[scheme], count, https_port)
                progress(f"HTTPS: {count * len(ingresses):,} certificates minted in {took:.1f}s")
            runs.append(measure(fleet.host.kubeconfig, workdir, namespaces[scheme], scheme, ingresses, warmup, window,
                                log_level))
        return {"count": count, "clusters": len(CLUSTERS), "period": period, "window": window, "runs": runs}
    finally:
        for ingress in ingresses.values():
            ingress.stop()
        fleet.stop()
        progress("stopped")


def write_doc(result: dict[str, Any]) -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    rows = []
    for r in result["runs"]:
        met_cpu = "met" if r["cpu_core"] <= GOALS["cpu_core"] else "MISSED"
        met_rss = "met" if r["rss_mb"] <= GOALS["rss_mb"] else "MISSED"
        stand_ins = " + ".join(f"{v * 100:.0f} %" for v in r["ingress_cpu_core"].values())
        results = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(r["results"].items()))
        rows.append(
            f"| {r['scheme']} | {r['achieved_rate']:,.0f} / {r['configured_rate']:,.0f} | "
            f"{r['cpu_core'] * 100:.1f} % ({met_cpu}) | {r['cpu_us_per_check']:.0f} µs | "
            f"{r['rss_mb']:.0f} MB ({met_rss}) | "
            f"{r['mean_check_ms']:.1f} ms | {results} | {stand_ins} |")
    details = "\n".join(
        f"- {r['scheme']}: ready (first full round) {r['ready_s']:.1f} s after start; RSS at the end of the window "
        f"{r['rss_now_mb']:.0f} MB; {r['probes']:,.0f} distinct "
        f"checks; skipped runs {r['skipped']:,.0f}; TLS sessions resumed {r['tls_resumed']:,.0f}; report writes "
        f"{r['report_writes']:,.0f}; Lease held at the end: {'yes' if r['lease_held'] else 'no'}; samples with "
        f"`keeping_up` 0: {r['lagging_samples']}." for r in result["runs"])
    kept = ""  # hand-written analysis below the marker survives a re-run
    marker = "\n## Analysis"
    if DOC.exists() and marker in DOC.read_text():
        kept = marker + DOC.read_text().split(marker, 1)[1]
    DOC.write_text(f"""# Prober benchmark

`make bench-prober` (`python -m bench.prober`), run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.

## Results

{result['count']:,} checked apps × {result['clusters']} clusters at `periodSeconds: {result['period']}`, one prober,
measured over {result['window']:.0f} s after a warm-up. Goals (issue 8): ≤ 50 % of one core, ≤ 200 MB RSS.

{HEADER}
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{details}

## Method

- Rig: one real kube-apiserver (with its etcd) on loopback as the host cluster; no aggregator: the
  benchmark writes each ServiceDNSRecord's `status` (`fqdn`, one `dns[]` entry per cluster with its
  load-balancer IP) as the aggregator would.
- Targets: three stand-in ingress controllers (`rig/ingress.py`, one asyncio process each) on
  {', '.join(CLUSTERS.values())}, each routing the {result['count']:,} Hosts of every scheme's namespace
  (200 for each), HTTP and HTTPS (a certificate per Host chosen by SNI) on one port each.
- Apps: {result['count']:,} ServiceDNSRecords per scheme (namespace `bench-http`, `bench-https`), each with
  `httpGet` `/healthz`, `timeoutSeconds: 2`, its own Host (so no two checks are identical and none is
  shared: {result['count']:,} × {result['clusters']} distinct checks), `periodSeconds: {result['period']}`.
- One `python -m prober --namespace=<scheme's namespace>` per scheme (leader election on, logs at warning),
  started after everything exists; the window starts after `/readyz` (first full round) plus the warm-up.
  Before the HTTPS prober starts, the benchmark makes one handshake per Host on each stand-in, 24 at a
  time: a stand-in mints a Host's certificate on its first handshake, and 6,000 of those inside the
  prober's first round would measure the stand-ins' start-up instead of the prober.
- CPU: utime + stime of the prober process (`/proc/<pid>/stat`) over the window ÷ its length; the same for
  each stand-in. Peak RSS: `VmHWM` at the end of the window. Rates and results: the prober's own `/metrics`
  (`checks_started_total`, `configured_check_rate`, `checks_total{{result}}`, `check_duration_seconds`).
- Every check is a fresh TCP connection (the stand-ins count connections per Host; tests prove one per
  check); on loopback the kernel charges both ends of each TCP handshake to the connecting process, so the
  prober's system time includes work a real network would put on the load balancer.
- Machine: {cpu}, {platform.machine()}, {os.cpu_count()} CPUs shared by the prober, the stand-ins, the API server
  and etcd (and whatever else ran on the machine); Python {platform.python_version()}.
""" + kept)
    progress(f"results written to {DOC.relative_to(REPO_ROOT)}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prober", description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=2000)
    parser.add_argument("--period", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--schemes", default="HTTP,HTTPS", help="comma list of HTTP, HTTPS")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks-prober.md")
    parser.add_argument("--log-level", default="warning", help="the prober's --log-level (its log is in workdir)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fleetdns-bench-prober-"))
    schemes = [s.strip().upper() for s in args.schemes.split(",") if s.strip()]
    result = run(args.apps, args.period, args.warmup, args.window, schemes, workdir, args.log_level)
    if not args.no_doc:
        write_doc(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
