"""`make demo`: a local multicluster federation, end to end, with a live failover.

Real processes only: host, east and west kube-apiservers; per region etcd, CoreDNS
(coredns/Corefile), the webhook provider and ExternalDNS; the aggregator on the host. The demo
plays the cloud's part (load-balancer addresses, endpoint readiness) on the member clusters.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from rig.binaries import binary
from rig.coredns import dns_answers
from rig.federation import Federation

ZONE = "gslb.example.com"
APP, NAMESPACE, DOMAIN_REF = "app", "shop", "fleet"
GLOBAL_NAME = f"{APP}.{ZONE}"  # the intent's dnsPrefix: a CNAME to the KubeFed-style global name
VIPS = {"east": "127.0.10.1", "west": "127.0.20.1"}
ENDPOINTS = ["10.1.0.1", "10.1.0.2"]
GRACE = "5s"


@dataclass
class StepOutcome:
    """What every region answered after one step, and how long that took."""

    label: str
    expected: list[str]
    answers: dict[str, list[str]]  # per region, read again once every region answered ``expected``
    seconds: float  # from the end of the action (the figure the human output prints)
    seconds_since_action_started: float  # includes the action itself (e.g. an API server's shutdown)


@dataclass
class Summary:
    """The demo's figures and outcomes for machines (``--summary-json``); the human output says the same."""

    zone: str
    name: str
    grace_period: str
    steps: list[StepOutcome] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    completed: bool = False
    error: str = ""

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def info(text: str) -> None:
    print(f"    {text}", flush=True)


def kubectl(federation: Federation, *args: str) -> str:
    return subprocess.run([binary("kubectl"), f"--kubeconfig={federation.fleet.host.kubeconfig}", *args],
                          capture_output=True, text=True, timeout=20).stdout


def timed(federation: Federation, summary: Summary, label: str, action: Callable[[], None], expected: set[str],
          timeout: float = 30) -> None:
    """Do ``action``, then report how long until every region's CoreDNS answers ``expected``."""
    started = time.monotonic()
    action()
    try:
        seconds = federation.wait_for_answers(GLOBAL_NAME, expected, timeout)
    except TimeoutError as error:
        raise SystemExit(f"demo failed: {error}") from error
    since_started = time.monotonic() - started
    answers = {name: sorted(federation.answers(name, GLOBAL_NAME)) for name in federation.regions}
    summary.steps.append(StepOutcome(label, sorted(expected), answers, seconds, since_started))
    info(f"{label}: every region answers {sorted(expected)} after {seconds * 1000:.0f} ms")


def intent_events(federation: Federation) -> list[dict[str, Any]]:
    """The Events on the demo's intent, as the API server holds them."""
    listed = client.CoreV1Api(federation.host).list_namespaced_event(
        NAMESPACE, field_selector=f"involvedObject.name={APP}")
    return [{"reason": e.reason, "type": e.type, "message": e.message, "count": e.count,
             "kind": e.involved_object.kind} for e in listed.items]


def show_answers(federation: Federation) -> None:
    for name, region in federation.regions.items():
        answer = ", ".join(sorted(federation.answers(name, GLOBAL_NAME))) or "(none)"
        info(f"dig @{region.coredns.address} {GLOBAL_NAME}  ->  {answer}")


def show_cname(federation: Federation) -> None:
    """The global name is a CNAME (dnsPrefix): asked for as such it answers, never NXDOMAIN."""
    region = next(iter(federation.regions.values()))
    target = ", ".join(sorted(dns_answers(region.coredns.host, region.coredns.port, GLOBAL_NAME, "CNAME")))
    info(f"dig @{region.coredns.address} CNAME {GLOBAL_NAME}  ->  {target or '(none)'}")


def narrate(federation: Federation, summary: Summary) -> None:
    step(f"starting host, east and west kube-apiservers (logs in {federation.workdir})")
    info(f"CRDs applied: {', '.join(federation.start_clusters())}")
    for name in federation.fleet.members:
        step(f"region {name}: etcd, CoreDNS, webhook provider, ExternalDNS")
        info(f"CoreDNS for {name} answers on {federation.start_region(name).coredns.address}")

    step("member clusters: a LoadBalancer Service with ready endpoints in east and west")
    for name in federation.fleet.members:
        federation.run_service(name, NAMESPACE, APP, VIPS[name], ENDPOINTS)
        info(f"{name}: Service {NAMESPACE}/{APP} at {VIPS[name]}")
    federation.register_members()
    info("MemberClusters east and west registered on the host (kubeconfigs in Secrets)")

    step(f"aggregator (leader election on, member grace period {GRACE})")
    aggregator = federation.start_aggregator()
    info(f"aggregator ready (metrics http://127.0.0.1:{aggregator.port}/metrics)")

    step(f"intent: ServiceDNSRecord {NAMESPACE}/{APP} with dnsPrefix {APP} -> {GLOBAL_NAME}")
    both = {VIPS["east"], VIPS["west"]}
    timed(federation, summary, "published",
          lambda: federation.create_service_intent(NAMESPACE, APP, DOMAIN_REF, dns_prefix=APP), both, timeout=60)
    show_answers(federation)
    show_cname(federation)
    print(kubectl(federation, "get", "servicednsrecords", "-n", NAMESPACE, "-o", "wide"))

    step("failover: east's endpoints become not ready")
    timed(federation, summary, "east removed", lambda: federation.set_ready("east", NAMESPACE, APP, ENDPOINTS, False),
          {VIPS["west"]})
    show_answers(federation)
    step("recovery: east's endpoints ready again")
    timed(federation, summary, "east back", lambda: federation.set_ready("east", NAMESPACE, APP, ENDPOINTS, True), both)

    east = federation.fleet.members["east"]
    step(f"east's API server goes away: its targets stay for the {GRACE} grace period, then leave")
    timed(federation, summary, "east removed after the grace period", east.stop_apiserver, {VIPS["west"]})
    step("east's API server returns")
    timed(federation, summary, "east back", east.restart, both, timeout=90)
    print(kubectl(federation, "get", "events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={APP}"))
    summary.events = intent_events(federation)


def wait_for_ctrl_c(federation: Federation) -> None:
    info("everything keeps running; Ctrl-C stops it")
    for server in federation.fleet.servers:
        info(f"KUBECONFIG={server.kubeconfig}  ({server.name})")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="logs and data (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep everything running after the demo")
    parser.add_argument("--summary-json", type=Path, default=None, metavar="PATH",
                        help="also write the figures and outcomes as JSON to PATH (written on failure too)")
    args = parser.parse_args()
    federation = Federation(args.workdir or Path(tempfile.mkdtemp(prefix="fleetdns-demo-")), ZONE, grace_period=GRACE)
    summary = Summary(ZONE, GLOBAL_NAME, GRACE)
    try:
        narrate(federation, summary)
        summary.completed = True
        step("done")
        if args.keep:
            wait_for_ctrl_c(federation)
    except BaseException as error:
        summary.error = f"{type(error).__name__}: {error}"
        raise
    finally:
        if args.summary_json:
            summary.write(args.summary_json)
        step("stopping every process")
        federation.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
