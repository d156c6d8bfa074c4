"""The webhook's in-memory mirror of the prefix, through a real `python -m webhook_provider` and real etcd:
reads cost no etcd call when nothing changed, yet never answer older data than etcd holds after a 204,
follow other writers, and never answer from a cold or broken mirror (etcd restart, compaction)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyetcd
import pytest
import requests

from fleetdns.skydns.encoding import decode_entry
from fleetdns.skydns.mirror import NameChanges, PrefixMirror, group_by_name
from fleetdns.skydns.records import StoredEntry, endpoints_of
from fleetdns.skydns.store import EtcdStore, EtcdUnavailableError
from rig import EtcdServer
from rig.region import WebhookProvider
from rig.scrape import scrape
from rig.waiting import wait_for
from rig.webhook_client import WebhookClient
from tests.support.etcd import etcd_kv
from tests.support.webhook import a_record, running_webhook
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.listing import RecordsListing
from webhook_provider.metrics import Metrics
from webhook_provider.settings import load_settings

ZONE = "example.org"


def names(client: WebhookClient) -> set[str]:
    return {name for name, _ in client.endpoints()}



def etcd_ranges(etcd: EtcdServer) -> float:
    """Range calls etcd has answered (its own Prometheus counter): every prefix read shows up here."""
    samples = scrape(etcd.url + "/metrics")
    return sum(value for name, value in samples.items()
               if name.startswith("grpc_server_handled_total{") and 'grpc_method="Range"' in name)


class ScriptedChanges:
    """An entry source that hands out the NameChanges a test queued (the mirror's contract, without etcd)."""

    def __init__(self) -> None:
        self.queued: list[NameChanges] = []

    def changes(self) -> NameChanges:
        return self.queued.pop(0) if self.queued else NameChanges(False, {}, 0)


def random_entry(rng: random.Random, prefix: str, name: str, index: int) -> StoredEntry:
    value: dict[str, object] = rng.choice([
        {"host": f"192.0.2.{index % 250}", "recordType": "A"},
        {"host": f"2001:db8::{index:x}", "recordType": "AAAA", "ttl": 60},
        {"text": f'"owner={index % 3}"', "recordType": "TXT", "labels": {"owner": "t"}},
        {"host": f"192.0.2.{index % 250}", "recordType": "A", "setIdentifier": "eu"},
        {"host": f"198.51.100.{index % 250}", "targetstrip": 1, "text": "both"},  # coredns provider: two records
    ])
    key = f"{prefix}{'/'.join(reversed(name.split('.')))}/{index:08x}"
    return decode_entry(prefix, key, json.dumps({"targetstrip": 1, "group": name, **value}).encode(), index)


@pytest.mark.unit
def test_the_listing_updated_name_by_name_is_byte_for_byte_a_full_encoding():
    rng, prefix = random.Random(11), "/u/"
    domain_filter = DomainFilter.from_lists(["example.org"], [])
    entries: dict[str, StoredEntry] = {}
    source = ScriptedChanges()
    listing = RecordsListing(source, domain_filter, Metrics.create())  # type: ignore[arg-type]
    for step in range(60):
        touched: set[str] = set()
        for index in range(rng.choice([1, 3, 200])):  # above and below the re-sort threshold
            name = f"n{rng.randrange(300)}.{rng.choice(['example.org', 'a.example.org', 'other.net'])}"
            same_name = [key for key, entry in entries.items() if entry.records and entry.records[0].name == name]
            if same_name and rng.random() < 0.4:
                del entries[rng.choice(same_name)]
            else:
                entry = random_entry(rng, prefix, name, step * 1000 + index)
                entries[entry.key] = entry
            touched.add(name)
        grouped = group_by_name(entries[key] for key in sorted(entries))
        full = step % 20 == 0
        names = grouped if full else {name: grouped.get(name, {}) for name in touched}
        source.queued.append(NameChanges(full, {name: tuple(keys.values()) for name, keys in names.items()}, step))
        records = [record for key in sorted(entries) for record in entries[key].records
                   if domain_filter.match(record.name)]
        expected = json.dumps([endpoint.to_json() for endpoint in endpoints_of(records)], separators=(",", ":"),
                              ensure_ascii=False).encode()
        assert listing.body() == expected, f"step {step}"


@pytest.fixture
def etcd_alone(tmp_path: Path) -> Iterator[EtcdServer]:
    """An etcd of the test's own: these tests restart and compact it, and count its range calls."""
    with EtcdServer(tmp_path / "etcd") as server:
        yield server


@pytest.fixture
def webhook(etcd_alone: EtcdServer, tmp_path: Path) -> Iterator[tuple[WebhookProvider, str]]:
    # A short verify interval: a watch etcd stalls instead of cancelling still recovers within the tests' bounds.
    with running_webhook(etcd_alone, tmp_path, "mr",
                         domain_filter=ZONE, extra_args=["--mirror-verify-interval=1s"]) as started:
        yield started


@pytest.mark.etcd
def test_polling_with_nothing_changed_reads_nothing_from_etcd_even_when_etcd_changes_elsewhere(etcd_alone, webhook):
    server, prefix = webhook
    client = server.client
    assert client.apply({"create": [a_record(f"n{i}.{ZONE}", "192.0.2.1") for i in range(50)]}).status_code == 204
    first = client.records().content
    checks_before = verify_checks(client)
    before = etcd_ranges(etcd_alone)
    kv = etcd_kv(etcd_alone.url)
    for index in range(20):
        kv.put(f"/elsewhere/{index}", "not ours")  # writes outside the prefix must not cost a read
        assert client.records().content == first
    # The only reads are the mirror's periodic check (two range calls each, one may be in flight), whatever
    # the number of GETs: a read per GET would be 20 more.
    reads = etcd_ranges(etcd_alone) - before
    assert reads <= 2 * (verify_checks(client) - checks_before + 1), reads


def verify_checks(client: WebhookClient) -> float:
    return client.metrics().get('fleetdns_webhook_etcd_operation_duration_seconds_count{operation="verify"}', 0)


@pytest.mark.etcd
def test_a_post_answered_204_is_in_the_very_next_get(webhook):
    server, _ = webhook
    client = server.client
    for index in range(40):
        name = f"rw{index}.{ZONE}"
        assert client.apply({"create": [a_record(name, "192.0.2.1")]}).status_code == 204
        assert client.endpoints()[(name, "A")]["targets"] == ["192.0.2.1"]
        updated = a_record(name, "192.0.2.2", "192.0.2.3")
        assert client.apply({"updateOld": [a_record(name, "192.0.2.1")], "updateNew": [updated]}).status_code == 204
        assert client.endpoints()[(name, "A")]["targets"] == ["192.0.2.2", "192.0.2.3"]
        if index % 2:
            assert client.apply({"delete": [updated]}).status_code == 204
            assert (name, "A") not in client.endpoints()


@pytest.mark.etcd
def test_keys_written_and_deleted_by_another_client_under_the_prefix_show_up(etcd_alone, webhook):
    server, prefix = webhook
    client = server.client
    assert client.apply({"create": [a_record(f"ours.{ZONE}", "192.0.2.1")]}).status_code == 204
    assert names(client) == {f"ours.{ZONE}"}
    kv = etcd_kv(etcd_alone.url)
    kv.put(f"{prefix}org/example/theirs/1a2b3c4d", '{"host":"192.0.2.9","targetstrip":1}')
    kv.put(f"{prefix}org/elsewhere/x/1a2b3c4d", '{"host":"192.0.2.8","targetstrip":1}')  # outside the filter
    wait_for(lambda: names(client) == {f"ours.{ZONE}", f"theirs.{ZONE}"}, 15, "another writer's record is served")
    assert client.endpoints()[(f"theirs.{ZONE}", "A")]["targets"] == ["192.0.2.9"]
    kv.delete(f"{prefix}org/example/theirs/1a2b3c4d")
    wait_for(lambda: names(client) == {f"ours.{ZONE}"}, 15, "another writer's delete is served")


@pytest.mark.etcd
def test_an_etcd_restart_answers_503_or_current_data_never_an_empty_or_stale_list_and_recovers(etcd_alone, webhook):
    server, prefix = webhook
    client = server.client
    assert client.apply({"create": [a_record(f"n{i}.{ZONE}", "192.0.2.1") for i in range(30)]}).status_code == 204
    expected = client.records().json()
    answers: list[tuple[int, object]] = []
    done = threading.Event()

    def poll() -> None:
        poller = WebhookClient(server.url, timeout=30)
        while not done.is_set():
            response = poller.records()
            answers.append((response.status_code, response.json()))

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        etcd_alone.stop()
        wait_for(lambda: any(status == 503 for status, _ in answers), 30, "503 while etcd is down")
        etcd_alone.start()
        wait_for(lambda: answers[-1][0] == 200, 60, "200 again once etcd is back")
    finally:
        done.set()
        thread.join(timeout=60)
    assert {status for status, _ in answers} == {200, 503}
    assert all(body == expected for status, body in answers if status == 200)
    # Recovered for real: our next write is in the very next answer, another writer's delete soon after.
    assert client.apply({"create": [a_record(f"after.{ZONE}", "192.0.2.7")]}).status_code == 204
    assert (f"after.{ZONE}", "A") in client.endpoints()
    etcd_kv(etcd_alone.url).delete_prefix(f"{prefix}org/example/n0/")
    wait_for(lambda: (f"n0.{ZONE}", "A") not in client.endpoints(), 15, "a delete after the restart is served")


@pytest.mark.etcd
def test_a_compaction_past_a_lagging_watch_lists_again_and_answers_current_data(etcd_alone, webhook):
    server, prefix = webhook
    client = server.client
    assert client.apply({"create": [a_record(f"kept.{ZONE}", "192.0.2.1")]}).status_code == 204
    assert names(client) == {f"kept.{ZONE}"}
    kv = etcd_kv(etcd_alone.url)
    assert server.process.proc is not None
    pid = server.process.proc.pid
    os.kill(pid, signal.SIGSTOP)  # a webhook too slow to read its watch, as under heavy load
    try:
        # ~30 MB of events: far more than gRPC and TCP buffer for a reader that does not read (about 5 MB
        # measured), so etcd moves the watch to its slow list; the compaction then overtakes it.
        blob = "x" * 10_000
        for index in range(3000):
            kv.put(f"{prefix}flood/{index % 50}", blob)  # not SkyDNS values: never served
        kv.put(f"{prefix}org/example/late/1a2b3c4d", '{"host":"192.0.2.5","targetstrip":1}')
        kv.delete_prefix(f"{prefix}org/example/kept/")
        kv.compact(kv.get_response("/", count_only=True).header.revision)
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: names(client) == {f"late.{ZONE}"}, 15, "current data after the compaction")
    # etcd normally cancels the overtaken watch ("compacted"); a watch it leaves stalled is replaced by the check.
    relists = client.metrics()
    assert sum(relists.get(f'fleetdns_webhook_mirror_relists_total{{reason="{reason}"}}', 0)
               for reason in ("compacted", "watch_stalled")) >= 1


class BlackHole:
    """A TCP port that accepts connections and never answers: a hung etcd member."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}"


@pytest.mark.etcd
def test_a_late_failure_on_an_old_client_neither_closes_the_new_one_nor_skips_its_endpoint(etcd):
    hung = BlackHole()
    settings = load_settings([f"--etcd-endpoints={hung.url},{etcd.url}", "--etcd-timeout=1s"], {}).etcd
    store = EtcdStore(settings, Metrics.create().store)
    holding, release = threading.Event(), threading.Event()
    late: list[object] = []

    def slow_caller() -> None:
        """A request that got the first client, then fails on it after another request replaced it."""
        def action(client: pyetcd.MultiEndpointEtcd3Client) -> object:
            holding.set()
            release.wait(30)
            return client.get_response("health", count_only=True)

        try:
            late.append(store._call("ping", action))
        except EtcdUnavailableError as error:
            late.append(error)

    thread = threading.Thread(target=slow_caller)
    thread.start()
    try:
        assert holding.wait(10)
        store.ping("/skydns/")  # times out on the hung member, moves to the healthy one, answers
    finally:
        release.set()
        thread.join(30)
    assert late and not isinstance(late[0], Exception), f"the late caller failed: {late}"
    started = time.monotonic()
    store.ping("/skydns/")
    assert time.monotonic() - started < 1, "the store went back to the hung member"
    store.close()
    hung.socket.close()


@pytest.mark.etcd
def test_reads_fall_back_to_etcd_with_the_mirror_disabled(etcd_alone, tmp_path):
    prefix = f"/mr{uuid.uuid4().hex[:8]}/"
    server = WebhookProvider(etcd_alone.endpoints, tmp_path, domain_filter=ZONE, prefix=prefix,
                             extra_args=["--read-mirror=false"], name="webhook-direct").start()
    try:
        client = server.client
        assert client.apply({"create": [a_record(f"direct.{ZONE}", "192.0.2.1")]}).status_code == 204
        before = etcd_ranges(etcd_alone)
        assert names(client) == {f"direct.{ZONE}"}
        assert etcd_ranges(etcd_alone) > before
        assert requests.get(server.url + "/records", timeout=10).status_code == 200
    finally:
        server.stop()


class DeafStore(EtcdStore):
    """A real etcd whose watch streams stay open but never deliver our keys (they watch a prefix nobody writes
    to): what the mirror sees when a stream stalls without ending."""

    def watch_prefix(self, prefix, start_revision, on_events, on_end):  # type: ignore[no-untyped-def]
        return super().watch_prefix(prefix.rstrip("/") + "-nobody-writes-here/", start_revision, on_events, on_end)


def stalled_relists(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("fleetdns_webhook_mirror_relists_total", {"reason": "watch_stalled"})
    return value or 0.0


@contextlib.contextmanager
def mirror_of(etcd: EtcdServer, store_type: type[EtcdStore], verify_seconds: float) -> Iterator[
        tuple[PrefixMirror, str, Metrics]]:
    """An in-process mirror of a fresh prefix on a real etcd."""
    prefix = f"/mv{uuid.uuid4().hex[:8]}/"
    metrics = Metrics.create()
    store = store_type(load_settings([f"--etcd-endpoints={etcd.url}"], {}).etcd, metrics.store)
    mirror = PrefixMirror(store, prefix, metrics.store, wait_seconds=2.0, verify_seconds=verify_seconds)
    try:
        yield mirror, prefix, metrics
    finally:
        mirror.close()
        store.close()


@pytest.mark.etcd
def test_a_watch_that_stops_delivering_is_noticed_and_the_prefix_listed_again(etcd_alone):
    with mirror_of(etcd_alone, DeafStore, verify_seconds=0.2) as (mirror, prefix, metrics):
        assert mirror.entries() == []  # listed; the watch is open and will never deliver
        key = f"{prefix}org/example/late/1a2b3c4d"
        etcd_kv(etcd_alone.url).put(key, '{"host":"192.0.2.5","targetstrip":1}')
        wait_for(lambda: [entry.key for entry in mirror.entries()] == [key], 15, "another writer's key, read anew")
        assert stalled_relists(metrics) >= 1


@pytest.mark.etcd
def test_a_mirror_that_kept_up_is_never_taken_for_stalled(etcd_alone):
    kv = etcd_kv(etcd_alone.url)
    with mirror_of(etcd_alone, EtcdStore, verify_seconds=3600) as (mirror, prefix, metrics):  # checks run below
        assert mirror.entries() == []
        for index in range(40):
            kv.put(f"{prefix}org/example/n{index}/1a2b3c4d", '{"host":"192.0.2.5","targetstrip":1}')
        kv.delete(f"{prefix}org/example/n0/1a2b3c4d")
        kv.put("/elsewhere/key", "writes outside the prefix move etcd's revision, not ours")
        wait_for(lambda: len(mirror.entries()) == 39, 15, "the watch delivered every change")
        assert [mirror.verify() for _ in range(3)] == [False, False, False]
        assert stalled_relists(metrics) == 0
