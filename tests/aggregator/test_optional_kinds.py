"""Optional kinds of member objects: a member whose identity may not list Ingresses (RBAC, a real
kube-apiserver) stays connected for its Services, is listed ``KindUnavailable`` on IngressDNSRecords,
and picks Ingresses up once allowed (retried every 30 s; the member's clock is stepped here)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from aggregator.controller.members import OPTIONAL_KIND_RETRY, MemberConnection
from aggregator.model import IntentKey, IntentKind, MemberCluster, SecretKeyRef
from aggregator.sources.ingress import INGRESS_KIND
from fleetdns.apipaths import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    INGRESSES,
    MEMBER_CLUSTERS,
    SECRETS,
    SERVICE_ACCOUNTS,
)
from fleetdns.kubeapi import KubeClient, KubeError, member_api_client
from rig import Fleet, KubeAPIServer
from rig.aggregator import client_for
from rig.workloads import register_member, set_load_balancer_status
from tests.support.aggregator import (
    VIPS,
    create_domain,
    create_ingress_intent,
    create_service_intent,
    deploy_service,
    intent,
    new_namespace,
    prepare_fleet,
    unique,
    wait_for,
    wait_records,
)
from tests.support.clock import SteppedClock
from tests.support.world import FleetWorld, running_aggregator

pytestmark = pytest.mark.apiserver
READ = ["get", "list", "watch"]


@dataclass
class LimitedIdentity:
    """A ServiceAccount on a member API server that may read Services and EndpointSlices, not Ingresses."""

    server: KubeAPIServer
    namespace: str
    name: str

    @property
    def admin(self) -> KubeClient:
        return client_for(self.server)

    def create(self) -> LimitedIdentity:
        admin = self.admin
        admin.create(SERVICE_ACCOUNTS.path(self.namespace), SERVICE_ACCOUNTS.manifest(self.name))
        admin.create(CLUSTER_ROLES.path(), CLUSTER_ROLES.manifest(self.name, rules=self.rules(ingresses=False)))
        admin.create(CLUSTER_ROLE_BINDINGS.path(), CLUSTER_ROLE_BINDINGS.manifest(
            self.name, roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": self.name},
            subjects=[{"kind": "ServiceAccount", "name": self.name, "namespace": self.namespace}]))
        return self

    @staticmethod
    def rules(ingresses: bool) -> list[dict[str, Any]]:
        rules = [{"apiGroups": [""], "resources": ["services"], "verbs": READ},
                 {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ}]
        if ingresses:
            rules.append({"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": READ})
        return rules

    def allow_ingresses(self) -> None:
        self.admin.merge_patch(CLUSTER_ROLES.path(name=self.name), {"rules": self.rules(ingresses=True)})

    def kubeconfig(self) -> str:
        """Self-contained, with a token the API server issues for the ServiceAccount (TokenRequest)."""
        review = self.admin.create(SERVICE_ACCOUNTS.path(self.namespace, self.name, "token"), {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
        config = yaml.safe_load(self.server.embedded_kubeconfig())
        config["users"][0]["user"] = {"token": review["status"]["token"]}
        return yaml.safe_dump(config)

    def delete(self) -> None:
        admin = self.admin
        for path in (CLUSTER_ROLE_BINDINGS.path(name=self.name), CLUSTER_ROLES.path(name=self.name)):
            try:
                admin.delete(path)
            except KubeError as error:
                if error.status != 404:
                    raise


def create_ingress(member: KubeAPIServer, namespace: str, name: str, backend: str, host: str) -> None:
    client_for(member).create(INGRESSES.path(namespace), INGRESSES.manifest(name, spec={"rules": [{
        "host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                                          "backend": {"service": {"name": backend, "port": {"number": 80}}}}]}}]}))
    set_load_balancer_status(member.api_client(), namespace, name, ips=[VIPS["east"]], kind="ingress")


@dataclass
class World(FleetWorld):
    limited: str  # the member seen through an identity that may not list Ingresses


@pytest.fixture(scope="module")
def world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A third member, ``limited-*``: east's API server seen through an identity that may not list Ingresses."""
    host = prepare_fleet(fleet)
    namespace = new_namespace(fleet, "agg-optional")
    create_domain(host, namespace)
    member = unique("limited")
    identity = LimitedIdentity(fleet.members["east"], namespace, member).create()
    register_member(fleet.host.api_client(), member, "limited", "limited-a", identity.kubeconfig())
    try:
        with running_aggregator(fleet.host.kubeconfig, namespace, tmp_path_factory.mktemp("aggregator"),
                                "--member-grace-period=3s", leader_election=False) as aggregator:
            yield World(fleet, host, namespace, aggregator, member)
    finally:
        host.delete(MEMBER_CLUSTERS.path(name=member))
        host.delete(SECRETS.path("fleetdns-system", f"member-{member}"))
        identity.delete()


def test_a_member_that_may_not_list_ingresses_stays_connected_and_publishes_its_services(world: World) -> None:
    name = unique("web")
    deploy_service(world.fleet, world.ns, name, {"east": {"ip": VIPS["east"], "ready": True}})
    create_service_intent(world.host, world.ns, name)
    limited = f"{name}.{world.ns}.fleet.svc.limited.example.com"
    found = wait_records(world.host, world.ns, f"service-{name}", lambda r: r.get((limited, "A")) == {VIPS["east"]},
                         timeout=20)
    assert found[(f"{name}.{world.ns}.fleet.svc.example.com", "A")] == {VIPS["east"]}
    status = wait_for(lambda: (s := intent(world.host, world.ns, "servicednsrecords", name).get("status") or {})
                      .get("healthyClusters") == 2 and s, what="east and the limited member healthy")
    assert {d["cluster"] for d in status["dns"] if d["healthy"]} == {"east", world.limited}

    assert world.metric("fleetdns_aggregator_member_connected", cluster=world.limited) == 1.0
    assert world.metric("fleetdns_aggregator_member_kind_available", cluster=world.limited, kind="ingresses") == 0.0
    assert world.metric("fleetdns_aggregator_member_kind_available", cluster=world.limited, kind="services") == 1.0
    assert world.metric("fleetdns_aggregator_member_kind_available", cluster="east", kind="ingresses") == 1.0


def test_an_ingress_record_lists_the_member_that_may_not_list_ingresses_as_kind_unavailable(world: World) -> None:
    name, backend = unique("ing"), unique("backend")
    deploy_service(world.fleet, world.ns, backend, {"east": {"ready": True}})
    create_ingress(world.fleet.members["east"], world.ns, name, backend, f"{name}.example.org")
    create_ingress_intent(world.host, world.ns, name, [f"{name}.example.org"])

    found = wait_records(world.host, world.ns, f"ingress-{name}",
                         lambda r: r.get((f"{name}.example.org", "A")) == {VIPS["east"]})
    assert len(found) == 1
    # The status is written after the DNSEndpoint: wait for the one that goes with these records.
    status = wait_for(lambda: (s := intent(world.host, world.ns, "ingressdnsrecords", name).get("status") or {})
                      and len(s.get("dns", [])) == 2
                      and any(d["cluster"] == "east" and d["healthy"] for d in s["dns"]) and s,
                      what="east healthy and the limited member listed")
    limited = next(d for d in status["dns"] if d["cluster"] == world.limited)
    assert not limited["healthy"]
    assert limited["reason"].startswith("KindUnavailable") and "ingresses" in limited["reason"]
    assert "403" in limited["reason"]
    assert next(d for d in status["dns"] if d["cluster"] == "east")["healthy"]


def test_ingresses_allowed_later_are_listed_at_the_next_retry(fleet: Fleet, tmp_path: Path) -> None:
    """The member connection on its own, against east through the limited identity; its clock is stepped."""
    prepare_fleet(fleet)
    namespace = new_namespace(fleet, "agg-retry")
    east = fleet.members["east"]
    identity = LimitedIdentity(east, namespace, unique("retry")).create()
    notified: list[IntentKey] = []
    lock = threading.Lock()

    def notify(keys: Any) -> None:
        with lock:
            notified.extend(keys)

    clock = SteppedClock()
    cluster = MemberCluster("retry", "retry", "retry-a", SecretKeyRef("fleetdns-system", "unused"))
    client = KubeClient(member_api_client(yaml.safe_load(identity.kubeconfig())))
    member = MemberConnection(cluster, client, "", namespace, 2.0, notify, lambda _: None, clock=clock).start()
    try:
        problem = wait_for(lambda: member.connected and member.kind_problem(INGRESS_KIND), what="ingresses refused")
        assert problem.status == 403

        backend, name = unique("backend"), unique("ing")
        deploy_service(fleet, namespace, backend, {"east": {"ready": True}})
        create_ingress(east, namespace, name, backend, f"{name}.example.org")
        identity.allow_ingresses()
        clock.now += OPTIONAL_KIND_RETRY
        wait_for(lambda: member.kind_problem(INGRESS_KIND) is None, what="ingresses listed after the retry")
        assert member.connected
        ingress = wait_for(lambda: member.get(INGRESS_KIND, namespace, name), what="the Ingress in the cache")
        assert ingress.backend_services == (backend,)
        key = IntentKey(IntentKind.INGRESS, namespace, name)
        wait_for(lambda: key in notified, what="the IngressDNSRecord notified")
    finally:
        member.stop()
        identity.delete()
