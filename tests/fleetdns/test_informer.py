"""The informer and the JSON client against a real API server: list+watch, change filtering, 410 Gone,
re-listing when a restored member refuses to resume a watch."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from aggregator.sources.service import MemberService, parse_member_service
from fleetdns import informer as informer_module
from fleetdns.apipaths import NAMESPACES, SERVICES
from fleetdns.informer import Gone, Informer
from fleetdns.kubeapi import KubeClient, KubeError
from rig import Fleet, KubeAPIServer
from rig.aggregator import client_for
from rig.workloads import ensure_namespace
from tests.support.aggregator import new_namespace, wait_for

pytestmark = pytest.mark.apiserver


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}


def test_informer_lists_watches_and_reports_only_changes_it_can_see(fleet: Fleet) -> None:
    client = client_for(fleet.members["west"])
    ns = new_namespace(fleet, "agg-informer")
    path = SERVICES.path(ns)
    client.create(path, service("before"))
    changes: list[tuple[str | None, str | None]] = []
    lock = threading.Lock()

    def on_change(old: MemberService | None, new: MemberService | None) -> None:
        with lock:
            changes.append((old and old.name, new and (new.name + ("+lb" if new.addresses else ""))))

    informer: Informer[MemberService] = Informer("test/services", client, path, parse_member_service, on_change)
    informer.start()
    try:
        assert informer.synced.wait(10)
        assert set(informer.store) == {f"{ns}/before"}
        client.create(path, service("after"))
        client.merge_patch(f"{path}/after", {"metadata": {"annotations": {"unrelated": "yes"}}})
        client.merge_patch(f"{path}/after/status", {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.5"}]}}})
        client.delete(f"{path}/before")
        wait_for(lambda: (None, "after") in changes and ("after", "after+lb") in changes
                 and ("before", None) in changes, timeout=10)
        with lock:
            # One watch stream delivers events in order: the annotation patch came before the delete seen above,
            # so it has been handled, and it is not part of the parsed view: no change reported for it.
            assert changes == [(None, "before"), (None, "after"), ("after", "after+lb"), ("before", None)]
        assert informer.connected
    finally:
        informer.stop()


def test_a_watch_cut_mid_stream_resumes_after_the_last_event_it_handled(fleet: Fleet) -> None:
    """A stream that breaks (a reset connection, a proxy dropping it) must resume from the last event the
    informer applied, not from where the broken watch began: replaying older events would hand the
    handlers objects as they were before (a prober saw intents without their status, dropped every
    check's state and its reports, and the aggregator saw the addresses Up again)."""
    client = client_for(fleet.members["west"])
    ns = new_namespace(fleet, "agg-resume")
    path = SERVICES.path(ns)
    changes: list[tuple[str | None, str | None]] = []
    lock = threading.Lock()

    def on_change(old: MemberService | None, new: MemberService | None) -> None:
        with lock:
            changes.append((old and (old.name + ("+lb" if old.addresses else "")),
                            new and (new.name + ("+lb" if new.addresses else ""))))

    states: list[bool] = []
    informer: Informer[MemberService] = Informer("test/resume", client, path, parse_member_service, on_change,
                                                 lambda up, detail, status: states.append(up))
    informer.start()
    try:
        assert informer.synced.wait(10)
        client.create(path, service("app"))
        client.merge_patch(f"{path}/app/status", {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}})
        wait_for(lambda: ("app", "app+lb") in changes, timeout=10)
        for _ in range(3):  # each cut breaks the stream with an error; the informer resumes it
            cuts = states.count(False)
            informer.interrupt()
            wait_for(lambda cuts=cuts: states.count(False) > cuts and informer.connected, timeout=10,
                     what="the watch cut and resumed")
        client.create(path, service("sentinel"))  # one stream delivers in order: any replay comes before it
        wait_for(lambda: (None, "sentinel") in changes, timeout=10)
        with lock:
            assert changes == [(None, "app"), ("app", "app+lb"), (None, "sentinel")]
    finally:
        informer.stop()
        informer.interrupt()


@pytest.mark.timeout(90)
def test_watch_from_a_resource_version_older_than_the_servers_cache_raises_gone(
        fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted API server's watch cache starts at the current revision: an older resourceVersion
    is gone (410) and the informer must re-list, as after a member outage."""
    monkeypatch.setattr(informer_module, "WATCH_SECONDS", (5, 5))  # bounded if the server were to accept it
    west = fleet.members["west"]
    client = client_for(west)
    ns = new_namespace(fleet, "agg-gone")
    path = SERVICES.path(ns)
    first = client.create(path, service("s0"))["metadata"]["resourceVersion"]
    client.create(path, service("s1"))
    west.stop_apiserver()
    west.restart()
    informer: Informer[MemberService] = Informer("test/gone", client, path, parse_member_service, lambda o, n: None)
    with pytest.raises(Gone):
        informer._watch(first)


def test_a_server_that_does_not_answer_fails_fast_with_status_0(fleet: Fleet) -> None:
    client = KubeClient(fleet.members["west"].api_client())
    client.host = "https://127.0.0.1:9"  # nothing listens on the discard port
    started = time.monotonic()
    with pytest.raises(KubeError) as error:
        client.get(NAMESPACES.path(), timeout=2)
    assert error.value.status == 0 and time.monotonic() - started < 3


def test_a_quiet_stream_is_reopened_without_reporting_the_server_down(
        fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(informer_module, "QUIET_STREAM_SECONDS", 0.5)
    client = client_for(fleet.members["west"])
    ns = new_namespace(fleet, "agg-quiet")
    path = SERVICES.path(ns)
    states: list[bool] = []
    seen: list[str] = []
    informer: Informer[MemberService] = Informer(
        "test/quiet", client, path, parse_member_service, lambda o, n: seen.append(n.name if n else ""),
        lambda up, detail, status: states.append(up))
    opened: list[object] = []
    hold = informer._hold
    informer._hold = lambda response: (opened.append(response), hold(response))  # type: ignore[method-assign]
    informer.start()
    try:
        assert informer.synced.wait(10)
        wait_for(lambda: len(opened) >= 4, timeout=10)  # the quiet stream was re-opened several times
        client.create(path, service("late"))
        wait_for(lambda: "late" in seen, timeout=5)
        assert False not in states
    finally:
        informer.stop()


@pytest.mark.timeout(300)
def test_a_member_restored_onto_an_empty_etcd_is_relisted_not_resumed(tmp_path: Path) -> None:
    """A member whose etcd is restored from an older backup (or wiped) and whose API server restarts:
    the informer's resourceVersion now lies ahead of the server's whole history. v1.36 accepts a watch
    from it without an error and sends nothing until its revision passes that number, so resuming
    would keep, silently, objects that no longer exist and miss every new one. The informer must
    notice and re-list, and see the member as it is now."""
    with KubeAPIServer("restored", tmp_path / "restored") as server:
        assert server.own_etcd is not None
        ns = "agg-restore"
        ensure_namespace(server.api_client(), ns)
        path = SERVICES.path(ns)
        client = client_for(server)
        client.create(path, service("before-restore"))
        server.own_etcd.advance_revision(1000)  # a cluster that lived longer than the restored copy will
        seen: list[str] = []
        informer: Informer[MemberService] = Informer(
            "test/restored", client, path, parse_member_service, lambda o, n: seen.append(n.name if n else "-"))
        informer.start()
        try:
            assert informer.synced.wait(30)
            assert set(informer.store) == {f"{ns}/before-restore"}
            old_version = int(client.get(path)["metadata"]["resourceVersion"])

            server.restart_with_empty_etcd()
            ensure_namespace(server.api_client(), ns)
            fresh = client_for(server)
            fresh.create(path, service("after-restore"))
            assert int(fresh.get(path)["metadata"]["resourceVersion"]) < old_version  # the scenario holds

            wait_for(lambda: set(informer.store) == {f"{ns}/after-restore"}, timeout=60,
                     what="the informer to re-list the restored server")
            assert "after-restore" in seen and "-" in seen  # reported as a change: added, and the old one gone
            wait_for(lambda: informer.connected, timeout=10, what="connected again")
        finally:
            informer.stop()
