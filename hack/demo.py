"""`make demo`: a local multicluster federation, end to end, with a live failover.

Real processes only: host, east and west kube-apiservers; per region etcd, CoreDNS
(coredns/Corefile), the webhook provider and ExternalDNS; the aggregator on the host. The demo
plays the cloud's part (load-balancer addresses, endpoint readiness) on the member clusters.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kubernetes import client

from fleetdns.rig import Fleet
from fleetdns.rig.aggregator import AggregatorProcess
from fleetdns.rig.binaries import binary
from fleetdns.rig.coredns import dns_answers
from fleetdns.rig.region import Region
from fleetdns.rig.workloads import (
    apply_crds,
    create_load_balancer_service,
    ensure_namespace,
    register_member,
    set_endpoints,
    set_load_balancer_status,
)

ZONE = "gslb.example.com"
APP, NAMESPACE, DOMAIN_REF = "app", "shop", "fleet"
GLOBAL_NAME = f"{APP}.{ZONE}"  # the intent's dnsPrefix: a CNAME to the KubeFed-style global name
VIPS = {"east": "127.0.10.1", "west": "127.0.20.1"}
ZONES = {"east": "east-1a", "west": "west-1a"}
GRACE_SECONDS = 5


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def info(text: str) -> None:
    print(f"    {text}", flush=True)


def resolve(region: Region, name: str) -> set[str]:
    assert region.coredns is not None
    return dns_answers(region.coredns.host, region.coredns.port, name, "A", timeout=1)


def wait_for_answers(regions: list[Region], name: str, expected: set[str], timeout: float) -> float:
    """Seconds until every region answers ``name`` with exactly ``expected``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if all(resolve(region, name) == expected for region in regions):
            return time.monotonic() - started
        time.sleep(0.02)
    answers = {region.name: sorted(resolve(region, name)) for region in regions}
    raise SystemExit(f"demo failed: {name} should answer {sorted(expected)} within {timeout}s, got {answers}")


def show_answers(regions: list[Region], name: str) -> None:
    for region in regions:
        info(f"dig @{region.coredns.address} {name}  ->  {', '.join(sorted(resolve(region, name))) or '(none)'}")


def start_aggregator(fleet: Fleet, workdir: Path) -> AggregatorProcess:
    aggregator = AggregatorProcess(fleet.host.kubeconfig, [
        f"--member-grace-period={GRACE_SECONDS}s", "--leader-election-namespace=fleetdns-system",
    ], workdir).start()
    info(f"aggregator ready (metrics http://127.0.0.1:{aggregator.port}/metrics)")
    return aggregator


def create_intent(host: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(host)
    ensure_namespace(host, NAMESPACE)
    custom.create_namespaced_custom_object("fleetdns.io", "v1alpha1", NAMESPACE, "domains", {
        "apiVersion": "fleetdns.io/v1alpha1", "kind": "Domain", "metadata": {"name": DOMAIN_REF},
        "spec": {"domain": ZONE, "nameServer": f"ns1.{ZONE}"},
    })
    custom.create_namespaced_custom_object("fleetdns.io", "v1alpha1", NAMESPACE, "servicednsrecords", {
        "apiVersion": "fleetdns.io/v1alpha1", "kind": "ServiceDNSRecord", "metadata": {"name": APP},
        "spec": {"domainRef": DOMAIN_REF, "recordTTL": 5, "dnsPrefix": APP},
    })


def kubectl(kubeconfig: Path, *args: str) -> str:
    return subprocess.run([binary("kubectl"), f"--kubeconfig={kubeconfig}", *args], capture_output=True,
                          text=True, timeout=20).stdout


def timed(label: str, action: Callable[[], None], regions: list[Region], expected: set[str],
          timeout: float = 30) -> None:
    action()
    seconds = wait_for_answers(regions, GLOBAL_NAME, expected, timeout)
    info(f"{label}: every region answers {sorted(expected)} after {seconds * 1000:.0f} ms")


def run(workdir: Path, keep: bool) -> None:
    step(f"starting host, east and west kube-apiservers (logs in {workdir})")
    fleet = Fleet(("east", "west"), workdir / "clusters").start()
    regions: list[Region] = []
    aggregator: AggregatorProcess | None = None
    try:
        host = fleet.host.api_client()
        info(f"CRDs applied: {', '.join(apply_crds(host))}")
        for name in ("east", "west"):
            step(f"region {name}: etcd, CoreDNS, webhook provider, ExternalDNS")
            regions.append(Region(name, ZONE, fleet.host.kubeconfig, workdir / "regions" / name).start())
            info(f"CoreDNS for {name} answers on {regions[-1].coredns.address}")

        step("member clusters: a LoadBalancer Service with ready endpoints in east and west")
        for name, member in fleet.members.items():
            api = member.api_client()
            create_load_balancer_service(api, NAMESPACE, APP)
            set_load_balancer_status(api, NAMESPACE, APP, ips=[VIPS[name]])
            set_endpoints(api, NAMESPACE, APP, ["10.1.0.1", "10.1.0.2"], ready=True)
            register_member(host, name, region=name, zone=ZONES[name], kubeconfig=member.embedded_kubeconfig())
            info(f"{name}: Service {NAMESPACE}/{APP} at {VIPS[name]}, MemberCluster registered")

        step("aggregator (leader election on, member grace period 5s)")
        aggregator = start_aggregator(fleet, workdir)

        step(f"intent: ServiceDNSRecord {NAMESPACE}/{APP} with dnsPrefix {APP} -> {GLOBAL_NAME}")
        timed("published", lambda: create_intent(host), regions, {VIPS["east"], VIPS["west"]}, timeout=60)
        show_answers(regions, GLOBAL_NAME)
        print(kubectl(fleet.host.kubeconfig, "get", "servicednsrecords", "-n", NAMESPACE, "-o", "wide"))

        east = fleet.members["east"].api_client()
        step("failover: east's endpoints become not ready")
        timed("east removed", lambda: set_endpoints(east, NAMESPACE, APP, ["10.1.0.1", "10.1.0.2"], ready=False),
              regions, {VIPS["west"]})
        show_answers(regions, GLOBAL_NAME)
        step("recovery: east's endpoints ready again")
        timed("east back", lambda: set_endpoints(east, NAMESPACE, APP, ["10.1.0.1", "10.1.0.2"], ready=True),
              regions, {VIPS["east"], VIPS["west"]})

        step(f"east's API server goes away: its targets stay for the {GRACE_SECONDS}s grace period, then leave")
        timed("east removed after the grace period", fleet.members["east"].stop_apiserver, regions, {VIPS["west"]})
        step("east's API server returns")
        timed("east back", fleet.members["east"].restart, regions, {VIPS["east"], VIPS["west"]}, timeout=90)
        print(kubectl(fleet.host.kubeconfig, "get", "events", "-n", NAMESPACE,
                      "--field-selector", f"involvedObject.name={APP}"))

        step("done")
        if keep:
            info("everything keeps running; Ctrl-C stops it")
            for server in fleet.servers:
                info(f"KUBECONFIG={server.kubeconfig}  ({server.name})")
            stop = threading.Event()
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            stop.wait()
    finally:
        step("stopping every process")
        if aggregator is not None:
            aggregator.stop()
        for region in regions:
            region.stop()
        fleet.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="logs and data (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep everything running after the demo")
    args = parser.parse_args()
    run(args.workdir or Path(tempfile.mkdtemp(prefix="fleetdns-demo-")), args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
