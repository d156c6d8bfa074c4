"""Client-location views: what they cost a regional CoreDNS, how many etcd keys they take, and how fast an answer
follows a latency change.

1. Serving: 1,000 names answered differently in each DNSView, served by one regional CoreDNS
   (``rig.coredns.regional_coredns`` with ``region`` and the views: a server block per view, the region's view as
   catch-all, zone files rendered from etcd by fleetdns-zonefiles): three views by the resolver's address, and two
   by address plus one by GeoIP of the EDNS client subnet. Three dnsperf processes at once, one per view (``-a``
   source address, ``-E`` ECS option), against each and, in the same run, against CoreDNS's ``file`` plugin serving
   a zone of the same records (the baseline, goal >= 0.8x) and the shipped Corefile without views; then each asker
   alone, for the cost of a query by the block that answers it.
2. Keys: 10,000 names through the real webhook into etcd, 2,000 of them with a location policy in 5 views
   (3 DNSViews + 2 region views), A, AAAA and ExternalDNS's ownership TXT records as its TXT registry writes them;
   keys counted under each prefix.
3. Latency change: the whole real chain (probers in three regions' network namespaces, paths slowed by the rig's
   delaying forwarder, aggregator, ExternalDNS, webhook, etcd, CoreDNS in two regions): a DNSView whose latency is
   measured from east; east's path to its own cluster gets 80 ms slower (then recovers) and the clock runs until
   every regional CoreDNS gives the view's clients the other cluster (then back), with the stages.

Run: ``make bench-views`` (``python -m bench.views [--parts serving,keys,latency]``). Results go to
docs/benchmarks-views.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pyetcd

from bench.machine import cpu_seconds, machine
from bench.serving import addresses, file_corefile, load_average, zone_file
from fleetdns.apipaths import DNS_ENDPOINTS, HEALTH_REPORTS
from fleetdns.dnsview import VIEW_PROPERTY, accept_views, parse_dns_view, region_view_name
from fleetdns.kubeapi import KubeClient
from rig import CoreDNS, EtcdCluster, EtcdServer
from rig.aggregator import client_for
from rig.binaries import REPO_ROOT, binary
from rig.coredns import regional_coredns
from rig.dnsclient import DNSClient, client_answers
from rig.dnsperf import Dnsperf, dnsperf_version
from rig.dnsperf import Load as DnsperfLoad
from rig.federation import Federation
from rig.geoip import write_geoip_db
from rig.region import WebhookProvider
from rig.waiting import wait_for
from rig.workloads import ensure_namespace
from serving.weightfile import render

ZONE = "gslb.example.com"
DOC = REPO_ROOT / "docs" / "benchmarks-views.md"
GOAL_RATIO = 0.8
TTL = 30
PARTS = ("serving", "keys", "latency")

# --- 1. serving ------------------------------------------------------------------------------------------------

SERVING_VIEWS: dict[str, dict[str, Any]] = {
    "paris": {"clientCIDRs": ["127.0.1.0/24"], "location": {"latitude": 48.8566, "longitude": 2.3522}},
    "boston": {"clientCIDRs": ["127.0.2.0/24"], "location": {"latitude": 42.3601, "longitude": -71.0589}},
    "tokyo": {"clientCIDRs": ["127.0.3.0/24"], "location": {"latitude": 35.6762, "longitude": 139.6503}},
    "germany": {"countries": ["DE"], "location": {"latitude": 52.52, "longitude": 13.405}},
}
# Who asks each view: a source address in its clientCIDRs, or the resolver 127.0.0.1 with a German client subnet.
ASKERS = {"paris": DNSClient("127.0.1.1"), "boston": DNSClient("127.0.2.1"), "tokyo": DNSClient("127.0.3.1"),
          "germany": DNSClient(subnet="192.0.2.0/24")}
CATCH_ALL = DNSClient()  # 127.0.0.1 without ECS: no view matches (GeoIP knows nothing of 127.0.0.1)


@dataclass(frozen=True)
class Variant:
    """One CoreDNS of the serving part: which DNSViews it has a block for (None: not a views Corefile), who asks it
    in the full-speed rounds, and whom to ask alone (name -> the block that answers, for the cost per block)."""

    name: str
    views: tuple[str, ...] | None
    askers: tuple[str, ...]
    alone: tuple[tuple[str, str], ...]
    description: str
    static: bool = False  # the sidecar stopped once the files were written: the file plugin on its own
    same_answers: str = ""  # the variant serving the same answers with the file plugin alone: the goal's baseline


CIDR_ASKERS = ("paris", "boston", "tokyo")
VARIANTS = (
    Variant("views-cidr", ("paris", "boston", "tokyo"), CIDR_ASKERS,
            (("boston", "1st (CIDR)"), ("paris", "2nd (CIDR)"), ("tokyo", "3rd (CIDR)"),
             ("catch-all", "4th: the catch-all, after three CIDR blocks")),
            "three DNSViews by the resolver's address: a block each (`view` with `incidr(client_ip(), ...)`, its "
            "own `file`), then the region's view as catch-all; the Corefile `fleetdns-corefile` renders "
            "(`regional_coredns(region=..., views=...)`), fed by fleetdns-zonefiles with `--views`",
            same_answers="file-views"),
    Variant("views-geoip", ("paris", "boston", "germany"), ("paris", "boston", "germany"),
            (("germany", "3rd (GeoIP of the ECS), after two CIDR blocks"),
             ("catch-all", "4th: the catch-all, after two CIDR blocks and the GeoIP one")),
            "two DNSViews by address and one by country (`geoip { edns-subnet }` + `metadata`, expression on "
            "`metadata('geoip/country/code')`), then the catch-all; asked with an EDNS client subnet in Germany",
            same_answers="file-views-geoip"),
    Variant("file", None, CIDR_ASKERS, (("boston", ""), ("germany", ""), ("catch-all", "")),
            "the `file` plugin serving a zone of the same 1,000 names (the default answers) with the shipped "
            "Corefile's `loadbalance weighted`, `health`, `ready`, `prometheus`, `errors`: one plain block, which "
            "cannot answer per view: what the views cost (asked as `views-cidr` is, without ECS)"),
    Variant("file-views", ("paris", "boston", "tokyo"), CIDR_ASKERS, (),
            "`views-cidr`'s CoreDNS (the same blocks and zone files) with its fleetdns-zonefiles sidecar stopped once "
            "every file was written: the `file` plugin serving the same per-view answers, which stock CoreDNS can "
            "only do with these `view` blocks", static=True),
    Variant("file-views-geoip", ("paris", "boston", "germany"), ("paris", "boston", "germany"), (),
            "the same for `views-geoip`", static=True),
    Variant("no-views", (), CIDR_ASKERS, (),
            "coredns/Corefile as shipped (no views: one `file` block), fed by fleetdns-zonefiles"),
)
BY_NAME = {variant.name: variant for variant in VARIANTS}
SERVING_HEADER = ("| variant | QPS of the three, median (each round) | vs `file` | QPS per asker (median) "
                  "| average latency, ms | lost | CoreDNS CPU per query, µs | goal |\n"
                  "|---|---|---|---|---|---|---|---|")


def view_address(view_index: int, index: int, family: str) -> str:
    """Name ``index``'s address in view ``view_index`` (1-based): distinct per view, so answers show the view."""
    if family == "A":
        return f"10.{view_index}.{index // 250}.{index % 250 + 1}"
    return str(ipaddress.IPv6Address(f"2001:db8:{view_index:x}:{index:x}::1"))


def serving_endpoints(names: int, views: list[str]) -> list[dict[str, Any]]:
    """Every name: the default A and AAAA (two addresses each, as bench.serving) and one A and AAAA per view."""
    result: list[dict[str, Any]] = []
    for index in range(names):
        name = f"n{index}.{ZONE}"
        for record_type, pair in zip(("A", "AAAA"), addresses(index), strict=True):
            result.append({"dnsName": name, "recordType": record_type, "targets": list(pair), "recordTTL": TTL})
            for view_index, view in enumerate(views, start=1):
                result.append({"dnsName": name, "recordType": record_type, "recordTTL": TTL,
                               "targets": [view_address(view_index, index, record_type)], "setIdentifier": view,
                               "providerSpecific": [{"name": VIEW_PROPERTY, "value": view}]})
    return result


def seed(webhook: WebhookProvider, endpoints: list[dict[str, Any]], batch: int = 4_000) -> float:
    """POST the endpoints in batches, as ExternalDNS would over a few syncs; returns the seconds it took."""
    started = time.monotonic()
    for start in range(0, len(endpoints), batch):
        response = webhook.client.apply({"create": endpoints[start:start + batch]})
        if response.status_code != 204:
            raise RuntimeError(f"seeding failed: {response.status_code} {response.text[:500]}")
    return time.monotonic() - started


def ecs_option(subnet: str) -> str:
    """dnsperf's ``-E`` value for an EDNS client subnet option (RFC 7871: code 8, family, prefix, scope, address)."""
    network = ipaddress.ip_network(subnet)
    family = 1 if network.version == 4 else 2
    significant = network.network_address.packed[:(network.prefixlen + 7) // 8]
    return f"8:{family:04x}{network.prefixlen:02x}00{significant.hex()}"


@dataclass
class Load:
    """One round of three concurrent dnsperf processes against one server."""

    variant: str
    qps: float  # answered queries of all three over the longest run time
    per_view_qps: dict[str, float]
    avg_ms: float
    lost: int
    rcodes: list[str]
    cpu_us_per_query: float
    load_before: str
    load_after: str


def dnsperf_all(variant: str, server: CoreDNS, queries: Path, seconds: int, outstanding: int,
                askers: dict[str, DNSClient]) -> Load:
    """One dnsperf per asker at once, each from its source address (and ECS option), for ``seconds``."""
    pid = server.process.proc.pid  # type: ignore[union-attr]
    before, load_before = cpu_seconds(pid), load_average()
    running = {view: Dnsperf(DnsperfLoad(server.host, server.port, queries, seconds, outstanding=outstanding,
                                         source=asker.source,
                                         extra=("-E", ecs_option(asker.subnet)) if asker.subnet else ())).start()
               for view, asker in askers.items()}
    reports = {view: run.wait() for view, run in running.items()}
    cpu = cpu_seconds(pid) - before
    completed = sum(r.completed for r in reports.values())
    longest = max(r.seconds for r in reports.values())
    return Load(variant, completed / longest, {v: r.qps for v, r in reports.items()},
                sum(r.avg_ms * r.completed for r in reports.values()) / max(1, completed),
                sum(r.lost for r in reports.values()), [r.rcodes for r in reports.values()],
                1e6 * cpu / max(1, completed), load_before, load_average())


@dataclass
class ServingResults:
    loads: list[Load] = field(default_factory=list)
    seed_seconds: float = 0.0
    alone: dict[tuple[str, str], Load] = field(default_factory=dict)  # (variant, asker) -> one asker's run


def start_serving_variant(variant: Variant, etcd: EtcdCluster, workdir: Path, names: int, geoip_db: Path) -> CoreDNS:
    if variant.views is None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "db.zone").write_text(zone_file(names))
        (workdir / "weights").write_text(render({}))
        return CoreDNS(file_corefile(workdir, bare=False), workdir, name=f"coredns-{variant.name}").start()
    views, refused = accept_views(parse_dns_view({"metadata": {"name": name}, "spec": SERVING_VIEWS[name]})
                                  for name in variant.views)
    assert not refused, refused
    return regional_coredns(ZONE, etcd.endpoints, workdir, f"coredns-{variant.name}",
                            region="bench" if views else None, views=views, geoip_db=geoip_db).start()


def check_views_answer(server: CoreDNS, variant: Variant, names: int) -> None:
    """Each asker gets its own view's addresses, 127.0.0.1 without ECS the default ones: every view is hit."""
    last = names - 1
    for view in variant.views or ():
        for index in (0, last):
            wanted = {view_address(list(SERVING_VIEWS).index(view) + 1, index, "A")}
            wait_for(partial(answers_equal, server, f"n{index}.{ZONE}", ASKERS[view], wanted), 60,
                     f"{variant.name}: view {view} answering n{index}")
    default = set(addresses(last)[0])
    wait_for(partial(answers_equal, server, f"n{last}.{ZONE}", CATCH_ALL, default), 60,
             f"{variant.name}: the catch-all answering the default records")


def answers_equal(server: CoreDNS, name: str, asker: DNSClient, wanted: set[str]) -> bool:
    return client_answers(server.host, server.port, name, "A", asker) == wanted


def run_serving(args: argparse.Namespace, workdir: Path) -> ServingResults:
    results = ServingResults()
    geoip_db = write_geoip_db(workdir / "geoip.mmdb")
    queries = workdir / "queries"
    queries.write_text("".join(f"n{i}.{ZONE} {t}\n" for i in range(args.names) for t in ("A", "AAAA")))
    with EtcdServer(workdir / "etcd") as etcd:
        webhook = WebhookProvider(etcd.endpoints, workdir, domain_filter=ZONE, prefix="/skydns/").start()
        try:
            results.seed_seconds = seed(webhook, serving_endpoints(args.names, list(SERVING_VIEWS)))
        finally:
            webhook.stop()  # not needed while serving: the cores go to CoreDNS and dnsperf
        progress(f"serving: {args.names:,} names x (default + {len(SERVING_VIEWS)} views) in etcd in "
                 f"{results.seed_seconds:.1f} s")
        servers: dict[str, CoreDNS] = {}
        try:
            for variant in VARIANTS:
                servers[variant.name] = start_serving_variant(variant, etcd, workdir / variant.name, args.names,
                                                              geoip_db)
                if variant.views:
                    check_views_answer(servers[variant.name], variant, args.names)
                if variant.static:
                    servers[variant.name].sidecar.stop()  # type: ignore[attr-defined]
            progress("serving: every view answers its own records; the catch-all the default ones")
            for round_index in range(args.rounds):
                for variant in VARIANTS:  # in turn: a burst of other load falls on every variant alike
                    load = dnsperf_all(variant.name, servers[variant.name], queries, args.duration, args.outstanding,
                                       {name: ASKERS[name] for name in variant.askers})
                    results.loads.append(load)
                    progress(f"serving round {round_index + 1} {variant.name}: {load.qps:,.0f} QPS "
                             f"({', '.join(f'{v} {q:,.0f}' for v, q in load.per_view_qps.items())}), lost "
                             f"{load.lost}, CoreDNS {load.cpu_us_per_query:.1f} µs CPU/query, load "
                             f"{load.load_before} -> {load.load_after}")
            for variant in VARIANTS:  # what a query costs by the block that answers it
                for asker_name, _ in variant.alone:
                    asker = CATCH_ALL if asker_name == "catch-all" else ASKERS[asker_name]
                    load = dnsperf_all(variant.name, servers[variant.name], queries, args.alone_duration,
                                       args.outstanding, {asker_name: asker})
                    results.alone[variant.name, asker_name] = load
                    progress(f"serving alone {asker_name} -> {variant.name}: {load.qps:,.0f} QPS, CoreDNS "
                             f"{load.cpu_us_per_query:.1f} µs CPU/query")
        finally:
            for server in servers.values():
                server.stop()
    return results


# --- 2. keys ---------------------------------------------------------------------------------------------------

KEY_VIEWS = ("paris", "boston", "germany", region_view_name("east"), region_view_name("west"))


def registry_txt(endpoint: dict[str, Any], owner: str = "fleetdns-bench") -> dict[str, Any]:
    """The ownership TXT record ExternalDNS's TXT registry writes beside ``endpoint`` (v0.22, registry/txt:
    ``<type>-<name>``, the same setIdentifier and providerSpecific)."""
    txt = {"dnsName": f"{endpoint['recordType'].lower()}-{endpoint['dnsName']}", "recordType": "TXT",
           "targets": [f"\"heritage=external-dns,external-dns/owner={owner},"
                       f"external-dns/resource=crd/bench/service-{endpoint['dnsName'].split('.')[0]}\""]}
    for key in ("setIdentifier", "providerSpecific"):
        if key in endpoint:
            txt[key] = endpoint[key]
    return txt


def key_endpoints(names: int, located: int) -> list[dict[str, Any]]:
    """``names`` names with A and AAAA (+ TXT ownership each); the first ``located`` also in every view."""
    result = []
    for index in range(names):
        name = f"n{index}.{ZONE}"
        v4, v6 = addresses(index)
        for record_type, targets in (("A", list(v4)), ("AAAA", list(v6))):
            own = [{"dnsName": name, "recordType": record_type, "targets": targets, "recordTTL": TTL}]
            if index < located:
                own += [{"dnsName": name, "recordType": record_type, "targets": targets, "recordTTL": TTL,
                         "setIdentifier": view, "providerSpecific": [{"name": VIEW_PROPERTY, "value": view}]}
                        for view in KEY_VIEWS]
            for endpoint in own:
                result += [endpoint, registry_txt(endpoint)]
    return result


@dataclass
class KeyResults:
    names: int = 0
    located: int = 0
    endpoints: int = 0
    seed_seconds: float = 0.0
    keys: dict[str, int] = field(default_factory=dict)  # prefix -> keys


def run_keys(args: argparse.Namespace, workdir: Path) -> KeyResults:
    results = KeyResults(names=args.key_names, located=args.located)
    endpoints = key_endpoints(args.key_names, args.located)
    results.endpoints = len(endpoints)
    with EtcdServer(workdir / "etcd-keys") as etcd:
        webhook = WebhookProvider(etcd.endpoints, workdir, domain_filter=ZONE, prefix="/skydns/",
                                  name="webhook-keys").start()
        try:
            results.seed_seconds = seed(webhook, endpoints)
        finally:
            webhook.stop()
        host, port = etcd.url.removeprefix("http://").split(":")
        kv = pyetcd.client(host=host, port=int(port))
        try:
            for prefix in ("/skydns/", *(f"/skydns-{view}/" for view in KEY_VIEWS)):
                results.keys[prefix] = keys_under(kv, prefix)
        finally:
            kv.close()
    progress(f"keys: {results.endpoints:,} endpoints in {results.seed_seconds:.1f} s; "
             + ", ".join(f"{p} {k:,}" for p, k in results.keys.items()))
    return results


def keys_under(kv: pyetcd.Etcd3Client, prefix: str) -> int:
    """Keys starting with ``prefix`` exactly (a count-only range read: ``/skydns/`` does not cover ``/skydns-v/``)."""
    end = bytearray(prefix.encode())
    end[-1] += 1
    return int(kv.get_range_response(prefix.encode(), bytes(end), count_only=True).count)


# --- 3. latency change -----------------------------------------------------------------------------------------

NAMESPACE, APP, DOMAIN_REF = "bench", "app", "fleet"
PROBER_REGIONS = ("east", "west", "north")
LATENCY_VIEW = "eu-office"
EU = DNSClient("127.0.1.10")
SLOW, OTHER = 0.080, 0.030  # east's path to its own cluster when slowed; to west's, always
PAUSES = random.Random(19)  # seeded: reruns pause alike


@dataclass
class Change:
    """Seconds from ``set_path_delay`` until each stage, for one latency change."""

    direction: str  # "slower" (east's own cluster -> west) or "faster" (back)
    report: float = float("nan")  # east's HealthReport carries the new RTT for east's VIP
    dns_endpoint: float = float("nan")  # the view's endpoint targets the new cluster
    answers: dict[str, float] = field(default_factory=dict)  # per region: its CoreDNS answers the view's clients


@dataclass
class LatencyStack:
    federation: Federation
    host: KubeClient
    name: str
    vips: dict[str, tuple[str, str]]  # member -> (IPv4, IPv6) VIP


def start_latency_stack(workdir: Path) -> LatencyStack:
    progress("latency: starting 3 API servers, 2 DNS regions, 3 prober regions, the aggregator")
    federation = Federation(workdir, prober_regions=PROBER_REGIONS, path_delays={("east", "west"): OTHER,
                                                                                 ("west", "east"): OTHER})
    try:
        federation.start()
        federation.use_dns_views({LATENCY_VIEW: {"clientCIDRs": ["127.0.1.0/24"], "latencyFrom": "east",
                                                 "location": {"latitude": 48.8566, "longitude": 2.3522}}})
        host = client_for(federation.fleet.host)
        for server in federation.fleet.servers:
            ensure_namespace(server.api_client(), NAMESPACE)
        name = f"{APP}.{NAMESPACE}.{DOMAIN_REF}.svc.{federation.zone}"
        vips = {m: federation.run_app(m, NAMESPACE, APP, name, ["10.1.0.1"]) for m in federation.fleet.members}
        federation.create_service_intent(NAMESPACE, APP, DOMAIN_REF, spec={
            "loadBalancing": {"policy": "LowestLatency"},
            "healthCheck": {"httpGet": {"port": 80, "path": "/healthz"}, "periodSeconds": 1, "timeoutSeconds": 1,
                            "failureThreshold": 1, "successThreshold": 1}})
        stack = LatencyStack(federation, host, name, vips)
        federation.wait_for_answers(name, {vips["east"][0]}, 120, asker=EU)
        wait_for(lambda: report_rtt(stack) is not None, 60, "east's first RTT figure for east's VIP")
        return stack
    except BaseException:
        federation.stop()
        raise


def report_rtt(stack: LatencyStack) -> float | None:
    """East's RTT to the east cluster as the aggregator counts it: the lowest figure east's prober reports for
    the cluster's VIPs (IPv4 and IPv6; its HealthReport's ``status.latency``), in seconds; None before any."""
    items = stack.host.get(HEALTH_REPORTS.path(NAMESPACE)).get("items") or []
    figures = [entry["rttMicros"] / 1e6 for report in items if report["spec"]["region"] == "east"
               for entry in (report.get("status") or {}).get("latency") or [] if entry["address"] in stack.vips["east"]]
    return min(figures) if figures else None


def view_targets(stack: LatencyStack) -> set[str]:
    obj = stack.host.get(DNS_ENDPOINTS.path(NAMESPACE, f"service-{APP}"))
    return {t for e in obj["spec"].get("endpoints") or [] if e["recordType"] == "A" and e["dnsName"] == stack.name
            and e.get("setIdentifier") == LATENCY_VIEW for t in e.get("targets") or []}


def answers(stack: LatencyStack, region: str) -> set[str]:
    try:
        return stack.federation.answers(region, stack.name, asker=EU)
    except Exception:  # noqa: BLE001 - a timeout is "no answer yet" for the poll
        return set()


def change(stack: LatencyStack, direction: str) -> Change:
    result = Change(direction)
    slower = direction == "slower"
    target = stack.vips["west" if slower else "east"][0]
    reported: Callable[[float], bool] = (lambda rtt: rtt >= SLOW * 0.8) if slower else (lambda rtt: rtt < OTHER / 2)
    dataplane = stack.federation.dataplane
    assert dataplane is not None
    dataplane.set_path_delay("east", "east", SLOW if slower else 0.0)
    started = time.monotonic()
    last_api = 0.0
    while len(result.answers) < len(stack.federation.regions) or result.report != result.report \
            or result.dns_endpoint != result.dns_endpoint:  # NaN: a stage not seen yet
        now = time.monotonic() - started
        if now > 60:
            raise TimeoutError(f"{direction}: the new answer and its stages not all seen after 60 s: {result}")
        for region in stack.federation.regions:
            if region not in result.answers and answers(stack, region) == {target}:
                result.answers[region] = time.monotonic() - started
        if now - last_api >= 0.05:  # the API stages at a coarser grain: they cost the host API server
            last_api = now
            if result.report != result.report and (rtt := report_rtt(stack)) is not None and reported(rtt):
                result.report = time.monotonic() - started
            if result.dns_endpoint != result.dns_endpoint and view_targets(stack) == {target}:
                result.dns_endpoint = time.monotonic() - started
        time.sleep(0.005)
    return result


def run_latency(args: argparse.Namespace, workdir: Path) -> list[Change]:
    stack = start_latency_stack(workdir / "federation")
    changes: list[Change] = []
    try:
        for index in range(args.trials):
            for direction in ("slower", "faster"):
                time.sleep(PAUSES.uniform(1.0, 2.0))  # the change lands at every phase of the probe period
                result = change(stack, direction)
                changes.append(result)
                progress(f"latency trial {index + 1}/{args.trials} {direction}: report {result.report:.2f} s, "
                         f"DNSEndpoint {result.dns_endpoint:.2f} s, answers "
                         + ", ".join(f"{r} {s:.2f} s" for r, s in sorted(result.answers.items())))
    finally:
        stack.federation.stop()
    return changes


# --- the report ------------------------------------------------------------------------------------------------


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def serving_section(results: ServingResults, args: argparse.Namespace) -> str:
    def median(variant: str, attribute: str) -> float:
        return statistics.median(getattr(load, attribute) for load in results.loads if load.variant == variant)

    base = median("file", "qps")
    rows = []
    for variant in VARIANTS:
        loads = [load for load in results.loads if load.variant == variant.name]
        ratio = median(variant.name, "qps") / base
        goal = ""
        if variant.same_answers:
            like = median(variant.name, "qps") / median(variant.same_answers, "qps")
            met = "met" if like >= GOAL_RATIO else "missed"
            goal = f"{like:.2f}× of `{variant.same_answers}`: ≥ {GOAL_RATIO}× {met}"
        per_asker = ", ".join(f"{name} {statistics.median(load.per_view_qps[name] for load in loads):,.0f}"
                              for name in variant.askers)
        rows.append(f"| {variant.name} | {median(variant.name, 'qps'):,.0f} "
                    f"({', '.join(f'{x.qps:,.0f}' for x in loads)}) | {ratio:.2f}× | {per_asker} | "
                    f"{median(variant.name, 'avg_ms'):.3f} | {sum(x.lost for x in loads)} | "
                    f"{median(variant.name, 'cpu_us_per_query'):.1f} | {goal} |")
    described = "\n".join(f"- `{variant.name}`: {variant.description}" for variant in VARIANTS)
    viewed = [variant for variant in VARIANTS if variant.same_answers]
    same = {v.name: median(v.name, "qps") / median(v.same_answers, "qps") for v in viewed}
    plain = {v.name: median(v.name, "qps") / base for v in viewed}
    extra = {v.name: median(v.name, "cpu_us_per_query") - median("file", "cpu_us_per_query") for v in viewed}
    verdict = "met" if all(r >= GOAL_RATIO for r in same.values()) else "missed"
    summary = (f"**Goal ≥ {GOAL_RATIO}× of the `file` plugin serving the same answers: {verdict}** ("
               + ", ".join(f"`{v.name}` {same[v.name]:.2f}× of `{v.same_answers}`" for v in viewed)
               + "). Serving the same per-view answers takes the same `view` blocks whatever feeds them, so that "
               "is the like-for-like baseline: the zone files cost nothing at query time. What views themselves "
               "cost is the comparison with one plain `file` block (`file`, which cannot answer per view): "
               + ", ".join(f"`{v.name}` {plain[v.name]:.2f}×" for v in viewed)
               + f", {' and '.join(f'{extra[v.name]:+.1f}' for v in viewed)} µs of CPU per query over `file`'s "
               f"{median('file', 'cpu_us_per_query'):.1f} µs (medians of the rounds): CoreDNS's `view` filter, below.")

    def baseline(asker: str) -> float:  # the file plugin asked the same way (with ECS or not)
        same = "germany" if ASKERS.get(asker, CATCH_ALL).subnet else ("catch-all" if asker == "catch-all" else "boston")
        return results.alone["file", same].cpu_us_per_query

    alone_rows = "\n".join(
        f"| {variant.name} | {asker} | {block} | {results.alone[variant.name, asker].qps:,.0f} | "
        f"{results.alone[variant.name, asker].cpu_us_per_query:.1f} | {baseline(asker):.1f} | "
        f"{results.alone[variant.name, asker].cpu_us_per_query - baseline(asker):+.1f} |"
        for variant in VARIANTS if variant.views for asker, block in variant.alone)
    load_averages = "; ".join(f"{x.variant} {x.load_before}→{x.load_after}" for x in results.loads)
    return f"""## 1. Serving three views from one regional CoreDNS, beside the `file` plugin

{args.names:,} names, each with its default A and AAAA and one A and AAAA per view (different addresses, so an
answer shows which view served it). Three dnsperf processes at once, one per view of the variant,
{args.duration} s per variant and round, {args.rounds} rounds, the variants in turn.

{SERVING_HEADER}
{chr(10).join(rows)}

{summary}

{described}

What a query costs by the block that answers it (each asker alone, {args.alone_duration} s); CoreDNS tries the
zone's blocks in order (views by address first, then by country, each group by name) and evaluates each one's
`view` expression until one is true. `file` is asked the same way (with the same ECS option or none):

| variant | asker | answered by | QPS | CoreDNS CPU per query, µs | `file`, µs | extra, µs |
|---|---|---|---|---|---|---|
{alone_rows}

Reading the figures: the zone lookup is the same `file` plugin in every variant (`no-views` matches `file`);
what views add is CoreDNS's view filter, paid per block a query passes. For each block, CoreDNS (v1.15,
`core/dnsserver/server.go`) first collects the block's metadata (in a GeoIP block: the MaxMind lookup of the
client subnet, and every `geoip/...` value set in the request's context), then builds the expression
environment (`plugin/pkg/expression.DefaultEnv`: a fresh map of about fifteen functions) and runs the block's
compiled expression (expr-lang). A query answered by the n-th block pays n of these; a client no view matches
pays one per view before the catch-all answers it. So the cost grows with the number of views ahead of a
client's own, not with the zone's size. Differences of a few µs between rows of the second table are within
this machine's noise (compare the `file` column, the same server asked alone at different times).

Before measuring, each asker got its own view's addresses for the first and last name from each views variant
and 127.0.0.1 without ECS the default ones, so every view is hit. Load averages before→after each run:
{load_averages}.
"""


def keys_section(results: KeyResults) -> str:
    default = results.keys["/skydns/"]
    per_view = {p: k for p, k in results.keys.items() if p != "/skydns/"}
    total = sum(results.keys.values())
    per_name = default / results.names
    copied = round(per_name * results.names * (1 + len(per_view)))
    rows = "\n".join(f"| `{prefix}` | {keys:,} | {keys / per_name:,.0f} |" for prefix, keys in results.keys.items())
    return f"""## 2. Keys in etcd per view

{results.names:,} names, {results.located:,} of them with a location policy, {len(per_view)} views
({', '.join(KEY_VIEWS)}): {results.endpoints:,} endpoints (A and AAAA, each with ExternalDNS's ownership TXT
record) posted through the real webhook in {results.seed_seconds:.1f} s.

| prefix | keys | names' worth |
|---|---|---|
{rows}
| **total** | **{total:,}** | |

Only location-policy names have keys in a view: {total:,} keys in all, {total / default:.2f}× the default
prefix. Copying every name into every view would take about {copied:,} ({1 + len(per_view)}× the default
prefix). Each view costs {results.located:,} names' worth, however many names the zone has.
"""


def latency_section(changes: list[Change], trials: int) -> str:
    def row(label: str, values: list[float]) -> str:
        values = [v for v in values if v == v]
        if not values:
            return f"| {label} | - | - | - |"
        return (f"| {label} | {statistics.median(values):.2f} s | {percentile(values, 0.99):.2f} s | "
                f"{max(values):.2f} s |")

    lines = []
    for direction, title in (("slower", "east's path to east 80 ms slower → the view moves to west"),
                             ("faster", "the path recovers → back to east")):
        picked = [c for c in changes if c.direction == direction]
        lines += [f"| **{title}** | | | |",
                  row("east's HealthReport: east's RTT (the lower of its VIPs') moved", [c.report for c in picked]),
                  row("the DNSEndpoint: the view's endpoint targets the new cluster", [c.dns_endpoint for c in picked]),
                  *(row(f"{region}'s CoreDNS answers the view's clients with it", [c.answers[region] for c in picked])
                    for region in sorted(picked[0].answers)),
                  row("every regional CoreDNS does", [max(c.answers.values()) for c in picked])]
    return f"""## 3. From a latency change to the new answer in every regional CoreDNS

{trials} trials each way. A DNSView `{LATENCY_VIEW}` (clients 127.0.1.0/24, `latencyFrom: east`) and a
LowestLatency app in east and west with `periodSeconds: 1`. East's path to west's VIP is {OTHER * 1000:.0f} ms
slower than to its own throughout; a trial makes east's path to its own VIP {SLOW * 1000:.0f} ms slower (the
view moves to west), the next one removes it (back to east: {OTHER * 1000:.0f} ms is beyond the hysteresis of
50 % + 5 ms of a sub-millisecond path).

| seconds from `set_path_delay` until | p50 | p99 | max |
|---|---|---|---|
{chr(10).join(lines)}

A slower path shows later than a faster one: the cluster's RTT is the lower of its two VIPs' figures (IPv4 and
IPv6, each the median of its own connects), so it moves up once both have moved and down as soon as one has, and
the slow path's connects themselves take {SLOW * 1000:.0f} ms longer.

Where the time goes: the prober's figure is the median of the last 5 connect times, so it moves after 3 checks
on the changed path (2-3 s at one check a second, plus the phase of the period), then a report write (coalesced
100 ms); the aggregator re-ranks the views of the intents whose addresses moved (ms) and writes the
DNSEndpoint; ExternalDNS's next sync (its 1 s ticker, `--interval=500ms`); the webhook writes the view's keys
under `/skydns-{LATENCY_VIEW}/`; fleetdns-zonefiles renders the view's zone file (100 ms poll) and CoreDNS
reloads it (100 ms tick).
"""


def write_doc(args: argparse.Namespace, serving: ServingResults | None, keys: KeyResults | None,
              changes: list[Change] | None) -> str:
    sections = [s for s in (serving_section(serving, args) if serving else "", keys_section(keys) if keys else "",
                            latency_section(changes, args.trials) if changes else "") if s]
    doc = f"""# Client-location views: serving, keys, time to follow latency

Latest run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench-views` (`python -m bench.views`), parts
{', '.join(args.parts)}.

{chr(10).join(sections)}
## Machine and load
{machine()}; CoreDNS v1.15.0, etcd 3.5.21, ExternalDNS v0.22.0, dnsperf {dnsperf_version()}. Every process
shares the machine's cores with the others (and with other work on the machine; see the load averages).

## Method
- Real processes only: etcd, the webhook provider, fleetdns-zonefiles and CoreDNS (`rig.coredns.regional_coredns`);
  for part 3 the host, east and west kube-apiservers, ExternalDNS, the aggregator and a prober in each of east,
  west and north in its own network namespace, reaching the VIPs through the rig's delaying forwarder
  (`rig/delay.py`: the path is slower, the figure is measured), as `tests/e2e/test_client_location.py` runs them.
- Part 1: the records are posted through the webhook's POST /records (as ExternalDNS does) and the webhook is
  stopped before measuring. Queries: every name's A and AAAA in order, `dnsperf -c 1 -T 1 -q {args.outstanding}
  -l {args.duration}` per asker, from `-a 127.0.1.1` (view paris), `-a 127.0.2.1` (boston), `-a 127.0.3.1`
  (tokyo), or from 127.0.0.1 with `-E {ecs_option(ASKERS['germany'].subnet or '')}` (EDNS client subnet
  192.0.2.0/24, in Germany in the test GeoIP database `rig/geoip.py` writes: view germany). "QPS of the
  three" is their answered queries over the longest run time; "CoreDNS CPU per query" its utime+stime over the
  run divided by the queries answered: what a query costs the server, whatever else shares the cores.
- Part 2: endpoints shaped as the aggregator writes them (a view's endpoint has `setIdentifier` and
  providerSpecific `{VIEW_PROPERTY}`) with the TXT record ExternalDNS v0.22's registry writes beside each (name
  `<type>-<name>`, same setIdentifier and providerSpecific), posted in batches; keys counted per prefix with a
  count-only range read.
- Part 3: the clock starts when `DataPlane.set_path_delay` returns; every CoreDNS is asked from 127.0.1.10
  every 5 ms, the HealthReport and the DNSEndpoint read every 50 ms (their columns carry up to 50 ms of polling
  grain); a random 1-2 s pause before each change lands it at another phase of the probe period.
"""
    DOC.write_text(doc)
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    parser.add_argument("--names", type=int, default=1_000, help="serving: names")
    parser.add_argument("--duration", type=int, default=15, help="serving: seconds of dnsperf per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="serving: rounds, the variants in turn")
    parser.add_argument("--outstanding", type=int, default=50, help="serving: dnsperf -q per view")
    parser.add_argument("--alone-duration", type=int, default=8,
                        help="serving: seconds of dnsperf per asker alone (cost by answering block)")
    parser.add_argument("--key-names", type=int, default=10_000, help="keys: names in the zone")
    parser.add_argument("--located", type=int, default=2_000, help="keys: names with a location policy")
    parser.add_argument("--trials", type=int, default=10, help="latency: changes each way")
    parser.add_argument("--no-doc", action="store_true", help=f"do not rewrite {DOC.name}")
    args = parser.parse_args()
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := set(args.parts) - set(PARTS):
        parser.error(f"--parts: unknown {sorted(unknown)}; choose from {', '.join(PARTS)}")
    binary("dnsperf")  # fails with `make tools` named before anything starts
    workdir = Path(tempfile.mkdtemp(prefix="fleetdns-bench-views-"))
    progress(f"work directory {workdir}; load {load_average()}")
    serving = run_serving(args, workdir) if "serving" in args.parts else None
    keys = run_keys(args, workdir) if "keys" in args.parts else None
    changes = run_latency(args, workdir) if "latency" in args.parts else None
    if args.no_doc:
        return
    print(write_doc(args, serving, keys, changes))
    progress(f"results written to {DOC.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
