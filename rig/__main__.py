"""`make rig`: a whole local fleet to poke at by hand; Ctrl-C stops every process.

Starts the host and member ("east", "west") API servers, and per region an etcd plus a CoreDNS
running coredns/Corefile, then prints where everything is.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
from pathlib import Path

from rig import EtcdServer, Fleet
from rig.coredns import regional_coredns


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m rig", description=__doc__.splitlines()[0])
    parser.add_argument("--zone", default="gslb.example.com", help="zone every regional CoreDNS serves")
    parser.add_argument("--workdir", type=Path, default=None, help="where logs, data and kubeconfigs go")
    parser.add_argument("--members", default="east,west", help="comma list of member clusters (= regions)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fleetdns-rig-"))
    members = tuple(m.strip() for m in args.members.split(",") if m.strip())

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    print(f"[rig] starting API servers host, {', '.join(members)} in {workdir}", flush=True)
    fleet = Fleet(members, workdir / "clusters").start()
    regions = []
    try:
        for region in members:
            print(f"[rig] starting etcd and CoreDNS for region {region}", flush=True)
            etcd = EtcdServer(workdir / "regions" / region / "etcd").start()
            dns = regional_coredns(args.zone, etcd.endpoints, workdir / "regions" / region / "coredns",
                                   f"coredns-{region}").start()
            regions.append((region, etcd, dns))
        print("\nFleetDNS rig is up. Ctrl-C stops everything.\n")
        for server in fleet.servers:
            print(f"  cluster {server.name:<6} {server.url}  KUBECONFIG={server.kubeconfig}")
        for region, etcd, dns in regions:
            print(f"  region  {region:<6} etcd {etcd.url}  DNS {dns.address}  "
                  f"(dig @{dns.host} -p {dns.port} app.{args.zone})")
        print(f"\n  logs under {workdir}", flush=True)
        stop.wait()
    finally:
        print("\n[rig] stopping", flush=True)
        for _, etcd, dns in regions:
            dns.stop()
            etcd.stop()
        fleet.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
