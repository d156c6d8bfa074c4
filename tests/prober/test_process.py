"""``python -m prober`` as a real process against a real host kube-apiserver and stand-in ingress controllers.

Each intent gets its status written here the way the aggregator writes it (status.fqdn and one
status.dns[] entry per cluster with its load-balancer address), so the prober runs alone.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from fleetdns.apipaths import HEALTH_REPORTS, LEASES, SERVICE_DNS_RECORDS
from fleetdns.healthcheck import parse_health_check
from fleetdns.healthreport import (
    REGION_LABEL,
    REPORTS_CURRENT_ANNOTATION,
    DownEntry,
    HealthReport,
    parse_health_report,
    prober_lease_name,
)
from fleetdns.kubeapi import KubeClient, KubeError
from rig import Fleet
from rig.aggregator import client_for
from rig.ingress import StandInIngress
from rig.netns import Endpoint, Relay
from rig.ports import free_port
from rig.prober import ProberProcess
from rig.scrape import scrape
from rig.waiting import wait_for
from rig.workloads import apply_crds
from tests.support.aggregator import new_namespace, unique

pytestmark = pytest.mark.apiserver

VIPS = {"east": "127.0.0.91", "west": "127.0.0.92"}
PORT = free_port(VIPS["east"])  # the stand-ins listen on the same port of their own address


@pytest.fixture(scope="module")
def host(fleet: Fleet) -> KubeClient:
    apply_crds(fleet.host.api_client())
    return client_for(fleet.host)


@pytest.fixture(scope="module")
def ingresses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, StandInIngress]]:
    workdir = tmp_path_factory.mktemp("ingresses")
    started = {cluster: StandInIngress(cluster, workdir, [vip], http_port=PORT, https_port=free_port(vip)).start()
               for cluster, vip in VIPS.items()}
    yield started
    for ingress in started.values():
        ingress.stop()


@pytest.fixture
def probers(fleet: Fleet, tmp_path: Path) -> Iterator[list[ProberProcess]]:
    started: list[ProberProcess] = []
    yield started
    for prober in started:
        prober.stop()


def start_prober(probers: list[ProberProcess], fleet: Fleet, tmp_path: Path, region: str, namespace: str,
                 name: str | None = None, wait_ready: bool = True) -> ProberProcess:
    prober = ProberProcess(region, fleet.host.kubeconfig, tmp_path, name=name,
                           args=[f"--namespace={namespace}", f"--lease-namespace={namespace}", "--log-level=debug"])
    probers.append(prober)
    return prober.start(timeout=60, wait_ready=wait_ready)


def create_app(host: KubeClient, ingresses: dict[str, StandInIngress], namespace: str, name: str,
               health: dict[str, Any], clusters: tuple[str, ...] = ("east", "west"), fqdn: str = "") -> str:
    """A ServiceDNSRecord with a healthCheck, its status as the aggregator writes it, and its app routed by
    every cluster's stand-in; returns the Host the check sends."""
    fqdn = fqdn or f"{name}.{namespace}.example.com"
    for cluster in clusters:
        ingresses[cluster].control.register(fqdn, namespace, name)
    host.create(SERVICE_DNS_RECORDS.path(namespace),
                SERVICE_DNS_RECORDS.manifest(name, spec={"domainRef": "fleet", "healthCheck": health}))
    write_status(host, namespace, name, fqdn, {c: VIPS[c] for c in clusters})
    return fqdn


def write_status(host: KubeClient, namespace: str, name: str, fqdn: str, addresses: dict[str, str]) -> None:
    """status.fqdn and one status.dns[] entry per cluster, as the aggregator writes them."""
    host.merge_patch(SERVICE_DNS_RECORDS.path(namespace, name, "status"), {"status": {
        "fqdn": fqdn, "domain": "example.com",
        "dns": [{"cluster": c, "region": c, "zone": f"{c}-a", "healthy": True, "reason": "",
                 "loadBalancer": {"ingress": [{"ip": ip}]}} for c, ip in addresses.items()]}})


def check_id(health: dict[str, Any], fqdn: str) -> str:
    check = parse_health_check(health)
    assert check is not None
    return check.resolved(fqdn).check_id


def http_check(**timing: int) -> dict[str, Any]:
    return {"httpGet": {"port": PORT, "path": "/healthz"}, "periodSeconds": 1, "timeoutSeconds": 1,
            "failureThreshold": 2, "successThreshold": 2, **timing}


def report(host: KubeClient, namespace: str, region: str, cluster: str) -> HealthReport | None:
    try:
        return parse_health_report(host.get(HEALTH_REPORTS.path(namespace, f"{region}.{cluster}")))
    except KubeError as error:
        if error.status == 404:
            return None
        raise


def down(host: KubeClient, namespace: str, region: str, cluster: str) -> tuple[DownEntry, ...]:
    found = report(host, namespace, region, cluster)
    return found.down if found is not None else ()


def lease(host: KubeClient, namespace: str, region: str) -> dict[str, Any] | None:
    try:
        return host.get(LEASES.path(namespace, prober_lease_name(region)))
    except KubeError as error:
        if error.status == 404:
            return None
        raise


def metric(prober: ProberProcess, name: str) -> float:
    return sum(v for k, v in scrape(f"{prober.url}/metrics").items() if k.split("{")[0] == name)


def test_an_app_answering_500_is_reported_down_in_its_clusters_report_and_leaves_it_after_success_threshold(
        fleet: Fleet, host: KubeClient, ingresses: dict[str, StandInIngress], probers: list[ProberProcess],
        tmp_path: Path) -> None:
    namespace, region = new_namespace(fleet, "probe"), unique("r")
    health = http_check()
    fqdn = create_app(host, ingresses, namespace, "web", health)
    prober = start_prober(probers, fleet, tmp_path, region, namespace)
    # nothing Down: the report lists only this region's RTT to the cluster's address (prober/README.md, Latency)
    created = wait_for(lambda: report(host, namespace, region, "east"), 20, "east's report with its RTT")
    assert created.down == () and [e.address for e in created.latency] == [VIPS["east"]]

    ingresses["east"].control.set_answer(fqdn, 500)  # pods ready, app broken, on east only
    started = time.monotonic()
    [entry] = wait_for(lambda: down(host, namespace, region, "east"), 20, "east reported Down")
    assert time.monotonic() - started < 15  # 2 periods of 1 s plus the write: a sanity bound, not a goal
    assert (entry.intent, entry.address, entry.message) == ("ServiceDNSRecord/web", VIPS["east"], "HTTP 500")
    assert entry.check == check_id(health, fqdn) and entry.since.endswith("Z")
    assert down(host, namespace, region, "west") == ()

    # while it stays Down, the report is not rewritten every period (bounded observation over 3 periods; at most
    # one rewrite, for an RTT that moved past max(10 %, 1 ms) on a busy machine)
    written = report(host, namespace, region, "east")
    assert written is not None
    versions = {written.resource_version}
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        again = report(host, namespace, region, "east")
        assert again is not None and again.down == written.down
        versions.add(again.resource_version)
        time.sleep(0.2)
    assert len(versions) <= 2

    ingresses["east"].control.set_answer(fqdn, None)
    wait_for(lambda: down(host, namespace, region, "east") == (), 20, "east Up again")
    exposed = scrape(f"{prober.url}/metrics")
    writes = {k: v for k, v in exposed.items() if k.startswith("fleetdns_prober_report_writes_total")}
    rtt_rewrites = sum(v for k, v in exposed.items() if k.startswith("fleetdns_prober_rtt_changes_total")
                       and 'change="appeared"' not in k)
    # one create per report (east's first RTT; west's too), the Down flip and the Up flip, RTT moves if any
    assert writes['fleetdns_prober_report_writes_total{operation="create"}'] == 2
    assert 2 <= writes['fleetdns_prober_report_writes_total{operation="replace"}'] <= 2 + rtt_rewrites


def test_identical_checks_of_two_intents_run_once_and_count_for_both(
        fleet: Fleet, host: KubeClient, ingresses: dict[str, StandInIngress], probers: list[ProberProcess],
        tmp_path: Path) -> None:
    namespace, region = new_namespace(fleet, "probe"), unique("r")
    shared = unique("shared") + ".example.com"
    health = {**http_check(), "httpGet": {"port": PORT, "path": "/healthz", "host": shared}}
    for name in ("a", "b"):
        create_app(host, ingresses, namespace, name, health, clusters=("east",), fqdn=shared)
    prober = start_prober(probers, fleet, tmp_path, region, namespace)
    assert (metric(prober, "fleetdns_prober_probes"), metric(prober, "fleetdns_prober_subjects")) == (1, 2)
    ingresses["east"].control.reset_stats()
    before = metric(prober, "fleetdns_prober_checks_started_total")
    wait_for(lambda: metric(prober, "fleetdns_prober_checks_started_total") >= before + 3, 20, "three checks")
    ingresses["east"].control.set_answer(shared, 500)
    entries = wait_for(lambda: len(down(host, namespace, region, "east")) == 2 and
                       down(host, namespace, region, "east"), 20, "both intents Down")
    assert {e.intent for e in entries} == {"ServiceDNSRecord/a", "ServiceDNSRecord/b"}
    started = metric(prober, "fleetdns_prober_checks_started_total") - before
    connections = ingresses["east"].control.stats().host(shared).connections
    assert started - 1 <= connections <= started + 1  # one connection per check (one may be in flight)
    assert connections < 2 * started - 2  # not one per intent


def test_the_lease_is_taken_only_after_the_first_round_and_released_on_sigterm(
        fleet: Fleet, host: KubeClient, ingresses: dict[str, StandInIngress], probers: list[ProberProcess],
        tmp_path: Path) -> None:
    namespace, region = new_namespace(fleet, "probe"), unique("r")
    # a check whose first round takes its whole 3 s timeout: a listener with a full backlog never accepts
    hung = socket.create_server(("127.0.0.93", 0), backlog=0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(hung.getsockname())
        fillers.append(filler)
    health = {"tcpSocket": {"port": hung.getsockname()[1]}, "periodSeconds": 5, "timeoutSeconds": 3}
    host.create(SERVICE_DNS_RECORDS.path(namespace),
                SERVICE_DNS_RECORDS.manifest("slow", spec={"domainRef": "fleet", "healthCheck": health}))
    write_status(host, namespace, "slow", f"slow.{namespace}.example.com", {"east": "127.0.0.93"})
    prober = start_prober(probers, fleet, tmp_path, region, namespace, wait_ready=False)
    not_ready_polls = 0
    deadline = time.monotonic() + 60
    while True:  # observed throughout: no Lease until /readyz says the first round is done
        held = lease(host, namespace, region)
        try:
            status = prober.readyz()[0]
        except requests.RequestException:
            status = 0  # not listening yet
        assert held is None or status == 200, "the Lease was taken before the first round ended"
        if status == 200:
            break
        not_ready_polls += 1
        assert prober.process.running and time.monotonic() < deadline
        time.sleep(0.1)
    assert not_ready_polls > 10  # the first round (a 3 s timeout) was really watched
    taken = wait_for(lambda: (lease(host, namespace, region) or {}).get("spec", {}).get("holderIdentity"), 20,
                     "the Lease held")
    assert taken == prober.name
    held = lease(host, namespace, region)
    assert held is not None and held["metadata"]["labels"][REGION_LABEL] == region
    assert held["spec"]["leaseDurationSeconds"] == 10
    renewed = wait_for(lambda: (lease(host, namespace, region) or {})["spec"]["renewTime"] !=
                       held["spec"]["renewTime"], 10, "a renewal")
    assert renewed
    assert prober.stop() == 0
    released = lease(host, namespace, region)
    assert released is not None and released["spec"].get("holderIdentity", "") == ""
    for sock in (hung, *fillers):
        sock.close()


def test_a_restarted_prober_rewrites_nothing_that_still_holds_and_a_standby_writes_nothing(
        fleet: Fleet, host: KubeClient, ingresses: dict[str, StandInIngress], probers: list[ProberProcess],
        tmp_path: Path) -> None:
    namespace, region = new_namespace(fleet, "probe"), unique("r")
    fqdn = create_app(host, ingresses, namespace, "web", http_check(failureThreshold=1), clusters=("west",))
    ingresses["west"].control.set_answer(fqdn, 500)
    try:
        first = start_prober(probers, fleet, tmp_path, region, namespace, name=f"{region}-1")
        written = wait_for(lambda: (found := report(host, namespace, region, "west")) is not None and found.down
                           and found.latency and found, 20, "west Down, with its RTT")
        first.stop()
        second = start_prober(probers, fleet, tmp_path, region, namespace, name=f"{region}-2")
        wait_for(lambda: (lease(host, namespace, region) or {}).get("spec", {}).get("holderIdentity") ==
                 second.name, 20, "the restarted prober holds the Lease")
        standby = start_prober(probers, fleet, tmp_path, region, namespace, name=f"{region}-3")
        # a few periods after it took over: the standing report untouched, no write from either replica
        wait_for(lambda: metric(second, "fleetdns_prober_checks_started_total") >= 3, 20, "three more checks")
        assert metric(second, "fleetdns_prober_lease_held") == 1 and metric(standby, "fleetdns_prober_lease_held") == 0
        now = report(host, namespace, region, "west")
        assert now is not None and now.resource_version == written.resource_version
        assert metric(second, "fleetdns_prober_report_writes_total") == 0
        assert metric(standby, "fleetdns_prober_report_writes_total") == 0
    finally:
        ingresses["west"].control.set_answer(fqdn, None)
    wait_for(lambda: down(host, namespace, region, "west") == (), 20, "west Up again")
    assert metric(standby, "fleetdns_prober_report_writes_total") == 0


def test_entries_of_a_deleted_intent_are_removed(
        fleet: Fleet, host: KubeClient, ingresses: dict[str, StandInIngress], probers: list[ProberProcess],
        tmp_path: Path) -> None:
    namespace, region = new_namespace(fleet, "probe"), unique("r")
    fqdn = create_app(host, ingresses, namespace, "gone", http_check(failureThreshold=1), clusters=("east",))
    ingresses["east"].control.set_answer(fqdn, 500)
    try:
        start_prober(probers, fleet, tmp_path, region, namespace)
        wait_for(lambda: down(host, namespace, region, "east"), 20, "east Down")
        host.delete(SERVICE_DNS_RECORDS.path(namespace, "gone"))
        wait_for(lambda: report(host, namespace, region, "east") is None, 20, "the report removed")
    finally:
        ingresses["east"].control.set_answer(fqdn, None)


def test_a_check_another_region_newly_reports_down_is_run_at_once(
        fleet: Fleet, host: KubeClient, ingresses: dict[str, StandInIngress], probers: list[ProberProcess],
        tmp_path: Path) -> None:
    namespace, region = new_namespace(fleet, "probe"), unique("r")
    health = http_check(periodSeconds=3600, timeoutSeconds=1, failureThreshold=1)  # next run: an hour away
    fqdn = create_app(host, ingresses, namespace, "web", health, clusters=("east",))
    prober = start_prober(probers, fleet, tmp_path, region, namespace)
    ingresses["east"].control.set_answer(fqdn, 500)
    try:
        other = HealthReport(namespace, "elsewhere", "east", (DownEntry(
            "ServiceDNSRecord/web", VIPS["east"], check_id(health, fqdn), "2026-01-01T00:00:00Z", "HTTP 500"),))
        created = parse_health_report(host.create(HEALTH_REPORTS.path(namespace), other.manifest()))
        [entry] = wait_for(lambda: down(host, namespace, region, "east"), 20, "Down here too, within the hour")
        assert entry.message == "HTTP 500"
        assert metric(prober, "fleetdns_prober_corroboration_checks_total") == 1
        assert report(host, namespace, "elsewhere", "east") == created  # another region's report is never written
    finally:
        ingresses["east"].control.set_answer(fqdn, None)



def test_the_lease_is_renewed_only_while_the_reports_are_current(fleet: Fleet, host: KubeClient) -> None:
    from prober.lease import RegionLease

    namespace, region = new_namespace(fleet, "lease"), unique("r")
    current = [False, "first round not finished"]
    lease_loop = RegionLease(host, namespace, region, "replica-1", lambda: (bool(current[0]), str(current[1])),
                             lambda leading: None, retry_period=0.2).start()
    try:
        deadline = time.monotonic() + 2  # ten retry periods: not current, so never created
        while time.monotonic() < deadline:
            assert lease(host, namespace, region) is None
            time.sleep(0.1)
        current[:] = [True, "keeping up"]
        first = wait_for(lambda: lease(host, namespace, region), 10, "the Lease taken")
        renewed = wait_for(lambda: (lease(host, namespace, region) or {})["spec"]["renewTime"] !=
                           first["spec"]["renewTime"] and lease(host, namespace, region), 10, "renewed")
        current[:] = [False, "checks started more than a period late"]
        # the loop has seen it (one thread: a renewal under way before that has ended)
        wait_for(lambda: lease_loop.held_back == "checks started more than a period late", 10, "renewals held back")
        stalled = lease(host, namespace, region)
        assert stalled is not None
        deadline = time.monotonic() + 2  # ten retry periods without a renewal
        while time.monotonic() < deadline:
            now = lease(host, namespace, region)
            assert now is not None and now["spec"]["renewTime"] == stalled["spec"]["renewTime"]
            time.sleep(0.1)
        assert renewed["spec"]["holderIdentity"] == "replica-1"
    finally:
        lease_loop.stop()


def test_each_renewal_says_whether_the_reports_are_current_and_catching_up_renews_at_once(
        fleet: Fleet, host: KubeClient) -> None:
    """The aggregator counts no renewal that says the reports are behind (a region back from a cut off the host
    would vote with what it saw before the cut); the one that says they caught up comes at once, not a period
    later."""
    from prober.lease import RegionLease

    namespace, region = new_namespace(fleet, "lease"), unique("r")
    behind = ["this region's reports not listed since this replica took the Lease"]
    lease_loop = RegionLease(host, namespace, region, "replica-1", lambda: (True, "keeping up"),
                             lambda leading: None, retry_period=30, behind=lambda: behind[0]).start()
    try:
        taken = wait_for(lambda: lease(host, namespace, region), 10, "the Lease taken")
        assert taken["metadata"]["annotations"][REPORTS_CURRENT_ANNOTATION] == "false"
        behind[0] = ""
        woken = time.monotonic()
        lease_loop.wake()  # what the report writer does once every report is written
        caught_up = wait_for(lambda: (now := lease(host, namespace, region)) and now["metadata"]["annotations"][
            REPORTS_CURRENT_ANNOTATION] == "true" and now, 10, "the Lease saying the reports are current")
        assert time.monotonic() - woken < 5  # not the 30 s period
        assert caught_up["spec"]["renewTime"] != taken["spec"]["renewTime"]
    finally:
        lease_loop.stop()


def test_a_prober_back_on_the_host_says_its_reports_are_current_only_once_it_has_rewritten_them(
        fleet: Fleet, host: KubeClient, ingresses: dict[str, StandInIngress], probers: list[ProberProcess],
        tmp_path: Path) -> None:
    """Cut off the host while its app fails: back on the host, the prober's first renewal that the aggregator
    counts (one not saying "false") comes with the report listing the failure, never before (polled throughout)."""
    namespace, region = new_namespace(fleet, "cut"), unique("r")
    fqdn = create_app(host, ingresses, namespace, "web", http_check(failureThreshold=1), clusters=("east",))
    path = Relay(Endpoint(None, "127.0.0.1", free_port()), Endpoint(None, fleet.host.host, fleet.host.port),
                 "prober-host").start()
    kubeconfig = yaml.safe_load(fleet.host.kubeconfig.read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{path.listen.port}"
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    prober = ProberProcess(region, tmp_path / "kubeconfig", tmp_path,
                           args=[f"--namespace={namespace}", f"--lease-namespace={namespace}"])
    probers.append(prober)
    try:
        prober.start(timeout=60)
        wait_for(lambda: metric(prober, "fleetdns_prober_lease_held") == 1, 20, "the Lease held")
        path.pause()
        ingresses["east"].control.set_answer(fqdn, 500)
        wait_for(lambda: metric(prober, "fleetdns_prober_subjects_down") == 1, 20, "east Down, seen while cut off")
        wait_for(lambda: metric(prober, "fleetdns_prober_lease_held") == 0, 20, "the Lease lost while cut off")
        stale = lease(host, namespace, region)
        assert stale is not None and not down(host, namespace, region, "east")
        path.resume()
        seen = []  # (what each renewal said, whether the report listed east Down just after)
        deadline = time.monotonic() + 30
        while True:
            now = lease(host, namespace, region)
            assert now is not None and time.monotonic() < deadline, f"no counted renewal after 30 s: {seen}"
            if now["spec"]["renewTime"] != stale["spec"]["renewTime"]:
                said = now["metadata"].get("annotations", {}).get(REPORTS_CURRENT_ANNOTATION)
                seen.append((said, bool(down(host, namespace, region, "east"))))
                if said != "false":  # a renewal the aggregator counts
                    assert seen[-1][1], f"counted renewal before the report listed east Down: {seen}"
                    break
            time.sleep(0.02)
    finally:
        ingresses["east"].control.set_answer(fqdn, None)
        path.resume()
        prober.stop()
        path.stop()


def test_readyz_and_metrics_keep_answering_with_more_than_a_thousand_checks_open(
        fleet: Fleet, host: KubeClient, probers: list[ProberProcess], tmp_path: Path) -> None:
    namespace, region = new_namespace(fleet, "many"), unique("r")
    # a server that completes every TCP handshake (the kernel's accept queue) and never answers: each
    # check holds its socket for its whole timeout
    silent = socket.create_server(("0.0.0.0", 0), backlog=4096)
    port = silent.getsockname()[1]
    addresses = [f"127.3.{i // 250}.{i % 250 + 1}" for i in range(2000)]  # 2,000 open for 3 s: well over 1,024
    health = {"httpGet": {"port": port, "path": "/"}, "periodSeconds": 3, "timeoutSeconds": 3}
    host.create(SERVICE_DNS_RECORDS.path(namespace),
                SERVICE_DNS_RECORDS.manifest("many", spec={"domainRef": "fleet", "healthCheck": health}))
    host.merge_patch(SERVICE_DNS_RECORDS.path(namespace, "many", "status"), {"status": {
        "fqdn": "many.example.com", "dns": [{"cluster": "east", "loadBalancer": {"ingress": [{"ip": addresses[0]}]},
                                             "resolvedAddresses": addresses}]}})
    try:
        prober = start_prober(probers, fleet, tmp_path, region, namespace, wait_ready=False)
        wait_for(lambda: metric(prober, "fleetdns_prober_in_flight") > 1024, 30, "over 1,024 checks open")
        for _ in range(20):  # each a new connection to the health port while the checks hold their sockets
            assert prober.readyz()[0] in (200, 503)
        prober.wait_ready(30)
        assert prober.healthz() == 200
    finally:
        silent.close()


def test_a_report_left_by_an_earlier_prober_for_intents_that_are_gone_is_removed_when_the_lease_is_taken(
        fleet: Fleet, host: KubeClient, ingresses: dict[str, StandInIngress], probers: list[ProberProcess],
        tmp_path: Path) -> None:
    namespace, region = new_namespace(fleet, "left"), unique("r")
    fqdn = create_app(host, ingresses, namespace, "web", http_check(), clusters=("east",))
    stale = DownEntry("ServiceDNSRecord/deleted-long-ago", VIPS["east"], "0123456789ab", "2026-01-01T00:00:00Z",
                      "HTTP 500")
    standing = DownEntry("ServiceDNSRecord/web", VIPS["east"], check_id(http_check(), fqdn), "2026-01-01T00:00:00Z",
                         "HTTP 500")
    host.create(HEALTH_REPORTS.path(namespace), HealthReport(namespace, region, "east", (stale, standing)).manifest())
    host.create(HEALTH_REPORTS.path(namespace), HealthReport(namespace, region, "west", (stale,)).manifest())
    start_prober(probers, fleet, tmp_path, region, namespace)  # web answers 200 on east
    wait_for(lambda: report(host, namespace, region, "west") is None, 20, "the report of nothing checked deleted")
    wait_for(lambda: down(host, namespace, region, "east") == (), 20, "east's stale and recovered entries gone")
