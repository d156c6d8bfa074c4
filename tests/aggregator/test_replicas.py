"""Restarts and replicas: the aggregator process stopped, restarted and run twice at once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from fleetdns.apipaths import MEMBER_CLUSTERS
from rig import Fleet
from rig.aggregator import AggregatorProcess
from rig.workloads import set_endpoints
from tests.support.aggregator import (
    VIPS,
    both,
    create_domain,
    create_service_intent,
    deploy_service,
    dns_endpoint,
    intent,
    new_namespace,
    prepare_fleet,
    reconciled_intents,
    records,
    samples,
    unique,
    wait_for,
    wait_records,
    writes,
)

pytestmark = pytest.mark.apiserver
LEASE_FLAGS = ["--lease-duration=3s", "--renew-deadline=2s", "--retry-period=0.5s", "--log-format=text"]


def test_restarted_aggregator_rewrites_no_dns_endpoint_and_no_status(fleet: Fleet, tmp_path: Path) -> None:
    host = prepare_fleet(fleet)
    ns = new_namespace(fleet, "agg-restart")
    create_domain(host, ns)
    names = [unique("svc") for _ in range(5)]
    for name in names:
        deploy_service(fleet, ns, name, both())
        create_service_intent(host, ns, name, dnsPrefix=name)
    args = [f"--namespace={ns}", f"--lease-name={ns}", *LEASE_FLAGS]
    first = AggregatorProcess(fleet.host.kubeconfig, args, tmp_path, name="first").start()
    try:
        for name in names:
            wait_for(lambda n=name: intent(host, ns, "servicednsrecords", n).get("status", {}).get("healthyClusters")
                     == 2, what=f"{name} status")
        # the members' status too: the first replica writes Connected once every watch is up, and a replica
        # stopped before that write would leave it to the second (a write this test would count against it)
        for member in fleet.members:
            wait_for(lambda m=member: (host.get(MEMBER_CLUSTERS.path(name=m)).get("status") or {}).get("state")
                     == "Connected", what=f"MemberCluster {member} Connected")
    finally:
        assert first.stop() == 0, "SIGTERM must end the aggregator with exit code 0"
    before = {n: (dns_endpoint(host, ns, f"service-{n}")["metadata"]["resourceVersion"],
                  intent(host, ns, "servicednsrecords", n)["metadata"]["resourceVersion"]) for n in names}

    with AggregatorProcess(fleet.host.kubeconfig, args, tmp_path, name="second") as second:
        wait_for(lambda: "leader" in second.readyz()[1], what="leadership")
        # A new leader reconciles every intent; its intents gauge covers one only once that reconcile is done.
        wait_for(lambda: reconciled_intents(second) == len(names), what="every intent reconciled by the new leader")
        assert writes(second) == 0, second.log()[-3000:]
        after = {n: (dns_endpoint(host, ns, f"service-{n}")["metadata"]["resourceVersion"],
                     intent(host, ns, "servicednsrecords", n)["metadata"]["resourceVersion"]) for n in names}
        assert after == before


def test_orphaned_dns_endpoint_is_swept_at_start(fleet: Fleet, tmp_path: Path) -> None:
    host = prepare_fleet(fleet)
    ns = new_namespace(fleet, "agg-orphan")
    host.create(f"/apis/externaldns.k8s.io/v1alpha1/namespaces/{ns}/dnsendpoints", {
        "apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint",
        "metadata": {"name": "service-left-behind", "labels": {"fleetdns.io/intent-kind": "ServiceDNSRecord",
                                                               "fleetdns.io/intent-name": "left-behind"},
                     # ours: written for an intent (deleted since), as its owner reference says
                     "ownerReferences": [{"apiVersion": "fleetdns.io/v1alpha1", "kind": "ServiceDNSRecord",
                                          "name": "left-behind", "uid": "5e1f0000-0000-4000-8000-00000000000a",
                                          "controller": True}]},
        "spec": {"endpoints": [{"dnsName": "old.example.com", "recordType": "A", "targets": ["192.0.2.99"]}]}})
    host.create(f"/apis/externaldns.k8s.io/v1alpha1/namespaces/{ns}/dnsendpoints", {
        "apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint", "metadata": {"name": "not-ours"},
        "spec": {"endpoints": []}})
    with AggregatorProcess(fleet.host.kubeconfig, [f"--namespace={ns}", "--leader-election=false"], tmp_path):
        wait_for(lambda: dns_endpoint(host, ns, "service-left-behind") is None, timeout=10)
        assert dns_endpoint(host, ns, "not-ours") is not None


def test_two_replicas_elect_one_writer_and_the_standby_takes_over(fleet: Fleet, tmp_path: Path) -> None:
    host = prepare_fleet(fleet)
    ns = new_namespace(fleet, "agg-ha")
    create_domain(host, ns)
    args = [f"--namespace={ns}", f"--lease-name={ns}", *LEASE_FLAGS]
    a = AggregatorProcess(fleet.host.kubeconfig, args, tmp_path, name="replica-a").start()
    b = AggregatorProcess(fleet.host.kubeconfig, args, tmp_path, name="replica-b").start()
    try:
        roles = wait_for(lambda: sorted(r.readyz()[1].split(": ")[1].strip() for r in (a, b)) == ["leader", "standby"]
                         and {r.name: r.readyz()[1] for r in (a, b)}, timeout=10, what="one leader")
        leader, standby = (a, b) if "leader" in roles["replica-a"] else (b, a)
        assert standby.readyz()[0] == 200  # ready but standing by

        name = unique("ha")
        deploy_service(fleet, ns, name, both())
        create_service_intent(host, ns, name)
        wait_records(host, ns, f"service-{name}", lambda r: set().union(*r.values()) >= set(VIPS.values()))
        # The counter moves just after the write returns: wait for it rather than read it once.
        wait_for(lambda: samples(leader, "fleetdns_aggregator_dnsendpoint_writes_total") == [({"operation": "create"},
                                                                                            1.0)],
                 what="the leader's create counted")
        wait_for(lambda: reconciled_intents(leader) == 1, what="the leader's reconcile done")
        assert writes(standby) == 0
        assert samples(standby, "fleetdns_aggregator_leader") == [({}, 0.0)]
        lease = host.get(f"/apis/coordination.k8s.io/v1/namespaces/fleetdns-system/leases/{ns}")
        assert lease["spec"]["holderIdentity"] == leader.name

        assert leader.stop() == 0
        lease = host.get(f"/apis/coordination.k8s.io/v1/namespaces/fleetdns-system/leases/{ns}")
        # Released on the way out (or already taken): the standby need not wait out the lease duration.
        assert lease["spec"]["holderIdentity"] in ("", standby.name)
        wait_for(lambda: "leader" in standby.readyz()[1], timeout=15, what="standby takes over")
        second = unique("ha")
        deploy_service(fleet, ns, second, both())
        create_service_intent(host, ns, second)
        found = wait_records(host, ns, f"service-{second}", lambda r: set().union(*r.values()) >= set(VIPS.values()))
        assert set().union(*found.values()) >= set(VIPS.values())
        assert records(dns_endpoint(host, ns, f"service-{name}"))  # the first intent's records stay
    finally:
        a.stop()
        b.stop()


def test_restart_while_a_member_is_down_keeps_its_published_targets_for_the_grace_period(
        fleet: Fleet, tmp_path: Path) -> None:
    host = prepare_fleet(fleet)
    ns = new_namespace(fleet, "agg-restart-down")
    create_domain(host, ns)
    name = unique("svc")
    deploy_service(fleet, ns, name, both())
    create_service_intent(host, ns, name)
    args = [f"--namespace={ns}", "--leader-election=false", "--log-format=text"]
    with AggregatorProcess(fleet.host.kubeconfig, args, tmp_path, name="before"):
        wait_records(host, ns, f"service-{name}", lambda r: set().union(*r.values()) >= set(VIPS.values()))
    glob = f"{name}.{ns}.fleet.svc.example.com"
    generation = dns_endpoint(host, ns, f"service-{name}")["metadata"]["generation"]

    east = fleet.members["east"]
    east.stop_apiserver()
    try:
        grace = 4.0
        started = time.monotonic()
        with AggregatorProcess(fleet.host.kubeconfig, [*args, f"--member-grace-period={grace}s"], tmp_path,
                               name="after"):
            # Polled throughout until east leaves: every answer seen before then is the last published one.
            seen: list[set[str] | None] = []

            def east_left() -> bool:
                seen.append(records(dns_endpoint(host, ns, f"service-{name}")).get((glob, "A")))
                return seen[-1] == {VIPS["west"]}

            wait_for(east_left, timeout=grace + 10, what="east leaves after the grace period")
            assert time.monotonic() - started >= grace
            assert all(answer == set(VIPS.values()) for answer in seen[:-1]), seen
            # ...and nothing was written in between that the polls could have missed: one spec change only.
            assert dns_endpoint(host, ns, f"service-{name}")["metadata"]["generation"] == generation + 1

            def east_entry() -> dict:
                status = intent(host, ns, "servicednsrecords", name).get("status") or {"dns": []}
                return next((d for d in status["dns"] if d["cluster"] == "east"), {"reason": "", "healthy": None})

            # The status is written right after the DNSEndpoint, in the same reconcile.
            wait_for(lambda: east_entry()["reason"].startswith("MemberUnavailable"), timeout=5,
                     what="east reported unavailable in status")
            assert not east_entry()["healthy"]
    finally:
        east.restart()


def test_a_frozen_leader_is_replaced_and_does_not_write_when_it_wakes(fleet: Fleet, tmp_path: Path) -> None:
    """Split brain guard: a leader paused past its lease (GC stall, VM pause) must not write on resuming.

    To make the old leader try, not merely be lucky: while it wakes, the host API server is frozen too,
    so its election loop cannot learn of the new holder (it stands down only when its lease request
    times out, a second later) while the change it missed reaches its member informer at once. Without
    the write fence its reconcile sends a status write that lands when the host resumes.
    """
    host = prepare_fleet(fleet)
    ns = new_namespace(fleet, "agg-frozen")
    create_domain(host, ns)
    args = [f"--namespace={ns}", f"--lease-name={ns}", *LEASE_FLAGS]
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/fleetdns-system/leases/{ns}"
    a = AggregatorProcess(fleet.host.kubeconfig, args, tmp_path, name="frozen-a").start()
    b = AggregatorProcess(fleet.host.kubeconfig, args, tmp_path, name="frozen-b").start()
    host_process = fleet.host.process
    assert host_process is not None and host_process.proc is not None
    try:
        wait_for(lambda: sum("leader" in r.readyz()[1] for r in (a, b)) == 1, timeout=10, what="one leader")
        leader, standby = (a, b) if "leader" in a.readyz()[1] else (b, a)
        first = unique("frz")
        deploy_service(fleet, ns, first, both())
        create_service_intent(host, ns, first)
        glob = f"{first}.{ns}.fleet.svc.example.com"
        # both members' Services in the answer (each reaches the leader on its own watch: a first reconcile may
        # see one, and the second one's arrival is another write)
        wait_records(host, ns, f"service-{first}", lambda r: r.get((glob, "A")) == set(VIPS.values()))
        # Count only once the leader is idle: its reconcile (DNSEndpoint, then status) is done and counted.
        wait_for(lambda: reconciled_intents(leader) == 1 and
                 samples(leader, "fleetdns_aggregator_status_writes_total") != [], what="the leader's first reconcile")
        writes_before = writes(leader)

        os.kill(leader.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: host.get(lease_path)["spec"]["holderIdentity"] == standby.name, timeout=15,
                     what="standby holds the lease")
            # While the old leader is frozen, the world changes: east's endpoints stop being ready.
            set_endpoints(fleet.members["east"].api_client(), ns, first, ["10.1.0.1"], ready=False)
            wait_records(host, ns, f"service-{first}", lambda r: r.get((glob, "A")) == {VIPS["west"]})
            wait_for(lambda: writes(standby) >= 2, what="the standby's DNSEndpoint and status writes counted")
            os.kill(host_process.proc.pid, signal.SIGSTOP)
        finally:
            os.kill(leader.pid, signal.SIGCONT)
        try:
            wait_for(lambda: "standby" in leader.readyz()[1], timeout=10, what="old leader stands down")
        finally:
            os.kill(host_process.proc.pid, signal.SIGCONT)
        assert samples(leader, "fleetdns_aggregator_leader") == [({}, 0.0)]

        # A write the old leader had on the wire lands once the host resumes; let the new leader
        # finish a whole reconcile after that before counting.
        second = unique("frz")
        deploy_service(fleet, ns, second, both())
        create_service_intent(host, ns, second)
        wait_records(host, ns, f"service-{second}", lambda r: set().union(*r.values()) >= set(VIPS.values()))
        wait_for(lambda: reconciled_intents(standby) == 2, what="the new leader's reconcile of the second intent")
        assert writes(leader) == writes_before, "the resumed old leader wrote"
        assert host.get(lease_path)["spec"]["holderIdentity"] == standby.name
    finally:
        os.kill(host_process.proc.pid, signal.SIGCONT)
        a.stop()
        b.stop()
