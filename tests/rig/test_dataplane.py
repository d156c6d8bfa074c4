"""The rig's data plane does what the policy tests rely on: stand-in ingress controllers on real VIPs in a
network namespace, prober regions that reach them through veth pairs, and cuts that really cut.

Real kube-apiservers (host, east, west), real namespaces, real processes; requests are sent from inside
the region namespaces, as a prober there sends them.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from fleetdns.apipaths import HEALTH_REPORTS, LEASES, SERVICE_DNS_RECORDS
from fleetdns.healthreport import parse_health_report, prober_lease_name, report_name
from fleetdns.kubeapi import KubeClient, KubeError
from rig import netns
from rig.aggregator import client_for
from rig.dataplane import DataPlane
from rig.federation import Federation
from rig.ingress import StandInIngress
from rig.ports import free_port
from rig.waiting import wait_for
from rig.workloads import ensure_namespace, set_endpoints

pytestmark = pytest.mark.apiserver

REGIONS = ("east", "west", "north")


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """Host + east + west API servers and the data plane (no DNS stacks, no probers: not needed here)."""
    fed = Federation(tmp_path_factory.mktemp("dataplane"), prober_regions=REGIONS)
    try:
        fed.start_clusters()
        fed.start_dataplane()
        yield fed
    finally:
        fed.stop()


@pytest.fixture
def dataplane(federation: Federation) -> DataPlane:
    assert federation.dataplane is not None
    return federation.dataplane


def http_get(namespace: str | None, address: str, port: int, host: str, *, tls_ca: Path | None = None,
             close: bool = True, timeout: float = 5,
             sni: str | None = None) -> tuple[int, bytes, x509.Certificate | None]:
    """One request on a fresh connection opened inside ``namespace``: (status, body, server certificate).
    TLS sends ``sni`` as the server name (default: ``host``)."""
    sock = netns.connect(namespace, address, port, timeout)
    cert = None
    try:
        if tls_ca is not None:
            context = ssl.create_default_context(cafile=str(tls_ca))
            if sni is not None:
                context.check_hostname = False
            sock = context.wrap_socket(sock, server_hostname=host if sni is None else sni)
            cert = x509.load_der_x509_certificate(sock.getpeercert(binary_form=True) or b"")
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n{'Connection: close' if close else ''}\r\n\r\n"
                     .encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body, cert


def status_from(dataplane: DataPlane, region: str, member: str, host: str, v6: bool = False) -> int:
    return http_get(dataplane.netns(region).name, dataplane.vips(member)[1 if v6 else 0], 80, host)[0]


def test_ingress_routes_by_host_over_both_families_and_answers_404_for_an_unknown_host(
        federation: Federation, dataplane: DataPlane) -> None:
    federation.run_app("east", "routing", "web", "web.routing.example", ["10.1.0.1"])
    federation.run_app("east", "routing", "api", "api.routing.example", ["10.1.0.2"])

    for v6 in (False, True):
        assert status_from(dataplane, "north", "east", "web.routing.example", v6) == 200
        assert status_from(dataplane, "north", "east", "nobody.routing.example", v6) == 404
    _, body, _ = http_get(dataplane.netns("west").name, dataplane.vips("east")[0], 80, "api.routing.example")
    assert body == b"200 api.routing.example via east\n"
    # west's stand-in knows nothing of east's apps: the Host routes only on the VIP it was registered on
    assert status_from(dataplane, "east", "west", "web.routing.example") == 404


def test_app_answers_503_until_its_service_has_a_ready_endpoint(federation: Federation,
                                                                 dataplane: DataPlane) -> None:
    federation.run_app("west", "ready", "web", "web.ready.example", ["10.2.0.1"], ready=False)
    assert status_from(dataplane, "east", "west", "web.ready.example") == 503

    federation.set_ready("west", "ready", "web", ["10.2.0.1"], ready=True)
    wait_for(lambda: status_from(dataplane, "east", "west", "web.ready.example") == 200, 15,
             "200 once the EndpointSlice has a ready endpoint")
    federation.set_ready("west", "ready", "web", ["10.2.0.1"], ready=False)
    wait_for(lambda: status_from(dataplane, "east", "west", "web.ready.example") == 503, 15,
             "503 once the EndpointSlice has none")


def test_app_answers_the_status_it_is_told_while_its_endpoints_stay_ready(federation: Federation,
                                                                          dataplane: DataPlane) -> None:
    federation.run_app("east", "broken", "web", "web.broken.example", ["10.3.0.1"])
    federation.run_app("east", "broken", "other", "other.broken.example", ["10.3.0.2"])

    dataplane.set_app_status("east", "web.broken.example", 500)
    for region in REGIONS:
        assert status_from(dataplane, region, "east", "web.broken.example") == 500
    assert status_from(dataplane, "east", "east", "other.broken.example") == 200  # same VIP, other app: fine
    assert endpoints_still_ready("east", federation, "broken", "web")
    dataplane.set_app_status("east", "web.broken.example", None)
    assert status_from(dataplane, "east", "east", "web.broken.example") == 200


def endpoints_still_ready(member: str, federation: Federation, namespace: str, service: str) -> bool:
    """Whether the Service's EndpointSlice on the member's API server still lists its endpoints ready."""
    from kubernetes import client

    api = client.DiscoveryV1Api(federation.fleet.members[member].api_client())
    slices = api.list_namespaced_endpoint_slice(namespace, label_selector=f"kubernetes.io/service-name={service}")
    return all(e.conditions.ready for s in slices.items for e in s.endpoints)


def test_https_presents_each_hosts_own_certificate_chosen_by_sni(federation: Federation,
                                                                 dataplane: DataPlane) -> None:
    federation.run_app("west", "tls", "web", "web.tls.example", ["10.4.0.1"])
    federation.run_app("west", "tls", "shop", "shop.tls.example", ["10.4.0.2"])
    dataplane.set_app_status("west", "shop.tls.example", 500)
    region, (v4, v6) = dataplane.netns("east").name, dataplane.vips("west")

    for host, expected in (("web.tls.example", 200), ("shop.tls.example", 500)):
        for address in (v4, v6):
            status, _, cert = http_get(region, address, 443, host, tls_ca=dataplane.ca_path)
            assert status == expected
            assert cert is not None
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert names.get_values_for_type(x509.DNSName) == [host]
    with pytest.raises(ssl.SSLCertVerificationError):  # an unknown name gets the default certificate
        http_get(region, v4, 443, "unknown.tls.example", tls_ca=dataplane.ca_path)
    # a check that sends another server name than its Host (or none) is misdirected, as Envoy-based controllers say
    assert http_get(region, v4, 443, "web.tls.example", tls_ca=dataplane.ca_path, sni="shop.tls.example")[0] == 421


def test_a_region_cut_from_one_members_vips_still_reaches_the_others(federation: Federation,
                                                                     dataplane: DataPlane) -> None:
    federation.run_app("east", "partial", "web", "web.partial.example", ["10.7.0.1"])
    federation.run_app("west", "partial", "web", "web.partial.example", ["10.7.0.2"])
    dataplane.cut_from_vips("north", member="east")
    try:
        for address in dataplane.vips("east"):
            with pytest.raises(TimeoutError):
                dataplane.netns("north").connect(address, 80, 1.0)
        for v6 in (False, True):
            assert status_from(dataplane, "north", "west", "web.partial.example", v6) == 200
            assert status_from(dataplane, "west", "east", "web.partial.example", v6) == 200
    finally:
        dataplane.heal("north")
    for v6 in (False, True):
        assert status_from(dataplane, "north", "east", "web.partial.example", v6) == 200


def test_stand_in_counts_connections_and_requests_per_host_and_client(federation: Federation,
                                                                      dataplane: DataPlane) -> None:
    federation.run_app("east", "count", "web", "web.count.example", ["10.5.0.1"])
    ingress = dataplane.ingress("east")
    before = ingress.stats().host("web.count.example")
    assert before.requests == 0
    north = dataplane.regions["north"]

    for _ in range(5):
        assert status_from(dataplane, "north", "east", "web.count.example") == 200
    sock = north.netns.connect(dataplane.vips("east")[0], 80, 5)  # three requests on one kept-alive connection
    with sock:
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: web.count.example\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: web.count.example\r\nConnection: close\r\n\r\n")
        assert b"Connection: close" in sock.recv(4096)
        assert sock.recv(4096) == b""  # the stand-in closed it, as the client asked

    after = ingress.stats().host("web.count.example")
    assert after.connections == 6
    assert after.requests == 9
    assert after.statuses == {200: 9}
    assert after.clients == {north.address: 6}  # the region's own veth address: per-region attribution


def test_extra_tcp_port_for_tcp_checks_opens_and_closes(dataplane: DataPlane) -> None:
    ingress, region, vip = dataplane.ingress("west"), dataplane.netns("north"), dataplane.vips("west")[1]
    with pytest.raises(ConnectionRefusedError):
        region.connect(vip, 5432, 5)
    ingress.open_port(5432)
    region.connect(vip, 5432, 5).close()
    # the kernel completes the handshake before the stand-in's accept loop counts it: wait for the count
    wait_for(lambda: ingress.stats().accepted.get(5432) == 1, 5, "the stand-in to count the connection on 5432")
    ingress.close_port(5432)
    with pytest.raises(ConnectionRefusedError):
        region.connect(vip, 5432, 5)


def test_cut_region_times_out_on_every_vip_while_others_still_reach_them(federation: Federation,
                                                                         dataplane: DataPlane) -> None:
    federation.run_app("west", "cut", "web", "web.cut.example", ["10.6.0.1"])
    addresses = [*dataplane.vips("east"), *dataplane.vips("west")]
    dataplane.cut_from_vips("north")
    try:
        for address in addresses:
            started = time.monotonic()
            with pytest.raises(TimeoutError):  # no refusal, no unreachable error: the answers vanish
                dataplane.netns("north").connect(address, 80, 1.0)
            assert time.monotonic() - started >= 0.9
        assert status_from(dataplane, "west", "west", "web.cut.example") == 200
        assert status_from(dataplane, "east", "west", "web.cut.example", v6=True) == 200
    finally:
        dataplane.heal("north")
    for v6 in (False, True):
        assert status_from(dataplane, "north", "west", "web.cut.example", v6) == 200


def test_api_relays_reach_the_host_api_and_a_cut_refuses_and_resets_the_prober_and_the_publisher(
        federation: Federation, dataplane: DataPlane) -> None:
    port = federation.fleet.host.port
    ca = federation.fleet.host.workdir / "ca.crt"
    region = dataplane.netns("west").name
    publisher = dataplane.publisher_kubeconfig("west", federation.fleet.host.kubeconfig)
    publisher_port = dataplane.publisher_relays["west"].listen.port  # on the root namespace's loopback

    def version(namespace: str | None = region, at: int = port) -> int:  # /version is public: anonymous is enough
        sock = netns.connect(namespace, "127.0.0.1", at, 5)
        context = ssl.create_default_context(cafile=str(ca))  # the host's certificate names 127.0.0.1
        with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return int(tls.recv(4096).split(b" ", 2)[1])

    assert version() == 200
    assert version(None, publisher_port) == 200
    assert dataplane.region_kubeconfig("west", federation.fleet.host.kubeconfig).read_text().count(
        f"https://127.0.0.1:{port}") == 1
    assert publisher.read_text().count(f"https://127.0.0.1:{publisher_port}") == 1
    held = netns.connect(region, "127.0.0.1", port, 5)  # an open connection, like a watch
    try:
        dataplane.cut_from_api("west")
        with pytest.raises(ConnectionRefusedError):
            netns.connect(region, "127.0.0.1", port, 5)
        with pytest.raises(ConnectionRefusedError):  # the region's DNS stack loses the host too
            netns.connect(None, "127.0.0.1", publisher_port, 5)
        with pytest.raises(ConnectionResetError):
            held.sendall(b"\x16\x03\x01\x00\x05hello")
            held.recv(1)
        assert netns.connect(dataplane.netns("east").name, "127.0.0.1", port, 5)  # other regions unaffected
    finally:
        held.close()
        dataplane.heal("west")
    assert version() == 200
    assert version(None, publisher_port) == 200


def test_stop_removes_the_runs_namespaces_and_processes_and_leftovers_of_dead_runs(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = f"{netns.PREFIX}{dead.pid}-crashed"
    netns.ip("netns", "add", stale)
    plane = DataPlane(tmp_path, {"solo": None}, regions=("r1",)).start()  # start removes dead runs' leftovers
    assert not (netns.NETNS_DIR / stale).exists()
    names = [plane.lb.name, plane.netns("r1").name]
    assert all(name in netns.own_namespaces() for name in names)
    ingress = plane.ingresses["solo"].process
    plane.register_app("solo", "static.example", "any", "any")  # no API server: registered apps are ready
    assert http_get(plane.netns("r1").name, plane.vips("solo")[0], 80, "static.example")[0] == 200

    plane.stop()
    assert not any(name in netns.own_namespaces() for name in names)
    assert not ingress.running


def test_stand_in_ingress_without_a_namespace_listens_on_loopback(tmp_path: Path) -> None:
    address = "127.0.0.83"
    with StandInIngress("loop", tmp_path, [address], http_port=free_port(address),
                        https_port=free_port(address)) as ingress:
        ingress.control.register("app.loop.example", "ns", "svc")
        assert http_get(None, address, ingress.http_port, "app.loop.example")[0] == 200
        status, _, cert = http_get(None, address, ingress.https_port, "app.loop.example", tls_ca=ingress.ca_path)
        assert status == 200
        assert cert is not None
        assert ingress.control.stats().host("app.loop.example").connections == 2


def test_endpointslice_readiness_is_read_per_service(federation: Federation, dataplane: DataPlane) -> None:
    """Two Services in one namespace: only the one whose slice has a ready endpoint answers 200."""
    federation.run_app("west", "pair", "a", "a.pair.example", ["10.7.0.1"])
    federation.run_app("west", "pair", "b", "b.pair.example", ["10.7.0.2"], ready=False)
    assert status_from(dataplane, "north", "west", "a.pair.example") == 200
    assert status_from(dataplane, "north", "west", "b.pair.example") == 503
    set_endpoints(federation.fleet.members["west"].api_client(), "pair", "a", ["10.7.0.1"], ready=False)
    wait_for(lambda: status_from(dataplane, "north", "west", "a.pair.example") == 503, 15, "a 503 once not ready")
    assert status_from(dataplane, "north", "west", "b.pair.example") == 503


def test_prober_runs_in_its_region_checks_through_the_vips_and_reports_through_the_relay(
        federation: Federation, dataplane: DataPlane) -> None:
    """The real prober inside ``north``: its checks arrive from north's veth addresses on both VIPs, its Lease
    and reports reach the host API through the relay, and each cut does to it what a partition would."""
    namespace, fqdn = "probed", "web.probed.example"
    host = client_for(federation.fleet.host)
    ensure_namespace(federation.host, namespace)
    v4, v6 = federation.run_app("east", namespace, "web", fqdn, ["10.8.0.1"])
    health = {"httpGet": {"port": 80, "path": "/healthz"}, "periodSeconds": 1, "timeoutSeconds": 1,
              "failureThreshold": 1, "successThreshold": 1}
    host.create(SERVICE_DNS_RECORDS.path(namespace),
                SERVICE_DNS_RECORDS.manifest("web", spec={"domainRef": "fleet", "healthCheck": health}))
    host.merge_patch(SERVICE_DNS_RECORDS.path(namespace, "web", "status"), {"status": {  # as the aggregator
        "fqdn": fqdn, "domain": "example", "dns": [{"cluster": "east", "region": "east", "healthy": True,
                                                    "loadBalancer": {"ingress": [{"ip": v4}, {"ip": v6}]}}]}})
    north = dataplane.regions["north"]
    prober = dataplane.start_prober("north", federation.fleet.host.kubeconfig,
                                    [f"--namespace={namespace}", f"--lease-namespace={namespace}"])
    assert prober.readyz()[0] == 200  # /readyz from the root namespace, through the reverse relay

    seen = wait_for(lambda: (s := dataplane.ingress("east").stats().host(fqdn)).clients.keys() >= {
        north.address, north.address6} and s, 20, "checks from north's own addresses on both VIPs")
    assert seen.connections == seen.requests  # a fresh connection for every check
    renewed = wait_for(lambda: lease_renew_time(host, namespace), 15, "north's Lease, written through the relay")
    wait_for(lambda: lease_renew_time(host, namespace) != renewed, 10, "Lease renewed through the relay")

    dataplane.cut_from_vips("north")
    try:
        entries = wait_for(lambda: {e.address for e in down(host, namespace)} == {v4, v6} and down(host, namespace),
                           20, "both addresses Down while north is cut off")
        assert all(e.intent == "ServiceDNSRecord/web" and "timeout" in e.message for e in entries)  # not refused
        assert dataplane.ingress("east").answer(fqdn) == 200  # the app itself is fine: only the path is cut
    finally:
        dataplane.heal("north")
    wait_for(lambda: down(host, namespace) == (), 20, "Up again once healed")

    dataplane.cut_from_api("north")
    try:
        frozen = lease_renew_time(host, namespace)
        deadline = time.monotonic() + 5  # bounded observation: 2 renewal periods and more, polled throughout
        while time.monotonic() < deadline:
            assert lease_renew_time(host, namespace) == frozen
            time.sleep(0.2)
    finally:
        dataplane.heal("north")
    wait_for(lambda: lease_renew_time(host, namespace) != frozen, 20, "Lease renewed again once healed")


def lease_renew_time(host: KubeClient, namespace: str) -> str:
    """north's Lease renewTime ("" while it has no Lease yet: it takes one after its first full round)."""
    try:
        return str(host.get(LEASES.path(namespace, prober_lease_name("north")))["spec"].get("renewTime") or "")
    except KubeError as error:
        if error.status == 404:
            return ""
        raise


def down(host: KubeClient, namespace: str) -> tuple:
    try:
        raw = host.get(HEALTH_REPORTS.path(namespace, report_name("north", "east")))
    except KubeError as error:
        if error.status == 404:
            return ()
        raise
    return parse_health_report(raw).down
