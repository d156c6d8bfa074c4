"""Nothing the aggregator does not own is touched, and no cold or unreadable cache removes a record.

A host API server of this module's own (it is stopped and restarted, and its ServiceDNSRecord CRD is
relaxed as an older CRD may have been, so that an intent the aggregator cannot read can exist), the
session's east and west as members, and the aggregator as a real process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aggregator.controller.reconciler import Reconciler
from aggregator.metrics import AggregatorMetrics
from aggregator.model import (
    Domain,
    IntentKind,
    parse_dns_endpoint,
)
from aggregator.sources.service import parse_service_intent
from fleetdns.apipaths import (
    CUSTOM_RESOURCE_DEFINITIONS,
    DNS_ENDPOINTS,
    SERVICE_DNS_RECORDS,
)
from fleetdns.kubeapi import KubeClient, KubeError
from fleetdns.labels import LABEL_INTENT_KIND, LABEL_INTENT_NAME
from rig import Fleet, KubeAPIServer, ManagedProcess
from rig.aggregator import AggregatorProcess, client_for
from rig.workloads import apply_crds, ensure_namespace, register_member
from tests.support.aggregator import (
    DOMAIN_REF,
    REGIONS,
    VIPS,
    both,
    condition,
    create_domain,
    create_service_intent,
    deploy_service,
    dns_endpoint,
    events_for,
    global_name,
    intent,
    new_namespace,
    reconciled_intents,
    records,
    samples,
    unique,
    wait_for,
    wait_records,
)
from tests.support.fakes import Caches
from tests.support.world import FleetWorld

pytestmark = pytest.mark.apiserver
SERVICE_CRD = "servicednsrecords.fleetdns.io"
TEAM_OWNER = {"apiVersion": "v1", "kind": "ConfigMap", "name": "team-dns",
              "uid": "0c0ffee0-0000-4000-8000-000000000001", "controller": True}


@dataclass
class Host:
    server: KubeAPIServer
    client: KubeClient


def relax_service_intent_crd(client: KubeClient, namespace: str) -> None:
    """Drop ``required: [domainRef]``, as a CRD from before that rule; wait until the server applies it."""
    path = CUSTOM_RESOURCE_DEFINITIONS.path(name=SERVICE_CRD)
    crd = client.get(path)
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].pop("required", None)
    client.replace(path, crd)

    def accepted() -> bool:
        try:
            client.request("POST", SERVICE_DNS_RECORDS.path(namespace), {"dryRun": "All"},
                           SERVICE_DNS_RECORDS.manifest(unique("probe"), spec={}))
            return True
        except KubeError as error:
            if error.status != 422:
                raise
            return False

    wait_for(accepted, timeout=30, what="the relaxed CRD in force")


@pytest.fixture(scope="module")
def host(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    server = KubeAPIServer("ownership-host", tmp_path_factory.mktemp("ownership-host")).start()
    try:
        api = server.api_client()
        apply_crds(api)
        for name, member in fleet.members.items():
            region, zone = REGIONS[name]
            register_member(api, name, region, zone, member.embedded_kubeconfig())
        client = client_for(server)
        ensure_namespace(api, "crd-probe")
        relax_service_intent_crd(client, "crd-probe")
        yield Host(server, client)
    finally:
        server.stop()


def aggregator_for(host: Host, namespace: str, workdir: Path, name: str = "aggregator") -> AggregatorProcess:
    return AggregatorProcess(host.server.kubeconfig, [
        f"--namespace={namespace}", f"--lease-name={namespace}", "--member-grace-period=5s", "--log-format=text"],
        workdir, name=name)


@dataclass
class World(FleetWorld):
    server: KubeAPIServer  # the module's own host API server (tests stop and restart it)


@pytest.fixture(scope="module")
def shared_world(fleet: Fleet, host: Host, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    namespace = new_namespace(fleet, "own", host.server)
    create_domain(host.client, namespace)
    with aggregator_for(host, namespace, tmp_path_factory.mktemp("aggregator")) as aggregator:
        yield World(fleet, host.client, namespace, aggregator, host.server)


@pytest.fixture
def world(shared_world: World) -> World:
    """The module's aggregator, ready (a test here stops and restarts the host API server)."""
    wait_for(lambda: _ready(shared_world.aggregator), timeout=60, what="the aggregator ready")
    return shared_world


def _ready(aggregator: AggregatorProcess) -> bool:
    try:
        return aggregator.readyz()[0] == 200
    except OSError:
        return False


def publish(fleet: Fleet, host: KubeClient, namespace: str, name: str) -> None:
    deploy_service(fleet, namespace, name, both())
    create_service_intent(host, namespace, name)


def wait_published(host: KubeClient, namespace: str, name: str) -> dict[tuple[str, str], set[str]]:
    return wait_records(host, namespace, f"service-{name}",
                        lambda r: r.get((global_name(namespace, name), "A")) == set(VIPS.values()), timeout=30)


def create_foreign(host: KubeClient, namespace: str, name: str, labels: dict[str, str] | None = None,
                   owners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A DNSEndpoint somebody else wrote (a team's own, or a copy of one of ours)."""
    metadata: dict[str, Any] = {"name": name, "labels": labels or {}}
    if owners:
        metadata["ownerReferences"] = owners
    body = DNS_ENDPOINTS.manifest(name, namespace, spec={"endpoints": [
        {"dnsName": "legacy.example.org", "recordType": "A", "targets": ["203.0.113.7"], "recordTTL": 300}]})
    body["metadata"] = {**body["metadata"], **metadata}
    return host.create(DNS_ENDPOINTS.path(namespace), body)


def ready_reason(host: KubeClient, namespace: str, name: str, reason: str) -> dict[str, Any]:
    return wait_for(lambda: condition(s := intent(host, namespace, "servicednsrecords", name), "Ready")
                    .get("reason") == reason and s, timeout=30, what=f"Ready reason {reason} on {name}")


def warning(host: KubeClient, namespace: str, name: str, reason: str) -> dict[str, Any]:
    return wait_for(lambda: next((e for e in events_for(host, namespace, name) if e["reason"] == reason), None),
                    timeout=30, what=f"a {reason} event on {name}")


def deletes(process: AggregatorProcess) -> float:
    return sum(value for labels, value in samples(process, "fleetdns_aggregator_dnsendpoint_writes_total")
               if labels.get("operation") == "delete")


# --- name conflicts -------------------------------------------------------------------------------

def test_a_foreign_dns_endpoint_at_the_intent_s_name_is_never_overwritten_and_publishing_waits_for_it_to_go(
        world: World) -> None:
    name = unique("taken")
    theirs = create_foreign(world.host, world.ns, f"service-{name}", owners=[TEAM_OWNER])
    publish(world.fleet, world.host, world.ns, name)

    obj = ready_reason(world.host, world.ns, name, "NameConflict")
    message = condition(obj, "Ready")["message"]
    assert f"{world.ns}/service-{name}" in message and "ConfigMap" in message and "team-dns" in message
    event = warning(world.host, world.ns, name, "NameConflict")
    assert event["type"] == "Warning" and f"{world.ns}/service-{name}" in event["message"]
    now = dns_endpoint(world.host, world.ns, f"service-{name}")
    assert now is not None and now["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]

    world.host.delete(DNS_ENDPOINTS.path(world.ns, f"service-{name}"))  # the owner cleans up: publish at once
    wait_published(world.host, world.ns, name)
    ready_reason(world.host, world.ns, name, "Published")


def test_deleting_an_intent_leaves_a_dns_endpoint_that_only_copies_our_labels(world: World) -> None:
    name = unique("copied")
    labels = {LABEL_INTENT_KIND: str(IntentKind.SERVICE), LABEL_INTENT_NAME: name}
    theirs = create_foreign(world.host, world.ns, f"service-{name}", labels=labels)  # no ownerReference
    before = reconciled_intents(world.aggregator)
    publish(world.fleet, world.host, world.ns, name)
    ready_reason(world.host, world.ns, name, "NameConflict")
    # the status is visible a moment before the aggregator counts the reconcile as finished
    wait_for(lambda: reconciled_intents(world.aggregator) == before + 1, what="the intent's reconcile counted")

    world.host.delete(SERVICE_DNS_RECORDS.path(world.ns, name))
    wait_for(lambda: reconciled_intents(world.aggregator) == before, what="the intent's deletion reconciled")
    now = dns_endpoint(world.host, world.ns, f"service-{name}")
    assert now is not None and now["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]


# --- an intent the aggregator cannot read ---------------------------------------------------------

def test_an_intent_that_cannot_be_read_keeps_its_records_and_reports_invalid_spec(world: World) -> None:
    name = unique("unread")
    publish(world.fleet, world.host, world.ns, name)
    published = wait_published(world.host, world.ns, name)
    before = dns_endpoint(world.host, world.ns, f"service-{name}")
    assert before is not None

    world.host.merge_patch(SERVICE_DNS_RECORDS.path(world.ns, name), {"spec": {"domainRef": None}})
    obj = ready_reason(world.host, world.ns, name, "InvalidSpec")
    ready = condition(obj, "Ready")
    assert "spec.domainRef" in ready["message"] and ready["observedGeneration"] == 2
    assert obj["status"]["healthyClusters"] == 2  # the clusters as last published
    assert warning(world.host, world.ns, name, "InvalidSpec")["type"] == "Warning"
    after = dns_endpoint(world.host, world.ns, f"service-{name}")
    assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]
    assert records(after) == published

    world.host.merge_patch(SERVICE_DNS_RECORDS.path(world.ns, name), {"spec": {"domainRef": DOMAIN_REF}})
    fixed = ready_reason(world.host, world.ns, name, "Published")
    assert condition(fixed, "Ready")["observedGeneration"] == 3


# --- restarts, new leaders, a host API server that is not there -------------------------------------

def start_without_waiting(aggregator: AggregatorProcess) -> None:
    aggregator.process = ManagedProcess(aggregator.name, aggregator.argv, aggregator.log_path,
                                        env=aggregator.env, inherit_env=False).start()


def test_a_restart_while_the_host_api_server_is_down_removes_no_published_record(
        fleet: Fleet, host: Host, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Restarted while the host API server is stopped, the aggregator starts with nothing listed; when
    the server is back, no DNSEndpoint is deleted: not for the intents it cannot read, not for an
    intent deleted and created again meanwhile (adopted: its DNSEndpoint is the same object)."""
    ns = new_namespace(fleet, "restart", host.server)
    create_domain(host.client, ns)
    names = [unique("keep"), unique("keep"), unique("reborn"), unique("unread")]
    keep_a, keep_b, reborn, unread = names
    for name in names:
        publish(fleet, host.client, ns, name)
    workdir = tmp_path_factory.mktemp("restart")
    with aggregator_for(host, ns, workdir, "first"):
        for name in names:
            wait_published(host.client, ns, name)
    published = {name: dns_endpoint(host.client, ns, f"service-{name}") for name in names}

    # While no aggregator runs: one intent is deleted and created again, one gets a spec it cannot read.
    host.client.delete(SERVICE_DNS_RECORDS.path(ns, reborn))
    wait_for(lambda: _gone(host.client, ns, reborn), what="the old intent gone")
    new_uid = create_service_intent(host.client, ns, reborn)["metadata"]["uid"]
    host.client.merge_patch(SERVICE_DNS_RECORDS.path(ns, unread), {"spec": {"domainRef": None}})

    host.server.stop_apiserver()
    second = aggregator_for(host, ns, workdir, "second")
    try:
        start_without_waiting(second)
        wait_for(lambda: _readyz(second) == (503, "not ready: host caches syncing\n"), timeout=60,
                 what="the new aggregator running without its host API server")
        host.server.restart()
        second.process.wait_until(lambda: second.readyz()[0] == 200, 60, "ready (/readyz)")
        wait_for(lambda: reconciled_intents(second) == len(names), timeout=30, what="every intent reconciled")

        ready_reason(host.client, ns, unread, "InvalidSpec")
        wait_for(lambda: [o["uid"] for o in dns_endpoint(host.client, ns, f"service-{reborn}")["metadata"]
                          ["ownerReferences"]] == [new_uid], what="the re-created intent's DNSEndpoint adopted")
        for name in names:
            now = dns_endpoint(host.client, ns, f"service-{name}")
            assert now is not None, f"the DNSEndpoint of {name} was deleted"
            assert now["metadata"]["uid"] == published[name]["metadata"]["uid"], f"{name}'s was re-created"
            assert records(now) == records(published[name])
        assert deletes(second) == 0
    finally:
        second.stop()
        if not host.server.process or not host.server.process.running:
            host.server.restart()


def test_a_new_leader_sweeps_only_its_own_orphans(fleet: Fleet, host: Host,
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    ns = new_namespace(fleet, "sweep", host.server)
    create_domain(host.client, ns)
    gone, copied = unique("gone"), unique("copied")
    publish(fleet, host.client, ns, gone)
    workdir = tmp_path_factory.mktemp("sweep")
    with aggregator_for(host, ns, workdir, "first"):
        wait_published(host.client, ns, gone)

    # While no aggregator runs: an intent is deleted (its DNSEndpoint is our orphan), and somebody copies
    # one of our DNSEndpoints, labels included, for a name no intent has yet.
    host.client.delete(SERVICE_DNS_RECORDS.path(ns, gone))
    labels = {LABEL_INTENT_KIND: str(IntentKind.SERVICE), LABEL_INTENT_NAME: copied}
    theirs = create_foreign(host.client, ns, f"service-{copied}", labels=labels, owners=[TEAM_OWNER])

    with aggregator_for(host, ns, workdir, "second") as second:
        wait_for(lambda: dns_endpoint(host.client, ns, f"service-{gone}") is None, what="our orphan swept")
        # An intent of the copy's name now: it must find the copy as it was, and say whose it is.
        publish(fleet, host.client, ns, copied)
        ready_reason(host.client, ns, copied, "NameConflict")
        now = dns_endpoint(host.client, ns, f"service-{copied}")
        assert now is not None and now["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]
        assert deletes(second) == 1


def _gone(host: KubeClient, namespace: str, name: str) -> bool:
    try:
        intent(host, namespace, "servicednsrecords", name)
    except KubeError as error:
        return error.status == 404
    return False


def _readyz(aggregator: AggregatorProcess) -> tuple[int, str]:
    try:
        return aggregator.readyz()
    except OSError:
        return 0, ""


# --- the reconciler on its own: deletes only from a cache that has listed --------------------------

def test_a_missing_intent_deletes_its_dns_endpoint_only_once_the_intents_have_listed(host: Host) -> None:
    ns = unique("cold")
    ensure_namespace(host.server.api_client(), ns)
    name = unique("web")
    parsed = parse_service_intent(create_service_intent(host.client, ns, name))
    warm = Caches(listed=True, intents={parsed.key: parsed}, domains={(ns, DOMAIN_REF): Domain(ns, DOMAIN_REF,
                                                                                                "example.com")})
    Reconciler(warm, host.client, AggregatorMetrics(), "warm", "fleetdns-system").reconcile(parsed.key)
    written = dns_endpoint(host.client, ns, f"service-{name}")
    assert written is not None
    endpoints = {(ns, f"service-{name}"): parse_dns_endpoint(written)}

    cold = Caches(listed=False, endpoints=endpoints)  # the intent is there, just not listed yet
    done = Reconciler(cold, host.client, AggregatorMetrics(), "cold", "fleetdns-system").reconcile(parsed.key)
    kept = dns_endpoint(host.client, ns, f"service-{name}")
    assert kept is not None and kept["metadata"]["uid"] == written["metadata"]["uid"]
    assert done is False  # deferred: the engine queues it again once the intents have listed

    host.client.delete(SERVICE_DNS_RECORDS.path(ns, name))
    listed = Caches(listed=True, endpoints=endpoints)  # listed, and the intent is not there: it was deleted
    Reconciler(listed, host.client, AggregatorMetrics(), "listed", "fleetdns-system").reconcile(parsed.key)
    assert dns_endpoint(host.client, ns, f"service-{name}") is None
