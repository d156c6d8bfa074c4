"""Guard rails end to end: the aggregator as a real process against real host/east/west API servers
(docs/design/sources.md §4). One claim per name (across kinds, and across a restart), names outside the
Domain, and a Domain's namespaceSelector, as a user sees them: the DNSEndpoints, the conditions, the events."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from fleetdns.apipaths import DOMAINS, INGRESS_DNS_RECORDS, NAMESPACES
from fleetdns.kubeapi import KubeError
from rig import Fleet
from rig.workloads import set_load_balancer_status
from tests.support.aggregator import (
    VIPS,
    condition,
    create_service_intent,
    deploy_service,
    dns_endpoint,
    events_for,
    intent,
    reconciled_intents,
    records,
    samples,
    unique,
    wait_for,
    wait_past_second_of,
    wait_records,
)
from tests.support.world import FleetWorld, fleet_world

pytestmark = pytest.mark.apiserver


class World(FleetWorld):
    def ingress(self, name: str, hosts: list[str], **spec: Any) -> dict[str, Any]:
        """The Ingress in east (its address, a ready backend), then the IngressDNSRecord on the host."""
        api = self.fleet.members["east"].api_client()
        backend = f"{name}-be"
        deploy_service(self.fleet, self.ns, backend, {"east": {"ready": True}})
        client.NetworkingV1Api(api).create_namespaced_ingress(self.ns, {
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
            "spec": {"defaultBackend": {"service": {"name": backend, "port": {"number": 80}}}}})
        set_load_balancer_status(api, self.ns, name, ips=[VIPS["east"]], kind="ingress")
        return self.host.create(INGRESS_DNS_RECORDS.path(self.ns),
                                INGRESS_DNS_RECORDS.manifest(name, spec={"hosts": hosts, **spec}))

    def published(self, name: str) -> set[str]:
        return {dns_name for dns_name, _ in records(dns_endpoint(self.host, self.ns, f"ingress-{name}"))}

    def condition(self, name: str, kind: str, status: str, plural: str = "ingressdnsrecords") -> dict[str, Any]:
        return wait_for(lambda: (c := condition(intent(self.host, self.ns, plural, name), kind))
                        .get("status") == status and c, what=f"{name}: {kind}={status}")


@pytest.fixture(scope="module")
def world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One aggregator for the module; its namespace is also its domain namespace (the platform's Domains), with
    Domain "fleet": example.com, open to every namespace."""
    with fleet_world(fleet, tmp_path_factory.mktemp("aggregator"), "guard", "--domain-namespace={namespace}") as shared:
        yield World(shared.fleet, shared.host, shared.ns, shared.aggregator)


def older_and_newer(world: World, shared: str, *newer: str) -> tuple[str, list[str]]:
    """An established IngressDNSRecord publishing ``shared``, then later ones also listing it. Their names sort
    before the owner's, so neither the name order nor (after a restart) the order of reconciles favours it."""
    owner = unique("z-older")
    created = world.ingress(owner, [shared, f"{owner}.example.org"])["metadata"]["creationTimestamp"]
    wait_for(lambda: shared in world.published(owner), what="the owner publishes the shared name")
    wait_past_second_of(created)
    for name in newer:
        world.ingress(name, [shared, f"{name}.example.org"])
    return owner, list(newer)


def test_a_name_belongs_to_the_older_intent_and_passes_to_the_newer_when_it_is_deleted(world: World) -> None:
    shared = f"{unique('shop')}.example.org"
    owner, (newer,) = older_and_newer(world, shared, unique("a-newer"))

    wait_for(lambda: world.published(newer) == {f"{newer}.example.org"}, what="the newer publishes its own name")
    claimed = world.condition(newer, "HostnamesClaimed", "False")
    assert claimed["reason"] == "ClaimedByAnotherIntent"
    assert f"{shared} claimed first by IngressDNSRecord {world.ns}/{owner} (created " in claimed["message"]
    assert condition(intent(world.host, world.ns, "ingressdnsrecords", newer), "Ready")["status"] == "True"
    assert world.published(owner) == {shared, f"{owner}.example.org"}
    assert world.condition(owner, "HostnamesClaimed", "True")["reason"] == "Claimed"
    event = wait_for(lambda: [e for e in events_for(world.host, world.ns, newer)
                              if e["reason"] == "ClaimedByAnotherIntent"], what="a Warning event")[0]
    assert event["type"] == "Warning" and owner in event["message"]

    world.host.delete(INGRESS_DNS_RECORDS.path(world.ns, owner))
    wait_for(lambda: world.published(newer) == {shared, f"{newer}.example.org"}, timeout=10,
             what="the newer takes the name")
    assert world.condition(newer, "HostnamesClaimed", "True")["reason"] == "Claimed"


def test_a_services_per_cluster_name_cannot_be_taken_by_a_later_ingress_record(world: World) -> None:
    service = unique("web")
    deploy_service(world.fleet, world.ns, service, {"east": {"ip": VIPS["east"], "ready": True}})
    created = create_service_intent(world.host, world.ns, service)["metadata"]["creationTimestamp"]
    east_name = f"{service}.{world.ns}.fleet.svc.east.example.com"
    wait_records(world.host, world.ns, f"service-{service}", lambda r: (east_name, "A") in r)
    wait_past_second_of(created)
    later = unique("grab")
    world.ingress(later, [east_name, f"{later}.example.org"])

    wait_for(lambda: world.published(later) == {f"{later}.example.org"}, what="only its own name")
    claimed = world.condition(later, "HostnamesClaimed", "False")
    assert f"{east_name} claimed first by ServiceDNSRecord {world.ns}/{service}" in claimed["message"]
    assert (east_name, "A") in records(dns_endpoint(world.host, world.ns, f"service-{service}"))


def test_names_outside_the_intents_domain_are_refused(world: World) -> None:
    name = unique("scoped")
    inside, outside = f"{name}.example.com", f"{name}.example.org"
    world.ingress(name, [inside, outside], domainRef="fleet")

    wait_for(lambda: world.published(name) == {inside}, what="only the name under the Domain")
    allowed = world.condition(name, "HostnamesAllowed", "False")
    assert allowed["reason"] == "NameOutsideDomain"
    assert allowed["message"] == f"not published: {outside} is not under Domain {world.ns}/fleet (example.com)"
    assert condition(intent(world.host, world.ns, "ingressdnsrecords", name), "Ready")["status"] == "True"


def test_a_domain_admits_only_the_namespaces_its_selector_selects(world: World) -> None:
    label = unique("guard")
    zone = f"{label}.example.net"
    world.host.create(DOMAINS.path(world.ns), DOMAINS.manifest(
        "guarded-" + label.rpartition("-")[2], spec={"domain": zone, "namespaceSelector": {
            "matchLabels": {label: "allowed"}}}))
    name = unique("tenant")
    guarded, elsewhere = f"app.{zone}", f"{name}.example.org"
    world.ingress(name, [guarded, elsewhere])

    wait_for(lambda: world.published(name) == {elsewhere}, what="the name no Domain restricts")
    allowed = world.condition(name, "HostnamesAllowed", "False")
    assert allowed["reason"] == "NamespaceNotAllowed"
    assert f"{guarded}: Domain {world.ns}/guarded-" in allowed["message"]
    assert f"admits namespaces matching {label}=allowed; namespace {world.ns} does not match" in allowed["message"]

    world.host.merge_patch(NAMESPACES.path(name=world.ns), {"metadata": {"labels": {label: "allowed"}}})
    wait_for(lambda: world.published(name) == {guarded, elsewhere}, timeout=10, what="admitted once labelled")
    assert world.condition(name, "HostnamesAllowed", "True")["reason"] == "Allowed"


def test_a_restarted_aggregator_never_gives_an_owned_name_to_a_newer_intent(world: World) -> None:
    """After a restart every intent is reconciled again in the order the caches list them: here the newer ones
    first. Watched throughout: the owner's records stay, no newer intent publishes the name for a moment."""
    shared = f"{unique('pay')}.example.org"
    owner, newer = older_and_newer(world, shared, unique("a-newer"), unique("b-newer"))
    for name in newer:
        world.condition(name, "HostnamesClaimed", "False")
        wait_for(lambda n=name: world.published(n) == {f"{n}.example.org"}, what="the newer publishes its own name")

    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if shared not in world.published(owner):
                seen.append(f"{owner} lost {shared}")
            seen.extend(f"{name} published {shared}" for name in newer if shared in world.published(name))
            stop.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        world.aggregator.stop()
        world.aggregator.start()
        total = len(world.host.get(INGRESS_DNS_RECORDS.path(world.ns))["items"])
        wait_for(lambda: reconciled_intents(world.aggregator, "IngressDNSRecord") >= total, timeout=30,
                 what="every IngressDNSRecord reconciled by the new process")
    finally:
        stop.set()
        watcher.join()
    assert seen == []
    # nothing had changed, so the new process wrote no DNSEndpoint (a newer intent taking the name would have)
    assert sum(v for _, v in samples(world.aggregator, "fleetdns_aggregator_dnsendpoint_writes_total")) == 0
    for name in newer:
        assert world.published(name) == {f"{name}.example.org"}
        assert world.condition(name, "HostnamesClaimed", "False")["reason"] == "ClaimedByAnotherIntent"


def test_a_bad_namespace_selector_or_domain_ref_is_refused_at_admission(world: World) -> None:
    for expression, message in (({"key": "tier", "operator": "In"}, "operators In and NotIn need values"),
                                ({"key": "tier", "operator": "Exists", "values": ["x"]},
                                 "operators In and NotIn need values; Exists and DoesNotExist take none"),
                                ({"key": "tier", "operator": "Matches", "values": ["x"]}, "Unsupported value")):
        with pytest.raises(KubeError) as refused:
            world.host.create(DOMAINS.path(world.ns), DOMAINS.manifest(unique("bad"), spec={
                "domain": "bad.example.net", "namespaceSelector": {"matchExpressions": [expression]}}))
        assert refused.value.status == 422 and message in str(refused.value), refused.value
    with pytest.raises(KubeError) as refused:
        world.host.create(INGRESS_DNS_RECORDS.path(world.ns), INGRESS_DNS_RECORDS.manifest(
            unique("bad"), spec={"hosts": ["bad.example.com"], "domainRef": "Not_A_Label"}))
    assert refused.value.status == 422 and "spec.domainRef: Invalid value" in str(refused.value), refused.value
