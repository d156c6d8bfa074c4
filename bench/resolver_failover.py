"""The failover a client sees behind a real recursive resolver, beside the time at CoreDNS.

A Failover app (east first, then west) in the delegated zone (rig/delegated.py: the parent zone's own DNS stack, the
regions' CoreDNS on the glue addresses, Unbound starting at the parent). Each trial: the client's resolver has
east's answer cached (the client asked at a random moment of the TTL), east's endpoints go unready, and the bench
times (a) the first query straight to a regional CoreDNS that answers west, (b) the first answer of west through
Unbound. The difference is the TTL left in the resolver's cache: with recordTTL 30 s (the default) and with 5 s, in
the same run.

    python -m bench.resolver_failover [--trials 10] [--no-doc]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query

from bench.machine import machine
from rig.delegated import ZONE
from rig.federation import Federation
from rig.ports import DNS_PORT
from rig.waiting import wait_for
from rig.workloads import set_endpoints

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks-resolver-failover.md"
EAST, WEST = "192.0.2.91", "192.0.2.92"
PAUSES = random.Random(17)  # seeded: reruns ask at the same moments of the TTL


def at_coredns(address: str, name: str) -> set[str]:
    response = dns.query.udp(dns.message.make_query(name, "A"), address, port=DNS_PORT, timeout=1)
    return {rr.to_text() for rrset in response.answer for rr in rrset}


def trial(world: Federation, namespace: str, name: str, ttl: int) -> tuple[float, float]:
    """(seconds until a regional CoreDNS answers west, seconds until the client behind Unbound gets west)."""
    assert world.delegation is not None
    east_api = world.fleet.members["east"].api_client()
    set_endpoints(east_api, namespace, "web", ["10.0.0.1"], ready=True)
    wait_for(lambda: world.resolver.resolve(name)[0] == {EAST}, 60 + ttl, "east's answer back through the resolver")
    time.sleep(PAUSES.uniform(0, ttl))  # the client asked at some moment of the TTL: the cache holds what is left
    started = time.monotonic()
    set_endpoints(east_api, namespace, "web", ["10.0.0.1"], ready=False)
    address = world.delegation.addresses["east"]
    wait_for(lambda: at_coredns(address, name) == {WEST}, 30, "the regional CoreDNS answering west", interval=0.02)
    coredns = time.monotonic() - started
    wait_for(lambda: world.resolver.resolve(name)[0] == {WEST}, ttl + 30, "the client getting west", interval=0.05)
    return coredns, time.monotonic() - started


def run(trials: int) -> dict[int, list[tuple[float, float]]]:
    world = Federation(Path(tempfile.mkdtemp(prefix="fleetdns-bench-resolver-")), zone=ZONE, delegated=True)
    results: dict[int, list[tuple[float, float]]] = {}
    try:
        world.start()
        for ttl in (30, 5):
            namespace = f"bench-ttl{ttl}"
            name = f"web.{namespace}.fleet.svc.{ZONE}"
            world.run_service("east", namespace, "web", EAST, ["10.0.0.1"])
            world.run_service("west", namespace, "web", WEST, ["10.0.0.2"])
            world.create_service_intent(namespace, "web", "fleet", ttl=ttl, spec={
                "loadBalancing": {"policy": "Failover", "failoverOrder": ["east", "west"]}})
            results[ttl] = []
            for index in range(trials):
                results[ttl].append(trial(world, namespace, name, ttl))
                coredns, client = results[ttl][-1]
                print(f"recordTTL {ttl:>2} s, trial {index + 1}/{trials}: CoreDNS {coredns:.2f} s, client behind "
                      f"Unbound {client:.2f} s", flush=True)
    finally:
        world.stop()
    return results


def table(results: dict[int, list[tuple[float, float]]]) -> str:
    lines = ["| recordTTL | trials | at CoreDNS p50 / max | client behind Unbound p50 / max |", "|---|---:|---|---|"]
    for ttl, rows in results.items():
        coredns, client = [r[0] for r in rows], [r[1] for r in rows]
        lines.append(f"| {ttl} s | {len(rows)} | {statistics.median(coredns):.2f} s / {max(coredns):.2f} s | "
                     f"{statistics.median(client):.2f} s / {max(client):.2f} s |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench-resolver-failover", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--no-doc", action="store_true", help=f"print only; do not rewrite {DOC.name}")
    args = parser.parse_args()
    results = run(args.trials)
    text = table(results)
    print(text)
    if not args.no_doc:
        DOC.write_text(f"""# Benchmark: the failover a client sees behind a real resolver

`make bench-resolver-failover` (`bench/resolver_failover.py`).
Run {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} on {machine()}.

Method: a Failover app (east, then west) in the delegated zone; the client asks Unbound, a real recursive resolver
that starts at the parent zone and follows its referral to the regions' CoreDNS (`rig/delegated.py`). Each trial
the resolver holds east's answer, asked at a random moment of the TTL; then east's endpoints go unready. Timed from
that moment: the first answer of west straight from a regional CoreDNS, and the first answer of west the client gets
through Unbound. Both record TTLs in the same run, on the same federation.

{text}

What it means: the chain moves the answer in about a second; a client behind a caching resolver waits, on top of it,
for the TTL left on its cached answer (up to the whole `recordTTL`). A lower `recordTTL` buys faster client
failover for more queries reaching the regions.
""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
