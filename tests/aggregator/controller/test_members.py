"""Member connections: the reachability state machine (a stepped clock, no sleeping) and, against real
API servers, a member whose connection cannot be built yet holding up neither /readyz nor reconciles."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from aggregator.controller.members import MemberHealth
from aggregator.health.readiness import KindProblem, Reachability
from fleetdns.apipaths import MEMBER_CLUSTERS, SECRETS
from rig import Fleet
from rig.aggregator import AggregatorProcess
from tests.support.aggregator import (
    VIPS,
    create_domain,
    create_service_intent,
    deploy_service,
    new_namespace,
    prepare_fleet,
    unique,
    wait_for,
    wait_records,
)
from tests.support.clock import SteppedClock

GRACE = 30.0
KINDS = {"services": True, "endpointslices": True, "ingresses": False}


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock(500.0)


def synced(health: MemberHealth, *kinds: str) -> None:
    for kind in kinds or tuple(KINDS):
        health.report(kind, True, "listed", synced=True)


# --- the state machine ------------------------------------------------------------------------------

@pytest.mark.unit
def test_a_member_never_synced_is_connecting_for_the_grace_period_then_unavailable(clock: SteppedClock) -> None:
    health = MemberHealth(KINDS, GRACE, clock)
    assert health.reachability() is Reachability.CONNECTING
    clock.now += 10
    assert health.grace_expires_in() == GRACE - 10
    health.report("services", True, "listed", synced=True)
    assert health.reachability() is Reachability.CONNECTING  # not every kind has listed yet
    clock.now += GRACE - 10
    assert health.reachability() is Reachability.UNAVAILABLE
    assert health.grace_expires_in() == 0.0


@pytest.mark.unit
def test_a_member_that_drops_is_in_grace_then_lost_and_connected_again_when_it_answers(clock: SteppedClock) -> None:
    health = MemberHealth(KINDS, GRACE, clock)
    synced(health)
    assert health.reachability() is Reachability.CONNECTED and health.grace_expires_in() is None

    assert health.report("endpointslices", False, "connection refused", status=0)  # connectedness changed
    assert health.reachability() is Reachability.IN_GRACE
    assert health.grace_expires_in() == GRACE and health.detail == "connection refused"
    assert not health.report("services", False, "connection refused", status=0)  # still down: no change
    clock.now += GRACE - 0.001
    assert health.reachability() is Reachability.IN_GRACE
    clock.now += 0.001
    assert health.reachability() is Reachability.LOST

    health.report("services", True, "watching", synced=True)
    assert health.reachability() is Reachability.LOST  # one watch still down
    assert health.report("endpointslices", True, "watching", synced=True)
    assert health.reachability() is Reachability.CONNECTED and health.detail == ""


@pytest.mark.unit
def test_a_silent_probe_counts_like_a_dropped_watch(clock: SteppedClock) -> None:
    health = MemberHealth(KINDS, GRACE, clock)
    synced(health)
    assert health.report("heartbeat", False, "API server not answering /readyz")
    assert health.reachability() is Reachability.IN_GRACE
    assert health.report("heartbeat", True, "answering")
    assert health.reachability() is Reachability.CONNECTED


@pytest.mark.unit
def test_refused_credentials_end_the_start_up_wait_and_ask_for_a_rebuild_while_a_busy_server_does_not(
        clock: SteppedClock) -> None:
    busy = MemberHealth(KINDS, GRACE, clock)
    busy.report("services", False, "503 Service Unavailable", status=503)
    assert not busy.synced_or_failed and not busy.credentials_refused

    refused = MemberHealth(KINDS, GRACE, clock)
    refused.report("services", False, "401 Unauthorized", status=401)
    assert refused.synced_or_failed and refused.credentials_refused


@pytest.mark.unit
@pytest.mark.parametrize("status", [403, 404])
def test_an_optional_kind_refused_leaves_the_member_connected_and_synced(clock: SteppedClock, status: int) -> None:
    health = MemberHealth(KINDS, GRACE, clock)
    synced(health, "services", "endpointslices")
    assert health.report("ingresses", False, f"{status} refused", status=status)  # availability changed
    assert health.reachability() is Reachability.CONNECTED and health.ever_synced
    assert health.problem("ingresses") == KindProblem("ingresses", status, f"{status} refused")
    assert not health.credentials_refused  # a forbidden optional kind is not a rotated Secret

    assert health.report("ingresses", True, "listed", synced=True)
    assert health.problem("ingresses") is None and health.reachability() is Reachability.CONNECTED


@pytest.mark.unit
def test_a_required_kind_refused_keeps_the_member_down(clock: SteppedClock) -> None:
    health = MemberHealth(KINDS, GRACE, clock)
    synced(health, "endpointslices", "ingresses")
    health.report("services", False, "403 Forbidden", status=403)
    assert health.reachability() is Reachability.CONNECTING and health.problem("services") is None
    assert health.credentials_refused
    clock.now += GRACE
    assert health.reachability() is Reachability.UNAVAILABLE


# --- no network I/O under the members lock (real API servers, the aggregator as a process) -----------

HANGING_PLUGIN = """
touch "$1"
i=0
while [ ! -e "$2" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
printf '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"%s"}}' "$3"
"""


@pytest.fixture
def aggregator(fleet: Fleet, tmp_path: Path) -> Iterator[tuple[AggregatorProcess, str]]:
    host = prepare_fleet(fleet)
    namespace = new_namespace(fleet, "agg-members")
    create_domain(host, namespace)
    with AggregatorProcess(fleet.host.kubeconfig, [f"--namespace={namespace}", "--leader-election=false",
                                                   "--member-grace-period=3s", "--log-format=text"], tmp_path) as proc:
        yield proc, namespace


@pytest.mark.apiserver
def test_a_member_whose_credential_plugin_hangs_holds_up_neither_readiness_nor_reconciles(
        fleet: Fleet, aggregator: tuple[AggregatorProcess, str], tmp_path: Path) -> None:
    """A kubeconfig's exec credential plugin (a cloud IAM call, say) runs while the member's client is
    built; here it blocks until released. Meanwhile /readyz answers and other intents publish."""
    process, ns = aggregator
    host = prepare_fleet(fleet)
    east = fleet.members["east"]
    started, release = tmp_path / "plugin-started", tmp_path / "plugin-release"
    kubeconfig = yaml.safe_load(east.embedded_kubeconfig())
    token = kubeconfig["users"][0]["user"]["token"]
    kubeconfig["users"][0]["user"] = {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "/bin/sh", "interactiveMode": "Never",
        "args": ["-c", HANGING_PLUGIN, "plugin", str(started), str(release), token]}}
    member = unique("hang")
    secret = SECRETS.manifest(member, data={"kubeconfig": base64.b64encode(yaml.safe_dump(kubeconfig).encode())
                                            .decode()})
    host.create(SECRETS.path("fleetdns-system"), secret)
    host.create(MEMBER_CLUSTERS.path(), MEMBER_CLUSTERS.manifest(member, spec={
        "region": "hang", "zone": "hang-a", "kubeconfigSecretRef": {"namespace": "fleetdns-system", "name": member}}))
    try:
        wait_for(started.exists, what="the credential plugin running (the member's client being built)")
        code, body = process.readyz()  # requests' 2 s timeout: a /readyz waiting on the lock fails here
        assert code == 200 and "leader" in body

        name = unique("web")
        deploy_service(fleet, ns, name, {"east": {"ip": VIPS["east"], "ready": True}})
        create_service_intent(host, ns, name)
        glob = f"{name}.{ns}.fleet.svc.example.com"
        wait_records(host, ns, f"service-{name}", lambda r: r.get((glob, "A")) == {VIPS["east"]})
        assert not release.exists(), "the plugin must still be blocked while the intent publishes"

        release.touch()
        hang = f"{name}.{ns}.fleet.svc.hang.example.com"
        wait_records(host, ns, f"service-{name}", lambda r: r.get((hang, "A")) == {VIPS["east"]}, timeout=20)
    finally:
        release.touch()
        host.delete(MEMBER_CLUSTERS.path(name=member))
        host.delete(SECRETS.path("fleetdns-system", member))
