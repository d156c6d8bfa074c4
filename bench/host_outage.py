"""The first change after a host API outage: host API server stopped for N s, started, then an app's readiness
flips in one member -> seconds until every regional CoreDNS answers the new set.

Side by side in one run: each region's ExternalDNS through the webhook's host relay (FleetDNS's setting) and
ExternalDNS talking to the host directly (the lag check still runs, but cannot shorten client-go's backoff).
The two federations run one after the other on the same machine, with the same outages in the same order.

    python -m bench.host_outage [--outages 5,60] [--trials 5]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time
from pathlib import Path

from bench.failover import APP, ENDPOINTS, NAMESPACE, VIPS, start_federation
from bench.machine import machine

GOAL_SECONDS = 5.0
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks-host-outage.md"
SETUPS = {"through the host relay (FleetDNS)": True, "ExternalDNS direct to the host": False}


def run_setup(label: str, relay: bool, outages: list[float], trials: int) -> dict[float, list[float]]:
    federation, name = start_federation(label, host_relay=relay, grace_period="5m", bench="host-outage")
    took: dict[float, list[float]] = {outage: [] for outage in outages}
    try:
        ready = True
        for outage in outages:
            for trial in range(trials):
                federation.fleet.host.stop_apiserver()
                time.sleep(outage)  # the outage being measured
                federation.fleet.host.restart()
                ready = not ready
                started = time.monotonic()
                federation.set_ready("east", NAMESPACE, APP, ENDPOINTS, ready=ready)
                expected = set(VIPS.values()) if ready else {VIPS["west"]}
                federation.wait_for_answers(name, expected, timeout=180)
                took[outage].append(time.monotonic() - started)
                print(f"[host-outage] {label}: outage {outage:g} s #{trial + 1}: first change in every region "
                      f"after {took[outage][-1]:.2f} s", flush=True)
    finally:
        federation.stop()
    return took


def table(results: dict[str, dict[float, list[float]]]) -> str:
    rows = ["| setup | outage | median | max | each outage in the row (s) |", "|---|---|---|---|---|"]
    for label, took in results.items():
        for outage, values in took.items():
            rows.append(f"| {label} | {outage:g} s | {statistics.median(values):.2f} s | {max(values):.2f} s | "
                        f"{', '.join(f'{v:.2f}' for v in values)} |")
    return "\n".join(rows)


def render_doc(results: dict[str, dict[float, list[float]]], trials: int, load: tuple[float, float]) -> str:
    return f"""# Benchmark: the first change after a host API outage

Measured {datetime.date.today().isoformat()} on {machine()} (load average {load[0]:.1f} before, {load[1]:.1f} after).
Command: `make bench-host-outage` (`python -m bench.host_outage --trials {trials}`).

## Method
- The rig's federation: a host and two member kube-apiservers, two regions (etcd, CoreDNS with its zone-file
  sidecar, the webhook, ExternalDNS syncing every second), the aggregator; one app in both members.
- For each outage length, {trials} outages in a row: the host kube-apiserver is stopped (its etcd stays), it is
  started again after the outage, and once it answers `/readyz` an app's EndpointSlice flips readiness in one
  member. The figure is the time from that change until **every** regional CoreDNS answers the new set.
- Both setups in one run, one after the other, same outages in the same order: each region's ExternalDNS
  reaches the host through the webhook's host relay (FleetDNS's setting, `docs/design/host-outage.md`), or
  directly (as before: its client-go reflector backs off up to 30-60 s while the host refuses connections,
  and re-lists after a restarted host answers its watch with 410 Expired).
- Goal: at most {GOAL_SECONDS:g} s in every outage.

## Results
{table(results)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outages", default="5,60", help="outage lengths in seconds, comma-separated")
    parser.add_argument("--trials", type=int, default=5, help="outages in a row per length")
    parser.add_argument("--no-doc", action="store_true", help=f"do not rewrite {DOC.name}")
    args = parser.parse_args()
    outages = [float(value) for value in args.outages.split(",")]
    load_before = os.getloadavg()[0]
    results = {label: run_setup(label, relay, outages, args.trials) for label, relay in SETUPS.items()}
    print(f"\n## host outage -> first change in every regional CoreDNS ({args.trials} outages in a row per "
          f"length; goal <= {GOAL_SECONDS:g} s)")
    print(table(results))
    if not args.no_doc:
        DOC.write_text(render_doc(results, args.trials, (load_before, os.getloadavg()[0])))
        print(f"[host-outage] wrote {DOC}")


if __name__ == "__main__":
    main()
