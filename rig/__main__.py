"""`make rig`: the whole local federation, kept up to poke at by hand; Ctrl-C stops every process.

Starts what the demo starts (host, east and west API servers; per region etcd, CoreDNS, the webhook and
ExternalDNS; the aggregator; the members' VIPs and a prober in each of three regions), then prints how to reach
each part: the kubeconfigs, each region's DNS, and the `fleetdns` commands that read the whole of it.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import tempfile
import threading
from pathlib import Path

from rig.federation import Federation

PROBER_REGIONS = ("east", "west", "north")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m rig", description=__doc__.splitlines()[0])
    parser.add_argument("--zone", default="gslb.example.com", help="zone every regional CoreDNS serves")
    parser.add_argument("--workdir", type=Path, default=None, help="where logs, data and kubeconfigs go")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fleetdns-rig-"))

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    print(f"[rig] starting the federation (API servers, a DNS stack per region, aggregator, probers) in {workdir}",
          flush=True)
    federation = Federation(workdir, args.zone, prober_regions=PROBER_REGIONS)
    try:
        federation.start()
        print_how_to_reach(federation, workdir)
        stop.wait()
    finally:
        print("\n[rig] stopping", flush=True)
        federation.stop()
    return 0


def print_how_to_reach(federation: Federation, workdir: Path) -> None:
    kubeconfig = federation.fleet.operator_kubeconfig(workdir / "operator.kubeconfig")
    dns_flags = []
    print("\nFleetDNS rig is up. Ctrl-C stops everything.\n")
    for server in federation.fleet.servers:
        print(f"  cluster {server.name:<6} {server.url}  kubectl --kubeconfig={server.kubeconfig}")
    for name, region in federation.regions.items():
        assert region.coredns is not None
        dns_flags.append(f"--dns={name}={region.coredns.host}:{region.coredns.port}")
        print(f"  region  {name:<6} DNS {region.coredns.host}:{region.coredns.port}  "
              f"(dig @{region.coredns.host} -p {region.coredns.port} app.{federation.zone})")
    for name, prober in federation.probers.items():
        print(f"  prober  {name:<6} log {prober.log_path}")
    fleetdns = shlex.quote(str(Path(sys.executable).with_name("fleetdns")))
    print(f"\n  operator kubeconfig (contexts {', '.join(s.name for s in federation.fleet.servers)}): {kubeconfig}")
    print(f"  {fleetdns} --kubeconfig={kubeconfig} status --host-context=host {' '.join(dns_flags)}")
    print(f"  {fleetdns} --kubeconfig={kubeconfig} explain NAME --host-context=host {' '.join(dns_flags)}")
    print(f"\n  logs under {workdir}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
