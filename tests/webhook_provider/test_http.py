"""The webhook protocol through a real `python -m webhook_provider` process against real etcd."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from fleetdns.skydns.store import ConflictError, EtcdStore
from rig import EtcdServer
from rig.binaries import REPO_ROOT
from rig.ports import free_port
from rig.region import WebhookProvider
from rig.waiting import wait_for
from rig.webhook_client import WebhookClient
from tests.support.etcd import etcd_kv
from tests.support.webhook import a_record, running_webhook
from webhook_provider.changes import parse_changes
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.metrics import Metrics
from webhook_provider.planner import batch, plan_changes
from webhook_provider.settings import load_settings

pytestmark = pytest.mark.etcd


# The protocol's media type, spelled out here on purpose: the test checks the wire, not our constant.
MEDIA_TYPE = "application/external.dns.webhook+json;version=1"


@pytest.fixture(scope="module")
def webhook(etcd, tmp_path_factory) -> Iterator[tuple[WebhookClient, str]]:
    """One webhook for this module on the session etcd, with its own prefix and a domain filter."""
    with running_webhook(etcd, tmp_path_factory.mktemp("webhook"), "wh",
                         domain_filter="example.org", extra_args=["--max-request-bytes=100000"]) as (server, prefix):
        yield server.client, prefix


def test_negotiation_answers_the_exact_media_type_vary_and_the_domain_filter(webhook):
    client, _ = webhook
    response = client.negotiate()
    assert response.status_code == 200
    assert response.headers["Content-Type"] == MEDIA_TYPE
    assert response.headers["Vary"] == "Content-Type"
    assert response.json() == {"include": ["example.org"]}


def test_apply_answers_204_and_records_returns_exactly_what_was_written(webhook):
    client, _ = webhook
    created = [
        a_record("app.example.org", "192.0.2.1", "192.0.2.2", recordTTL=60, labels={"owner": "t1"}),
        {"dnsName": "a-app.example.org", "recordType": "TXT", "targets": ['"heritage=external-dns,o=t1"']},
        {"dnsName": "v6.example.org", "recordType": "AAAA", "targets": ["2001:db8::1"], "setIdentifier": "eu",
         "providerSpecific": [{"name": "webhook/x", "value": "1"}]},
    ]
    response = client.apply({"create": created})
    assert response.status_code == 204 and response.content == b""
    records = client.records()
    assert records.status_code == 200 and records.headers["Content-Type"] == MEDIA_TYPE
    got = client.endpoints()
    for endpoint in created:
        assert got[(endpoint["dnsName"], endpoint["recordType"])] == {
            k: endpoint[k] for k in ("dnsName", "targets", "recordType", "recordTTL", "labels", "setIdentifier",
                                     "providerSpecific") if k in endpoint}
    # Older ExternalDNS: capitalised keys, null lists, no Content-Type.
    old_style = {"Create": None, "UpdateOld": [got[("app.example.org", "A")]],
                 "UpdateNew": [a_record("app.example.org", "192.0.2.3")], "Delete": None}
    assert client.apply(json.dumps(old_style).encode(), content_type=None).status_code == 204
    assert client.endpoints()[("app.example.org", "A")]["targets"] == ["192.0.2.3"]
    assert client.apply({"delete": [client.endpoints()[("app.example.org", "A")]]},
                        content_type="application/json").status_code == 204
    assert ("app.example.org", "A") not in client.endpoints()


def test_a_repeated_apply_is_idempotent(webhook, etcd):
    client, prefix = webhook
    change = {"create": [a_record("repeat.example.org", "192.0.2.1", "192.0.2.2")]}
    assert client.apply(change).status_code == 204
    assert client.apply(change).status_code == 204
    keys = [m.key for _, m in etcd_kv(etcd.url).get_prefix(prefix + "org/example/repeat/")]
    assert len(keys) == 2
    assert client.endpoints()[("repeat.example.org", "A")]["targets"] == ["192.0.2.1", "192.0.2.2"]


def test_a_name_with_more_targets_than_one_transaction_holds_is_written_in_parts(webhook):
    client, _ = webhook
    first = [f"198.51.100.{i}" for i in range(1, 201)]
    assert client.apply({"create": [a_record("wide.example.org", *first)]}).status_code == 204
    current = client.endpoints()[("wide.example.org", "A")]
    assert len(current["targets"]) == 200
    second = [f"203.0.113.{i}" for i in range(1, 201)]
    assert client.apply({"updateOld": [current], "updateNew": [a_record("wide.example.org", *second)]}
                        ).status_code == 204
    assert sorted(client.endpoints()[("wide.example.org", "A")]["targets"]) == sorted(second)


@pytest.mark.parametrize(("body", "status", "path"), [
    (b"{not json", 400, "$"),
    (json.dumps([a_record("x.example.org", "192.0.2.1")]).encode(), 400, "$"),
    (json.dumps({"updateOld": [a_record("x.example.org", "192.0.2.1")]}).encode(), 400, "updateOld"),
    (json.dumps({"create": [{"dnsName": "x.example.org", "recordType": "A", "targets": [1]}]}).encode(), 400,
     "create[0].targets[0]"),
])
def test_a_malformed_document_is_refused_with_400_and_a_json_reason_and_nothing_is_written(webhook, body, status, path):
    client, _ = webhook
    before = client.records().json()
    response = client.apply(body)
    assert response.status_code == status
    assert response.headers["Content-Type"] == MEDIA_TYPE
    assert response.json()["path"] == path and response.json()["error"]
    assert client.records().json() == before


def test_a_request_with_one_bad_endpoint_writes_the_good_ones_and_skips_it(webhook):
    client, _ = webhook
    response = client.apply({"create": [a_record("good.example.org", "192.0.2.1"),
                                        a_record("bad.example.org", "not-an-ip")]})
    assert response.status_code == 204
    assert client.endpoints()[("good.example.org", "A")]["targets"] == ["192.0.2.1"]
    assert ("bad.example.org", "A") not in client.endpoints()


def test_oversized_bodies_get_413_and_unknown_media_types_415(webhook):
    client, _ = webhook
    big = {"create": [a_record(f"n{i}.example.org", "192.0.2.1") for i in range(3000)]}
    response = client.apply(big)
    assert response.status_code == 413 and "max-request-bytes" in response.json()["error"]
    response = client.apply({"create": []}, content_type="text/plain")
    assert response.status_code == 415 and response.json()["error"]


@pytest.mark.etcd
def test_by_default_a_body_over_32_mib_gets_413_and_the_log_tells_the_operator_what_to_do(etcd, tmp_path):
    """32 MiB is ExternalDNS v0.22's own cap, so nothing it can send is refused, and what the shipped 2Gi memory
    limit covers (bench/webhook_body.py: the densest 32 MiB body peaks at 1.2-1.3 GB)."""
    server = WebhookProvider(etcd.endpoints, tmp_path, domain_filter="example.org",
                             prefix=f"/wh{uuid.uuid4().hex[:8]}/", name="webhook-default-limit").start()
    try:
        empty = b'{"create":[]}'
        fits = empty[:-2] + b" " * (32 * 2**20 - len(empty)) + empty[-2:]  # exactly 32 MiB, nothing to write
        assert server.client.apply(fits).status_code == 204
        response = server.client.apply(fits[:-2] + b" " + fits[-2:])
        assert response.status_code == 413, response.text
        assert "33554432 bytes (--max-request-bytes)" in response.json()["error"]
        logged = [json.loads(line) for line in server.process.log_path.read_text().splitlines()
                  if line.startswith("{") and "max-request-bytes" in line]
        assert logged and logged[-1]["level"] == "error" and logged[-1]["bytes"] == 32 * 2**20 + 1
        assert "memory limit" in logged[-1]["msg"]
    finally:
        server.stop()


@pytest.mark.etcd
def test_a_post_whose_client_gave_up_waiting_is_still_applied_whole(etcd, tmp_path):
    """ExternalDNS exits when a POST outlasts its 15 s timeout; what it sent is written all the same, so its
    next sync after the restart sends only what is missing (webhook_provider/README.md, "Request size")."""
    server = WebhookProvider(etcd.endpoints, tmp_path, domain_filter="example.org",
                             prefix=f"/wh{uuid.uuid4().hex[:8]}/", name="webhook-gave-up").start()
    try:
        names = {f"left{i}.example.org" for i in range(20_000)}
        body = {"create": [a_record(name, "192.0.2.7") for name in sorted(names)]}
        impatient = WebhookClient(server.url, timeout=0.2)
        with pytest.raises(requests.exceptions.Timeout):
            impatient.apply(body)
        wait_for(lambda: names <= {name for name, _ in server.client.endpoints()}, 120,
                 "every record of the abandoned POST listed")
    finally:
        server.stop()


def test_adjustendpoints_returns_canonical_forms_and_drops_what_cannot_be_served(webhook):
    client, _ = webhook
    response = client.adjust([
        {"dnsName": "Web.Example.org.", "recordType": "CNAME", "targets": ["LB.example.org."]},
        {"dnsName": "ns.example.org", "recordType": "NAPTR", "targets": ["ns1.example.org"]},
        {"dnsName": "Child.example.org", "recordType": "NS", "targets": ["NS1.child.example.org."]},
        a_record("bad.example.org", "not-an-ip"),
        a_record("outside.example.com", "192.0.2.1"),
        {"dnsName": "srv.example.org", "recordType": "SRV", "targets": ["10 5 5060 SIP.example.org."]},
    ])
    assert response.status_code == 200 and response.headers["Content-Type"] == MEDIA_TYPE
    assert response.json() == [
        {"dnsName": "web.example.org", "targets": ["lb.example.org"], "recordType": "CNAME"},
        {"dnsName": "child.example.org", "targets": ["ns1.child.example.org"], "recordType": "NS"},
        {"dnsName": "srv.example.org", "targets": ["10 5 5060 sip.example.org."], "recordType": "SRV"},
    ]


def test_metrics_count_requests_applies_and_records(webhook):
    client, _ = webhook
    client.records()
    metrics = client.metrics()
    assert metrics['fleetdns_webhook_requests_total{method="GET",route="/records",status="200"}'] >= 1
    assert metrics['fleetdns_webhook_applies_total{outcome="applied"}'] >= 1
    assert metrics["fleetdns_webhook_records"] >= 1
    assert any(key.startswith("fleetdns_webhook_etcd_operation_duration_seconds_count") for key in metrics)


def test_records_under_the_prefix_but_outside_the_domain_filter_are_neither_returned_nor_touched(webhook, etcd):
    client, prefix = webhook
    kv = etcd_kv(etcd.url)
    kv.put(prefix + "com/example/other/00000001", json.dumps({"host": "192.0.2.50", "targetstrip": 1}))
    assert ("other.example.com", "A") not in client.endpoints()
    assert kv.get(prefix + "com/example/other/00000001")[0] is not None


def test_it_negotiates_before_any_etcd_timeout_while_etcd_is_down_and_recovers(tmp_path):
    etcd = EtcdServer(tmp_path / "etcd")  # port chosen, not started yet
    # a long etcd timeout, so waiting for etcd even once would show above the interpreter's own start-up (1-3 s on
    # this 2-core machine under the suite's load)
    server = WebhookProvider(etcd.endpoints, tmp_path, extra_args=["--etcd-timeout=12s"], name="webhook-early")
    process, client = server.process, server.client
    started = time.monotonic()
    try:
        server.start(timeout=10, wait_for_etcd=False)
        # ExternalDNS may start first: the webhook must not wait for etcd, not even one etcd timeout
        assert time.monotonic() - started < 12.0
        assert client.ready() == 503
        assert client.records().status_code == 503
        assert client.apply({"create": [a_record("x.example.org", "192.0.2.1")]}).status_code == 503
        etcd.start()
        process.wait_until(lambda: client.ready() == 200, 10, "ready")
        assert client.apply({"create": [a_record("x.example.org", "192.0.2.1")]}).status_code == 204
        etcd.stop()
        assert client.records().status_code == 503 and client.ready() == 503
        etcd.start()
        process.wait_until(lambda: client.records().status_code == 200, 10, "serving records")
        assert client.endpoints()[("x.example.org", "A")]["targets"] == ["192.0.2.1"]
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(12 + 10) == 0  # a graceful stop may wait out one etcd call (--etcd-timeout)
    finally:
        process.stop()
        etcd.stop()


def test_a_dead_first_etcd_endpoint_costs_no_failed_request(etcd, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    server = WebhookProvider([dead, *etcd.endpoints], tmp_path, prefix=f"/dead{uuid.uuid4().hex[:6]}/").start()
    try:
        client = server.client
        for _ in range(4):  # each call may start on either endpoint
            assert client.records().status_code == 200
            assert client.ready() == 200
    finally:
        server.stop()


def test_sigterm_lets_an_apply_in_progress_finish_then_exits_zero(etcd, tmp_path):
    prefix = f"/term{uuid.uuid4().hex[:6]}/"
    server = WebhookProvider(etcd.endpoints, tmp_path, prefix=prefix, name="webhook-term").start()
    process, client = server.process, server.client
    try:
        result: list[int] = []
        big = {"create": [a_record(f"n{i}.example.org", "192.0.2.1") for i in range(5000)]}
        sender = threading.Thread(target=lambda: result.append(client.apply(big).status_code))
        sender.start()
        time.sleep(0.15)
        process.proc.send_signal(signal.SIGTERM)
        sender.join(20)
        assert result == [204]
        assert process.proc.wait(15) == 0
        assert len(list(etcd_kv(etcd.url).get_prefix(prefix, keys_only=True))) == 2 * 5000  # record + name key
        with pytest.raises(requests.ConnectionError):
            client.negotiate()
    finally:
        process.stop()


@pytest.mark.parametrize(("args", "named"), [
    (["--listen=not-an-address"], "--listen"),
    (["--etcd-endpoints=etcd:2379"], "--etcd-endpoints"),
    (["--log-format=xml"], "--log-format"),
])
def test_invalid_configuration_exits_2_naming_flag_and_value(args, named):
    result = subprocess.run([sys.executable, "-m", "webhook_provider", *args], capture_output=True, text=True,
                            timeout=20, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert named in result.stderr and args[0].split("=", 1)[1] in result.stderr


def test_a_concurrent_writer_makes_the_transaction_fail_instead_of_being_overwritten(etcd):
    prefix = f"/race{uuid.uuid4().hex[:6]}/"
    settings = load_settings([f"--etcd-endpoints={etcd.url}", f"--prefix={prefix}"], {})
    store = EtcdStore(settings.etcd, Metrics.create().store)
    changes = parse_changes({"create": [a_record("app.example.org", "192.0.2.1")]}, DomainFilter())
    entries = store.read_prefix(prefix)
    (transaction,) = batch(plan_changes(entries, changes, prefix), settings.etcd.max_txn_ops,
                           settings.etcd.max_txn_bytes)
    key, _ = transaction.puts[-1]  # the record's key (its name key is put first)
    etcd_kv(etcd.url).put(key, json.dumps({"host": "192.0.2.99", "targetstrip": 1}))  # the other writer
    with pytest.raises(ConflictError):
        store.commit(transaction)
    assert json.loads(etcd_kv(etcd.url).get(key)[0])["host"] == "192.0.2.99"
    store.close()


def test_records_beyond_one_grpc_message_are_read_in_pages(etcd):
    prefix = f"/pages{uuid.uuid4().hex[:6]}/"
    kv = etcd_kv(etcd.url)
    padding = "x" * 900
    for start in range(0, 12000, 1000):
        kv.transaction(compare=[], success=[
            kv.transactions.put(f"{prefix}org/example/n{i}/00000001",
                                json.dumps({"host": "192.0.2.1", "targetstrip": 1, "labels": {"pad": padding}}))
            for i in range(start, start + 1000)], failure=[])
    settings = load_settings([f"--etcd-endpoints={etcd.url}", f"--prefix={prefix}"], {})
    store = EtcdStore(settings.etcd, Metrics.create().store)
    assert len(store.read_prefix(prefix)) == 12000  # ~11 MB: more than gRPC's default 4 MiB in one message
    store.close()

