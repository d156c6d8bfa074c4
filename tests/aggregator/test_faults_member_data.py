"""Member data from the wild, against real API servers and the aggregator as a process: kubeconfigs that cannot be
parsed, name no server or carry a lapsed certificate, a member answering every request with 500, and a member
Service that is huge (thousands of ports, a 200 KiB annotation, load-balancer addresses no client could use). Each
bad member gets a MemberCluster condition that says what is wrong; an app the good members serve keeps its exact
answer the whole time, and the huge Service is published with its usable addresses only. (A member that accepts
connections and never answers: tests/aggregator/test_hung_member.py.)"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from fleetdns.apipaths import MEMBER_CLUSTERS, SECRETS
from rig import Fleet
from rig.waiting import holds_for, wait_for
from rig.workloads import set_endpoints, set_load_balancer_status
from tests.support.aggregator import (
    VIPS,
    both,
    create_service_intent,
    deploy_service,
    dns_endpoint,
    records,
    unique,
    wait_records,
)
from tests.support.soak import BAD_INPUT, Tally, times
from tests.support.world import FleetWorld, fleet_world

pytestmark = [pytest.mark.apiserver, pytest.mark.fault]

UNUSABLE = ["0.0.0.0", "224.0.0.251", "255.255.255.255", "::", "ff02::fb"]


class _Answers500(BaseHTTPRequestHandler):
    def _refuse(self) -> None:
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500,
                           "reason": "InternalError", "message": "etcdserver: request timed out"}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _refuse

    def log_message(self, *args: object) -> None:  # quiet: the test counts nothing here
        pass


@pytest.fixture(scope="module")
def failing_server() -> Iterator[str]:
    """An HTTP server on loopback that answers everything with a Kubernetes 500 Status, as a sick API server does."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers500)
    thread = threading.Thread(target=server.serve_forever, name="answers-500", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetWorld]:
    with fleet_world(fleet, tmp_path_factory.mktemp("member-wild"), "agg-wild", "--member-grace-period=2s") as w:
        yield w


def wild_kubeconfigs(fleet: Fleet, workdir: Path, failing: str) -> dict[str, tuple[str, Callable[[str], bool]]]:
    """name -> (the Secret's kubeconfig, what the MemberCluster's Reachable message must say)."""
    east = fleet.members["east"]
    answering_500 = yaml.safe_load(east.embedded_kubeconfig())
    answering_500["clusters"][0]["cluster"] = {"server": failing}
    return {
        "garbage": ("{{{ not: [a kubeconfig", lambda message: "kubeconfig" in message),
        "no-server": (yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [],
                                      "contexts": []}), lambda message: "kubeconfig" in message),
        "expired": (east.client_cert_kubeconfig("fleetdns-aggregator", workdir, organization="system:masters",
                                                expired=True), lambda message: "401" in message),
        "answers-500": (yaml.safe_dump(answering_500), lambda message: "500" in message),
    }


def add_member(world: FleetWorld, name: str, kubeconfig: str) -> None:
    world.host.create(SECRETS.path("fleetdns-system"), SECRETS.manifest(name, stringData={"kubeconfig": kubeconfig}))
    world.host.create(MEMBER_CLUSTERS.path(), MEMBER_CLUSTERS.manifest(name, spec={
        "region": "wild", "zone": "wild-a",
        "kubeconfigSecretRef": {"namespace": "fleetdns-system", "name": name, "key": "kubeconfig"}}))


def remove_member(world: FleetWorld, name: str) -> None:
    world.host.delete(MEMBER_CLUSTERS.path(name=name))
    world.host.delete(SECRETS.path("fleetdns-system", name))


def reachable(world: FleetWorld, name: str) -> dict:
    status = world.host.get(MEMBER_CLUSTERS.path(name=name)).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Reachable"), {})


def huge_service(fleet: Fleet, namespace: str, name: str) -> list[str]:
    """On east: 2,000 ports, a 200 KiB annotation, 40 usable load-balancer addresses among unusable ones; returns
    the usable ones."""
    api = fleet.members["east"].api_client()
    client.CoreV1Api(api).create_namespaced_service(namespace, client.V1Service(
        metadata=client.V1ObjectMeta(name=name, annotations={"example.com/blob": "x" * 200_000}),
        spec=client.V1ServiceSpec(type="LoadBalancer", selector={"app": name}, allocate_load_balancer_node_ports=False,
                                  ports=[client.V1ServicePort(name=f"p{port}", port=port, protocol="TCP")
                                         for port in range(10_000, 12_000)])))
    usable = [f"203.0.113.{host}" for host in range(1, 41)]
    set_load_balancer_status(api, namespace, name, ips=[*UNUSABLE, *usable])
    set_endpoints(api, namespace, name, ["10.1.0.1"], ready=True)
    return usable


def test_bad_members_get_a_condition_and_the_rest_of_the_fleet_is_unaffected(world: FleetWorld, failing_server: str,
                                                                               tmp_path: Path, tally) -> None:
    count: Tally = tally("member data from the wild: bad kubeconfigs, a member answering 500, a huge Service",
                         BAD_INPUT)
    steady = unique("steady")
    deploy_service(world.fleet, world.ns, steady, both())
    create_service_intent(world.host, world.ns, steady)
    global_a, addresses = (world.global_name(steady), "A"), set(VIPS.values())
    wait_records(world.host, world.ns, f"service-{steady}", lambda r: r.get(global_a) == addresses, timeout=30)

    def steady_answer_holds() -> bool:
        now = records(dns_endpoint(world.host, world.ns, f"service-{steady}")).get(global_a)
        held = now == addresses
        if not held:
            count.lost += 1
            count.note(f"the steady app answered {sorted(now or ())}")
        return held

    for round_ in range(times(1, 20)):
        wild = {f"{kind}-{round_}-{unique('m')[-6:]}": item
                for kind, item in wild_kubeconfigs(world.fleet, tmp_path / str(round_), failing_server).items()}
        for name, (kubeconfig, _) in wild.items():
            add_member(world, name, kubeconfig)
            count.injection()
        try:
            for name, (_, says) in wild.items():
                condition = wait_for(lambda name=name: (c := reachable(world, name)) and c["status"] == "False" and c,
                                     timeout=30, what=f"{name}: Reachable=False")
                assert says(condition["message"]), f"{name}: {condition['message']}"
            holds_for(steady_answer_holds, 3, "the steady app's answer while bad members come and go", interval=0.2)
        finally:
            for name in wild:
                remove_member(world, name)
    assert world.aggregator.process is not None and world.aggregator.process.running, world.aggregator.log()[-3000:]

    huge = unique("huge")
    usable = huge_service(world.fleet, world.ns, huge)
    count.injection()
    create_service_intent(world.host, world.ns, huge)
    published = wait_records(world.host, world.ns, f"service-{huge}",
                             lambda r: r.get((world.global_name(huge), "A")), timeout=30)
    assert published[(world.global_name(huge), "A")] == set(usable), "unusable addresses are never published"
    assert steady_answer_holds()
    assert count.lost == 0, count.notes
