"""The first change after a host API outage: host API server stopped for N s, started, then an app's readiness
flips in one member -> seconds until every regional CoreDNS answers the new set.

Side by side in one run: each region's ExternalDNS through the webhook's host relay (FleetDNS's setting) and
ExternalDNS talking to the host directly (the lag check still runs, but cannot shorten client-go's backoff).
The two federations run one after the other on the same machine, with the same outages in the same order.

    python -m bench.host_outage [--outages 5,60] [--trials 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from rig.federation import Federation

NAMESPACE, APP, DOMAIN_REF = "bench", "app", "fleet"
VIPS = {"east": "127.0.10.1", "west": "127.0.20.1"}
ENDPOINTS = ["10.1.0.1"]
GOAL_SECONDS = 5.0
SETUPS = {"through the host relay (FleetDNS)": True, "ExternalDNS direct to the host": False}


def run_setup(label: str, relay: bool, outages: list[float], trials: int) -> dict[float, list[float]]:
    print(f"[host-outage] {label}: starting 3 API servers, 2 regions and the aggregator", flush=True)
    federation = Federation(Path(tempfile.mkdtemp(prefix="fleetdns-bench-host-outage-")), grace_period="5m",
                            host_relay=relay)
    took: dict[float, list[float]] = {outage: [] for outage in outages}
    try:
        federation.start()
        for member in federation.fleet.members:
            federation.run_service(member, NAMESPACE, APP, VIPS[member], ENDPOINTS)
        name = f"{APP}.{NAMESPACE}.{DOMAIN_REF}.svc.{federation.zone}"
        federation.create_service_intent(NAMESPACE, APP, DOMAIN_REF)
        federation.wait_for_answers(name, set(VIPS.values()), 60)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outages", default="5,60", help="outage lengths in seconds, comma-separated")
    parser.add_argument("--trials", type=int, default=5, help="outages in a row per length")
    args = parser.parse_args()
    outages = [float(value) for value in args.outages.split(",")]
    results = {label: run_setup(label, relay, outages, args.trials) for label, relay in SETUPS.items()}
    print(f"\n## host outage -> first change in every regional CoreDNS ({platform.node()}, "
          f"{args.trials} outages in a row per length; goal <= {GOAL_SECONDS:g} s)")
    print("| setup | outage | median | max | all (s) |")
    print("|---|---|---|---|---|")
    for label, took in results.items():
        for outage, values in took.items():
            print(f"| {label} | {outage:g} s | {statistics.median(values):.2f} s | {max(values):.2f} s | "
                  f"{', '.join(f'{v:.1f}' for v in values)} |")


if __name__ == "__main__":
    main()
