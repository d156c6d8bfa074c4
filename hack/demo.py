"""`make demo`: a local multicluster federation, end to end, with live failovers.

Real processes only: host, east and west kube-apiservers, each member with its own kube-controller-manager,
kube-scheduler and kwok (the kubelet of a fake node); per region etcd, CoreDNS (coredns/Corefile), the webhook
provider and ExternalDNS; the aggregator on the host; a prober in each of three regions (east, west, north), each
in its own network namespace, checking the apps through each member's VIP where a stand-in ingress controller
routes by Host; the parent zone (example.com) served by its own DNS stack, delegating the global zone to the regions'
CoreDNS; clients asking real recursive resolvers (Unbound) that follow that delegation. The first app is a
Deployment whose EndpointSlices the members' EndpointSlice controllers write, and it fails over with `kubectl scale`.
The demo plays the cloud's part (load-balancer addresses) and, for the apps behind the stand-in ingress, their
endpoints' readiness. Needs root (network namespaces, port 53).
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import dns.message
import dns.query
from kubernetes import client

from fleetdns.apipaths import SERVICE_DNS_RECORDS
from rig.coredns import dns_answers
from rig.dnsclient import DNSClient
from rig.federation import Federation
from rig.unbound import Unbound
from rig.waiting import wait_for
from rig.workloads import MANAGED_BY, endpoint_slices, kubectl, kubectl_argv, ready_addresses, shown

ZONE = "gslb.example.com"
APP, NAMESPACE, DOMAIN_REF = "app", "shop", "fleet"
GLOBAL_NAME = f"{APP}.{ZONE}"  # the intent's dnsPrefix: a CNAME to the KubeFed-style global name
VIPS = {"east": "127.0.10.1", "west": "127.0.20.1"}
ENDPOINTS = ["10.1.0.1", "10.1.0.2"]  # the apps behind the stand-in ingress: endpoints written by the demo
MEMBERS = ("east", "west")  # each runs its real controllers (rig/controllers.py)
REPLICAS = 2  # the Deployment's, in each member
GRACE = "5s"
RECORD_TTL = 5  # every intent's recordTTL (create_service_intent's default): how long a resolver keeps an answer
PROBER_REGIONS = ("east", "west", "north")
CHECKED = {"httpGet": {"port": 80, "path": "/healthz"}, "periodSeconds": 1, "timeoutSeconds": 1,
           "failureThreshold": 1, "successThreshold": 2}


@dataclass
class StepOutcome:
    """What every region answered after one step, and how long that took."""

    label: str
    expected: list[str] | dict[str, list[str]]  # the same in every region, or per region
    answers: dict[str, list[str]]  # per region, read again once every region answered ``expected``
    seconds: float  # from the end of the action (the figure the human output prints)
    seconds_since_action_started: float  # includes the action itself (e.g. an API server's shutdown)
    name: str = GLOBAL_NAME
    client: list[str] | None = None  # what a client behind a resolver got then (None: not asked, answers per region)
    client_seconds: float | None = None  # from the end of the action: the regions' seconds plus the resolver's cache


@dataclass
class SlicesSeen:
    """The EndpointSlices of the Deployment's Service in one member, as read after a step: who wrote them
    (their ``endpointslice.kubernetes.io/managed-by`` labels) and the ready addresses they list."""

    label: str
    member: str
    managed_by: list[str]
    ready: list[str]


@dataclass
class Summary:
    """The demo's figures and outcomes for machines (``--summary-json``); the human output says the same."""

    zone: str
    name: str
    grace_period: str
    steps: list[StepOutcome] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    first_answers: dict[str, int] = field(default_factory=dict)  # the weighted app: first A record per address
    endpoint_slices: list[SlicesSeen] = field(default_factory=list)
    commands: dict[str, int] = field(default_factory=dict)  # each `fleetdns` command the demo ran: its exit code
    completed: bool = False
    error: str = ""

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def info(text: str) -> None:
    print(f"    {text}", flush=True)


def run_fleetdns(federation: Federation, summary: Summary, label: str, *args: str, dns: bool = True) -> None:
    """The operator's command as a person types it (the console script, a kubeconfig with a context per cluster),
    its output shown and its exit code kept for the summary."""
    kubeconfig = federation.fleet.operator_kubeconfig(federation.workdir / "operator.kubeconfig")
    flags = [f"--dns={name}={region.coredns.host}:{region.coredns.port}"
             for name, region in federation.regions.items() if region.coredns is not None] if dns else []
    argv = [str(Path(sys.executable).with_name("fleetdns")), "--kubeconfig", str(kubeconfig), *args, *flags]
    info(f"$ KUBECONFIG={kubeconfig} fleetdns {' '.join([*args, *flags])}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    print(done.stdout + done.stderr, end="", flush=True)
    summary.commands[label] = done.returncode


def in_answer(federation: Federation, app: str, cluster: str) -> bool:
    """Whether the app's intent status has ``cluster`` in the answer (its ``status.dns`` entry healthy)."""
    intent = cast(dict[str, Any], client.CustomObjectsApi(federation.host).get_namespaced_custom_object(
        SERVICE_DNS_RECORDS.group, SERVICE_DNS_RECORDS.version, NAMESPACE, SERVICE_DNS_RECORDS.plural, app))
    return any(e.get("cluster") == cluster and e.get("healthy") for e in (intent.get("status") or {}).get("dns") or [])


def host_kubectl(federation: Federation, *args: str) -> str:
    return kubectl(federation.fleet.host, *args)


def member_kubectl(federation: Federation, member: str, *args: str) -> None:
    """What the app's owner types against ``member``: the command shown, then run, then its output."""
    server = federation.fleet.members[member]
    info(f"$ {shown(kubectl_argv(server, *args))}")
    for line in kubectl(server, *args).splitlines():
        info(f"  {line}")


def scale_command(replicas: int) -> tuple[str, ...]:
    return "scale", f"deployment/{APP}", f"--replicas={replicas}", "-n", NAMESPACE


def record_slices(federation: Federation, summary: Summary, label: str, member: str) -> SlicesSeen:
    server = federation.fleet.members[member]
    seen = SlicesSeen(label, member,
                      sorted({(piece.metadata.labels or {}).get(MANAGED_BY, "") for piece in
                              endpoint_slices(server, NAMESPACE, APP)}),
                      sorted(ready_addresses(server, NAMESPACE, APP)))
    summary.endpoint_slices.append(seen)
    return seen


def timed(federation: Federation, summary: Summary, label: str, action: Callable[[], None],
          expected: set[str] | dict[str, set[str]], timeout: float = 30, name: str = GLOBAL_NAME,
          asker: DNSClient | None = None, resolver: Unbound | None = None) -> None:
    """Do ``action``, then report how long until every region's CoreDNS answers ``name`` with ``expected`` (the same
    set everywhere, or one per region) to ``asker`` (default: a client no DNSView matches), and then until a client
    of ``resolver`` (default: the clients' resolver; ``asker``'s subnet passed on) gets the same set."""
    started = time.monotonic()
    action()
    try:
        seconds = federation.wait_for_answers(name, expected, timeout, asker=asker)
        since_started = time.monotonic() - started
        answers = {region: sorted(federation.answers(region, name, asker=asker)) for region in federation.regions}
        client_seconds = None
        if not isinstance(expected, dict):  # per region answers: a resolver asks whichever region it likes
            client = DNSClient(subnet=asker.subnet if asker else None)
            client_seconds = seconds + federation.wait_for_client_answer(name, expected, timeout + RECORD_TTL,
                                                                         asker=client, resolver=resolver)
    except (TimeoutError, AssertionError) as error:  # the regions (TimeoutError), a resolver's client (wait_for)
        raise SystemExit(f"demo failed: {error}") from error
    shown = ({region: sorted(values) for region, values in expected.items()} if isinstance(expected, dict)
             else sorted(expected))
    summary.steps.append(StepOutcome(label, shown, answers, seconds, since_started, name,
                                     None if client_seconds is None else sorted(expected), client_seconds))
    where = f"each region answers {shown}" if isinstance(expected, dict) else f"every region answers {shown}"
    info(f"{label}: {where}{f' to {asker}' if asker else ''} after {seconds * 1000:.0f} ms"
         + ("" if client_seconds is None else
            f"; a client behind {(resolver or federation.resolver).name} gets it after {client_seconds:.1f} s"))


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
    step(f"starting host, east and west kube-apiservers; east and west also run kube-controller-manager, "
         f"kube-scheduler and kwok (a fake node each) (logs in {federation.workdir})")
    info(f"CRDs applied: {', '.join(federation.start_clusters())}")
    for name in federation.fleet.members:
        step(f"region {name}: etcd, CoreDNS, webhook provider, ExternalDNS")
        info(f"CoreDNS for {name} answers on {federation.start_region(name).coredns.address}")

    step(f"member clusters: Deployment {NAMESPACE}/{APP} ({REPLICAS} replicas) behind a LoadBalancer Service in "
         "east and west, applied with kubectl")
    for name in federation.fleet.members:
        pods = federation.run_deployment(name, NAMESPACE, APP, VIPS[name], REPLICAS)
        seen = record_slices(federation, summary, "deployed", name)
        info(f"{name}: Service {NAMESPACE}/{APP} at {VIPS[name]} (the cloud's part, written by the demo); pods ready "
             f"at {', '.join(sorted(pods))} in EndpointSlices managed by {', '.join(seen.managed_by)}")
    member_kubectl(federation, "east", "get", f"deployment/{APP}", "-n", NAMESPACE)
    member_kubectl(federation, "east", "get", "endpointslices", "-n", NAMESPACE, "-l",
                   f"kubernetes.io/service-name={APP}", "-L", MANAGED_BY)
    federation.register_members()
    info("MemberClusters east and west registered on the host (kubeconfigs in Secrets)")

    step(f"aggregator (leader election on, member grace period {GRACE})")
    aggregator = federation.start_aggregator()
    info(f"aggregator ready (metrics http://127.0.0.1:{aggregator.port}/metrics)")

    step(f"delegation: {ZONE.partition('.')[2]} served by its own DNS stack (etcd, CoreDNS, webhook, ExternalDNS) "
         f"delegates {ZONE} to east's and west's CoreDNS (a Domain with spec.delegation); clients ask Unbound")
    delegation = federation.start_delegation()
    for member, address in delegation.addresses.items():
        info(f"ns-{member}.{ZONE} -> {address} (member {member}'s CoreDNS Service address, published as glue)")
    info(f"clients' resolver: Unbound at {federation.resolver.host}:{federation.resolver.port}, starting at "
         f"{delegation.parent_zone}; every answer below is asked of it too, after the regions'")

    step(f"intent: ServiceDNSRecord {NAMESPACE}/{APP} with dnsPrefix {APP} -> {GLOBAL_NAME}")
    both = {VIPS["east"], VIPS["west"]}
    timed(federation, summary, "published",
          lambda: federation.create_service_intent(NAMESPACE, APP, DOMAIN_REF, dns_prefix=APP), both, timeout=60)
    show_answers(federation)
    show_cname(federation)
    print(host_kubectl(federation, "get", "servicednsrecords", "-n", NAMESPACE, "-o", "wide"))

    step("failover: the app's owner scales it to 0 in east, as a user would")
    timed(federation, summary, "east scaled to 0",
          lambda: member_kubectl(federation, "east", *scale_command(0)), {VIPS["west"]})
    seen = record_slices(federation, summary, "east scaled to 0", "east")
    info(f"east's EndpointSlices (managed by {', '.join(seen.managed_by)}): ready endpoints "
         f"{', '.join(seen.ready) or 'none'}")
    show_answers(federation)
    step(f"recovery: scaled back to {REPLICAS} in east")
    timed(federation, summary, f"east scaled back to {REPLICAS}",
          lambda: member_kubectl(federation, "east", *scale_command(REPLICAS)), both, timeout=60)
    # DNS answers with east again at its first ready pod; the slices are shown once both new pods are ready
    east_server = federation.fleet.members["east"]
    wait_for(lambda: len(ready_addresses(east_server, NAMESPACE, APP)) == REPLICAS, 60,
             f"{REPLICAS} ready endpoints of {APP} in east")
    info(f"east's new pods ready at "
         f"{', '.join(record_slices(federation, summary, f'east scaled back to {REPLICAS}', 'east').ready)}")

    east = federation.fleet.members["east"]
    step(f"east's API server goes away: its targets stay for the {GRACE} grace period, then leave")
    timed(federation, summary, "east removed after the grace period", east.stop_apiserver, {VIPS["west"]})
    step("east's API server returns")
    timed(federation, summary, "east back", east.restart, both, timeout=90)
    print(host_kubectl(federation, "get", "events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={APP}"))
    summary.events = intent_events(federation)
    narrate_health_checks(federation, summary)


def service_fqdn(app: str) -> str:
    return f"{app}.{NAMESPACE}.{DOMAIN_REF}.svc.{ZONE}"


def narrate_health_checks(federation: Federation, summary: Summary) -> None:
    """Apps behind each member's shared VIP, checked over HTTP from three regions: one fails over alone,
    an ordered-failover app moves, a weighted app splits its first answers 80/20."""
    step("data plane: member VIPs with a stand-in ingress controller each; probers in east, west, north")
    dataplane = federation.start_dataplane()
    federation.start_probers()
    for name in federation.fleet.members:
        info(f"{name}: VIPs {', '.join(dataplane.vips(name))} (routes by Host; 503 without ready endpoints)")
    info("probers ready in their own network namespaces; each renews its Lease fleetdns-prober-<region>")

    vips = {name: dataplane.vips(name)[0] for name in federation.fleet.members}
    both = set(vips.values())
    step("two apps behind the same VIPs, each with an HTTP health check (periodSeconds 1, failureThreshold 1)")
    for app in ("shop", "blog"):
        for member in federation.fleet.members:
            federation.run_app(member, NAMESPACE, app, service_fqdn(app), ENDPOINTS)
        timed(federation, summary, f"{app} published",
              functools.partial(federation.create_service_intent, NAMESPACE, app, DOMAIN_REF, create_domain=False,
                                spec={"healthCheck": CHECKED}),
              both, timeout=60, name=service_fqdn(app))
    for app in ("shop", "blog"):
        dataplane.wait_checked(service_fqdn(app))
    step("shop's pods stay ready in east but the app answers 500 there: only the health check can tell")
    timed(federation, summary, "shop failing in east", lambda: dataplane.set_app_status("east", service_fqdn("shop"),
                                                                                        500),
          {vips["west"]}, name=service_fqdn("shop"))
    blog = {region: sorted(federation.answers(region, service_fqdn("blog"))) for region in federation.regions}
    summary.steps.append(StepOutcome("blog unchanged", sorted(both), blog, 0.0, 0.0, service_fqdn("blog")))
    info(f"blog, same VIPs, still answers {sorted(both)} in every region: {blog}")
    print(host_kubectl(federation, "get", "healthreports", "-n", NAMESPACE))
    timed(federation, summary, "shop healthy in east again",
          lambda: dataplane.set_app_status("east", service_fqdn("shop"), None), both, name=service_fqdn("shop"))

    step("ordered failover: pay answers from east only while east is healthy, then from west")
    for member in federation.fleet.members:
        federation.run_app(member, NAMESPACE, "pay", service_fqdn("pay"), ENDPOINTS)
    timed(federation, summary, "pay published (east first)",
          lambda: federation.create_service_intent(NAMESPACE, "pay", DOMAIN_REF, create_domain=False, spec={
              "healthCheck": CHECKED, "loadBalancing": {"policy": "Failover", "failoverOrder": ["east", "west"]}}),
          {vips["east"]}, timeout=60, name=service_fqdn("pay"))
    dataplane.wait_checked(service_fqdn("pay"))
    timed(federation, summary, "pay failing in east", lambda: dataplane.set_app_status("east", service_fqdn("pay"),
                                                                                       500),
          {vips["west"]}, name=service_fqdn("pay"))
    info("why does a client get west's address for pay? `fleetdns explain` follows the chain, and asks each region")
    wait_for(lambda: not in_answer(federation, "pay", "east"), 10, "pay's status marking east out of the answer")
    run_fleetdns(federation, summary, "explain pay failed over", "explain", service_fqdn("pay"),
                 "--host-context", "host")
    timed(federation, summary, "pay back in east", lambda: dataplane.set_app_status("east", service_fqdn("pay"),
                                                                                    None),
          {vips["east"]}, name=service_fqdn("pay"))

    step("weighted: media gets 80 % of first answers from east, 20 % from west")
    for member in federation.fleet.members:
        federation.run_app(member, NAMESPACE, "media", service_fqdn("media"), ENDPOINTS)
    timed(federation, summary, "media published",
          lambda: federation.create_service_intent(NAMESPACE, "media", DOMAIN_REF, create_domain=False, spec={
              "loadBalancing": {"policy": "Weighted", "weights": [{"target": "east", "weight": 80},
                                                                 {"target": "west", "weight": 20}]}}),
          both, timeout=60, name=service_fqdn("media"))
    summary.first_answers = first_answers(federation, service_fqdn("media"), 1000)
    shares = ", ".join(f"{address} {count / 10:.1f} %" for address, count in sorted(summary.first_answers.items()))
    info(f"1,000 queries to east's CoreDNS, first A record: {shares}")
    print(host_kubectl(federation, "get", "servicednsrecords", "-n", NAMESPACE))
    narrate_self_service(federation, summary)
    narrate_client_location(federation, summary, vips)
    step("the fleet as an operator sees it: `fleetdns status` (members, regions' probers and DNS, apps)")
    run_fleetdns(federation, summary, "status", "status", "--host-context", "host")


SELF_SERVICE_APP = "cart"
SELF_SERVICE_VIPS = {"east": "127.0.10.7", "west": "127.0.20.7"}


PARIS_OFFICE = DNSClient("127.0.9.7")  # its resolver's address: in the office's network (a DNSView by clientCIDRs)
US_CLIENTS = DNSClient(subnet="198.51.100.0/24")  # an EDNS client subnet the rig's GeoIP database places in the US


def narrate_client_location(federation: Federation, summary: Summary, vips: dict[str, str]) -> None:
    """Two client populations get different answers under GeoProximity; a LowestLatency answer follows a path
    that slows down."""
    step("client location: a DNSView by network (the Paris office) and one by country (US, from the EDNS client "
         "subnet); maps answers each population with its nearest healthy cluster (GeoProximity)")
    federation.create_dns_view("paris-office", {"clientCIDRs": ["127.0.9.0/24"],
                                                "location": {"latitude": 48.86, "longitude": 2.35}})
    federation.create_dns_view("us", {"countries": ["US"], "location": {"latitude": 40.71, "longitude": -74.01}})
    delegation = federation.delegation
    assert delegation is not None
    office = delegation.add_resolver("paris-office", outgoing=PARIS_OFFICE.source)
    public = delegation.add_resolver("public", client_subnet=True)
    info(f"the Paris office's clients ask their own Unbound ({office.host}:{office.port}), which asks from "
         f"{PARIS_OFFICE.source}; US clients ask a public Unbound ({public.host}:{public.port}) that passes their "
         f"EDNS client subnet on")
    for member in federation.fleet.members:
        federation.run_app(member, NAMESPACE, "maps", service_fqdn("maps"), ENDPOINTS)
    timed(federation, summary, "maps for the Paris office (view by network)",
          lambda: federation.create_service_intent(NAMESPACE, "maps", DOMAIN_REF, create_domain=False, spec={
              "healthCheck": CHECKED, "loadBalancing": {"policy": "GeoProximity"}}),
          {vips["east"]}, timeout=60, name=service_fqdn("maps"), asker=PARIS_OFFICE, resolver=office)
    timed(federation, summary, "maps for clients in the US (view by country)", lambda: None, {vips["west"]},
          timeout=60, name=service_fqdn("maps"), asker=US_CLIENTS, resolver=public)

    step("lowest latency: api answers each region with its fastest cluster, then east's path to its own cluster "
         "slows to 80 ms (a real delay on the probes' packets)")
    dataplane = federation.dataplane
    assert dataplane is not None
    dataplane.set_path_delay("east", "west", 0.030)
    dataplane.set_path_delay("west", "east", 0.030)
    for member in federation.fleet.members:
        federation.run_app(member, NAMESPACE, "api", service_fqdn("api"), ENDPOINTS)
    timed(federation, summary, "api by latency",
          lambda: federation.create_service_intent(NAMESPACE, "api", DOMAIN_REF, create_domain=False, spec={
              "healthCheck": CHECKED, "loadBalancing": {"policy": "LowestLatency"}}),
          {"east": {vips["east"]}, "west": {vips["west"]}}, timeout=60, name=service_fqdn("api"))
    timed(federation, summary, "api: east's own path slowed", lambda: dataplane.set_path_delay("east", "east", 0.080),
          {vips["west"]}, timeout=60, name=service_fqdn("api"))
    for region, member in (("east", "east"), ("east", "west"), ("west", "east")):
        dataplane.set_path_delay(region, member, 0.0)


def annotate(federation: Federation, member: str, annotations: dict[str, str | None]) -> None:
    """What the app team does in its own member cluster (``None`` removes an annotation)."""
    client.CoreV1Api(federation.fleet.members[member].api_client()).patch_namespaced_service(
        SELF_SERVICE_APP, NAMESPACE, {"metadata": {"annotations": annotations}})


def annotate_both(federation: Federation, annotations: dict[str, str | None]) -> None:
    for member in federation.fleet.members:
        annotate(federation, member, annotations)


def narrate_self_service(federation: Federation, summary: Summary) -> None:
    """No host intent written by hand: annotations on the members' Service publish it, and withdraw it."""
    step(f"self-service: the app team annotates Service {NAMESPACE}/{SELF_SERVICE_APP} in east and west "
         "(fleetdns.io/global, fleetdns.io/domain, fleetdns.io/ttl); nobody writes a host intent")
    for member in federation.fleet.members:
        federation.run_service(member, NAMESPACE, SELF_SERVICE_APP, SELF_SERVICE_VIPS[member], ENDPOINTS)
    name = service_fqdn(SELF_SERVICE_APP)
    timed(federation, summary, "cart published by annotations",
          lambda: annotate_both(federation, {"fleetdns.io/global": "true", "fleetdns.io/domain": DOMAIN_REF,
                                             "fleetdns.io/ttl": str(RECORD_TTL)}),
          set(SELF_SERVICE_VIPS.values()), timeout=60, name=name)
    print(host_kubectl(federation, "get", "servicednsrecords", "-n", NAMESPACE, "-l", "fleetdns.io/generated-by",
                  "-L", "fleetdns.io/generated-by,fleetdns.io/source-kind"))
    step("the annotation goes from both members: the generated intent and the name go with it")
    timed(federation, summary, "cart withdrawn",
          lambda: annotate_both(federation, {"fleetdns.io/global": None, "fleetdns.io/domain": None,
                                             "fleetdns.io/ttl": None}),
          set(), timeout=60, name=name)


def first_answers(federation: Federation, name: str, count: int) -> dict[str, int]:
    """How often each address comes first over ``count`` queries, once the weight file has caught up."""
    coredns = federation.regions["east"].coredns
    assert coredns is not None

    def tally(queries: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _ in range(queries):
            reply = dns.query.udp(dns.message.make_query(name, "A"), coredns.host, port=coredns.port, timeout=2)
            first = reply.answer[0][0].to_text()
            counts[first] = counts.get(first, 0) + 1
        return counts

    deadline = time.monotonic() + 30  # the weight file follows etcd within a second or two
    while max(tally(200).values()) < 140 and time.monotonic() < deadline:
        pass
    return tally(count)


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
    federation = Federation(args.workdir or Path(tempfile.mkdtemp(prefix="fleetdns-demo-")), ZONE, grace_period=GRACE,
                            prober_regions=PROBER_REGIONS, members=MEMBERS, controllers=MEMBERS, delegated=True)
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
