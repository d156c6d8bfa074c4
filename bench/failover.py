"""End-to-end failover time: an app's endpoints stop being ready in one cluster -> every region's
CoreDNS stops answering that cluster's address (and the reverse), through the whole real chain.

Side by side in one run: ExternalDNS syncing every second (FleetDNS's setting) and ExternalDNS's
own event-driven mode (`--events`, default interval), same everything else.

    python -m bench.failover [--cycles 10]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

from rig.federation import Federation

NAMESPACE, APP, DOMAIN_REF = "bench", "app", "fleet"
VIPS = {"east": "127.0.10.1", "west": "127.0.20.1"}
ENDPOINTS = ["10.1.0.1"]
PAUSES = random.Random(7)  # seeded: reruns pause alike
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks-failover.md"
FLEETDNS, EVENTS = "FleetDNS setting (--interval=500ms)", "ExternalDNS events (--events, --interval=1m)"
SETUPS = {
    "FleetDNS setting (--interval=500ms)": ("--interval=500ms",),
    "--interval=1s": ("--interval=1s",),
    "ExternalDNS events (--events, --interval=1m)": ("--events", "--interval=1m", "--min-event-sync-interval=100ms"),
}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(label: str, sync: tuple[str, ...], cycles: int) -> dict[str, list[float]]:
    print(f"[failover] {label}: starting 3 API servers, 2 regions and the aggregator", flush=True)
    federation = Federation(Path(tempfile.mkdtemp(prefix="fleetdns-bench-failover-")), externaldns_sync=sync)
    timings: dict[str, list[float]] = {"leave": [], "rejoin": []}
    try:
        federation.start()
        for member in federation.fleet.members:
            federation.run_service(member, NAMESPACE, APP, VIPS[member], ENDPOINTS)
        name = f"{APP}.{NAMESPACE}.{DOMAIN_REF}.svc.{federation.zone}"
        federation.create_service_intent(NAMESPACE, APP, DOMAIN_REF)
        federation.wait_for_answers(name, set(VIPS.values()), 60)
        for cycle in range(cycles):
            for ready, key, expected in ((False, "leave", {VIPS["west"]}), (True, "rejoin", set(VIPS.values()))):
                started = time.monotonic()
                federation.set_ready("east", NAMESPACE, APP, ENDPOINTS, ready)
                federation.wait_for_answers(name, expected, 30)
                timings[key].append(time.monotonic() - started)
                time.sleep(PAUSES.uniform(0.2, 1.2))  # start the next change at a random point of the sync cycle
            print(f"[failover] {label}: cycle {cycle + 1}/{cycles}: leave {timings['leave'][-1]:.2f} s, "
                  f"rejoin {timings['rejoin'][-1]:.2f} s", flush=True)
    finally:
        federation.stop()
    return timings


def summary(values: list[float]) -> str:
    return (f"p50 {statistics.median(values):.2f} s, p90 {percentile(values, 0.9):.2f} s, "
            f"max {max(values):.2f} s (n={len(values)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10, help="failover + recovery cycles per set-up")
    parser.add_argument("--no-doc", action="store_true", help=f"do not rewrite {DOC.name}")
    args = parser.parse_args()
    results = {label: measure(label, sync, args.cycles) for label, sync in SETUPS.items()}
    rows = []
    for label, timings in results.items():
        for key in ("leave", "rejoin"):
            line = f"| {label} | {key} | {summary(timings[key])} |"
            rows.append(line)
            print(f"[failover] {label} {key}: {summary(timings[key])}")
    ours, events = (statistics.median(results[label]["leave"]) for label in (FLEETDNS, EVENTS))
    print(f"[failover] median leave: {ours:.2f} s vs {events:.2f} s ({ours / events:.2f}x)")
    if not args.no_doc:
        DOC.write_text(render_doc(rows, ours, events, args.cycles))
        print(f"[failover] wrote {DOC}")
    return 0


def render_doc(rows: list[str], ours: float, events: float, cycles: int) -> str:
    return f"""# End-to-end failover benchmark

`python -m bench.failover` (`make bench-failover`), run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.

| ExternalDNS sync | transition | time until every region's CoreDNS answers the new set |
|---|---|---|
{chr(10).join(rows)}

Median failover (leave): **{ours:.2f} s** with FleetDNS's setting vs {events:.2f} s with ExternalDNS's
event mode ({ours / events:.2f}×). Goal from the brief: about one second.

## Method
- Real processes on loopback: host, east and west kube-apiservers (each with its own etcd); per
  region (east, west) etcd, CoreDNS with `coredns/Corefile`, the webhook provider and ExternalDNS
  v0.22.0 (`--source=crd --provider=webhook --registry=txt --policy=sync`); the aggregator.
- One ServiceDNSRecord over a LoadBalancer Service in both members. Each cycle marks east's only
  endpoint not ready (leave), waits, then ready again (rejoin). The clock runs from the EndpointSlice
  write on the member until both regions' CoreDNS answer the global name with exactly the expected
  addresses (A queries every 10 ms). {cycles} cycles per set-up; a random 0.2-1.2 s pause between
  transitions so changes land at every phase of ExternalDNS's sync cycle.
- The chain: member watch → aggregator (ms, see benchmarks-aggregator.md) → DNSEndpoint → ExternalDNS
  sync → webhook → etcd transaction → CoreDNS (no cache). ExternalDNS's sync timing dominates: its
  event mode waits a fixed 5 s after an event; its loop wakes on a 1 s ticker and runs when the interval
  has passed since the previous run started, so `--interval=1s` runs every other tick (2 s) and
  `--interval=500ms` (FleetDNS's setting) every tick: one GET /records per second per region (see
  benchmarks-webhook.md for its cost on large zones).
- Machine: {platform.machine()}, 2 cores, Python {platform.python_version()}; everything else that ran on
  the machine shares the cores.
"""


if __name__ == "__main__":
    raise SystemExit(main())
