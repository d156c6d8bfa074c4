"""One oversized record never stops a region: transactions are packed by bytes as well as operations, and a
record no transaction could carry is skipped with a reason (issue 14).

etcd refuses a request over its --max-request-bytes (1.5 MiB by default) on every retry; packing by operation
count alone sent 60 names of 60 kB in one 3.6 MB transaction, and a 1.6 MB TXT value beside a good record,
and answered 503 loop after loop. Pure packing first, then the real webhook process against a real etcd, then
real ExternalDNS and CoreDNS.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pyetcd
import pytest
from kubernetes import client

from fleetdns.apipaths import DNS_ENDPOINTS
from fleetdns.config import ConfigError
from fleetdns.endpoint import Endpoint
from fleetdns.skydns import store as store_module
from fleetdns.skydns.settings import DEFAULT_MAX_TXN_BYTES, ETCD_DEFAULT_MAX_REQUEST_BYTES
from fleetdns.skydns.store import EtcdStore, txn_request
from fleetdns.skydns.transaction import Transaction
from rig import ExternalDNS
from rig.coredns import dns_answers, etcd_corefile
from rig.region import WebhookProvider
from rig.waiting import wait_for
from rig.workloads import apply_crds
from tests.support.webhook import PREFIX, a_record, planned, running_webhook
from webhook_provider.changes import Changes, parse_changes, set_aside
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.metrics import Metrics
from webhook_provider.planner import batch, plan_changes, too_large
from webhook_provider.settings import load_settings
from webhook_provider.validation import Rejection, RejectReason

ZONE = "example.org"
MAX_OPS = 128  # etcd's default --max-txn-ops, as the webhook's
REJECTED = 'fleetdns_webhook_records_rejected_total{reason="too_large"}'
DROPPED = 'fleetdns_webhook_adjust_dropped_total{reason="too_large"}'
APPLIED = 'fleetdns_webhook_applies_total{outcome="applied"}'
GETS = 'fleetdns_webhook_requests_total{method="GET",route="/records",status="200"}'


def txt(name: str, *texts: str) -> dict:
    return {"dnsName": name, "recordType": "TXT", "targets": list(texts)}


def text_of(size: int, seed: str) -> str:
    """``size`` bytes of text, distinct per ``seed``."""
    return (seed + "-" + "x" * size)[:size]


def committed(state: dict[str, str], transactions: list[Transaction]) -> dict[str, str]:
    """What etcd holds after the transactions (a pure stand-in for committing them, in order)."""
    after = dict(state)
    for transaction in transactions:
        after.update(transaction.puts)
        for key in transaction.deletes:
            after.pop(key, None)
    return after


def endpoint(data: dict) -> Endpoint:
    (parsed,) = parse_changes({"create": [data]}, DomainFilter()).create
    return parsed


# --- packing (pure) -------------------------------------------------------------------------------------------


@pytest.mark.unit
def test_the_byte_count_of_a_transaction_bounds_the_request_etcd_receives():
    revisions = (0, 1, 2**31, 2**62)
    shapes = [
        Transaction(compares=(("/skydns/org/example/a/1", revision),), puts=(("/skydns/org/example/a/1", "{}"),),
                    deletes=(), names=("a.example.org",)) for revision in revisions]
    long_key = "/skydns/" + "/".join(["l" * 63] * 4) + "/0123456789ab"
    value = json.dumps({"text": "é\"\\" * 100_000}, ensure_ascii=False)
    shapes.append(Transaction(compares=((long_key, 2**62), ("/skydns/x", 2**62)), puts=((long_key, value),),
                              deletes=("/skydns/x",), names=("x",)))
    for plan in planned({}, create=[txt(f"n{i}.example.org", text_of(20_000, str(i))) for i in range(40)]):
        shapes.extend(batch([plan], MAX_OPS, DEFAULT_MAX_TXN_BYTES))
    for transaction in shapes:
        wire = txn_request(transaction).ByteSize()
        assert wire <= transaction.byte_count <= wire + 64 * (len(transaction.compares) + transaction.op_count)


@pytest.mark.unit
def test_sixty_names_of_60_kb_are_packed_whole_into_several_transactions_each_within_the_byte_limit():
    plans = planned({}, create=[txt(f"t{i}.example.org", text_of(60_000, str(i))) for i in range(60)])
    assert sum(plan.op_count for plan in plans) == 120  # one transaction by operations alone: 3.6 MB

    transactions = batch(plans, MAX_OPS, DEFAULT_MAX_TXN_BYTES)
    assert len(transactions) == 3  # 24 names of ~60 kB fit in 1.44 MiB
    assert all(t.byte_count <= DEFAULT_MAX_TXN_BYTES and t.op_count <= MAX_OPS for t in transactions)
    assert not any(t.splits_a_name for t in transactions)
    assert [name for t in transactions for name in t.names] == [plan.name for plan in plans]  # whole, in order
    assert committed({}, transactions) == committed({}, batch(plans, MAX_OPS, 10**9))  # same writes, fewer per txn


@pytest.mark.unit
def test_a_name_over_the_byte_limit_is_split_name_key_and_puts_first_deletes_last_each_part_within_it():
    old = txt("big.example.org", *(text_of(600_000, f"old{i}") for i in range(3)))
    (create,) = planned({}, create=[old])
    parts = batch([create], MAX_OPS, DEFAULT_MAX_TXN_BYTES)
    assert len(parts) == 2 and all(part.splits_a_name for part in parts)
    assert parts[0].puts[0][0] == "/skydns/org/example/big"  # the name key, before any record
    state = committed({}, parts)

    new = txt("big.example.org", *(text_of(600_000, f"new{i}") for i in range(3)))
    (update,) = planned(state, updateOld=[old], updateNew=[new])
    parts = batch([update], MAX_OPS, DEFAULT_MAX_TXN_BYTES)
    assert len(parts) == 2 and all(part.byte_count <= DEFAULT_MAX_TXN_BYTES for part in parts)
    assert len(parts[0].puts) == 2 and not parts[0].deletes  # between the parts: old and new records, never none
    assert len(parts[1].puts) == 1 and len(parts[1].deletes) == 3
    assert sorted(json.loads(v)["text"] for v in committed(state, parts).values() if "text" in json.loads(v)) == \
        sorted(new["targets"])


@pytest.mark.unit
def test_a_record_no_transaction_can_carry_is_refused_as_too_large_naming_the_limit():
    huge = endpoint(txt("big.example.org", "small", text_of(1_600_000, "big")))
    rejection = too_large(huge, PREFIX, DEFAULT_MAX_TXN_BYTES)
    assert rejection is not None and rejection.reason is RejectReason.TOO_LARGE
    assert rejection.dns_name == "big.example.org" and rejection.record_type == "TXT"
    assert "--etcd-max-txn-bytes" in rejection.message and str(DEFAULT_MAX_TXN_BYTES) in rejection.message
    assert too_large(endpoint(txt("big.example.org", text_of(1_400_000, "ok"))), PREFIX, DEFAULT_MAX_TXN_BYTES) is None
    assert too_large(endpoint(a_record("a.example.org", "192.0.2.1")), PREFIX, 16 * 1024) is None
    quoted = endpoint(txt("quoted.example.org", '"' * 800_000))  # 0.8 MB of text, 1.6 MB as JSON in etcd
    assert too_large(quoted, PREFIX, DEFAULT_MAX_TXN_BYTES) is not None

    # Exactly at the limit is fine: the check and the packing use one measure.
    fits = endpoint(txt("edge.example.org", text_of(100_000, "edge")))
    (plan,) = planned({}, create=[txt("edge.example.org", text_of(100_000, "edge"))])
    record_bytes = max(t.byte_count for t in batch([plan], 1, 10**9))
    assert too_large(fits, PREFIX, record_bytes) is None and too_large(fits, PREFIX, record_bytes - 1) is not None


@pytest.mark.unit
@pytest.mark.parametrize("data", [
    a_record("a.example.org", "192.0.2.1", "192.0.2.2"),
    {**txt("ctl.example.org", "\x01\"\\" * 3_000), "setIdentifier": "eu\u00e9", "recordTTL": 2**31 - 1},
    {**txt("uni.example.org", "\u00e9\U0001f600" * 2_000), "labels": {f"k{i}": "" for i in range(200)}},
    {**txt("props.example.org", "x"), "providerSpecific": [{"name": "p", "value": ""}] * 300},
    {**a_record("v.example.org", "192.0.2.1"), "providerSpecific": [{"name": "webhook/view", "value": "v" * 40}]},
    {"dnsName": "_s._tcp.example.org", "recordType": "SRV", "targets": ["65535 65535 65535 " + "h" * 60 + ".org."]},
])
def test_too_large_draws_the_line_exactly_at_the_records_size_in_a_transaction(data):
    candidate = endpoint(data)
    exact = max(t.byte_count for t in batch(planned({}, create=[data]), 1, 1))  # one record (or name key) each
    assert too_large(candidate, PREFIX, exact) is None
    assert too_large(candidate, PREFIX, exact - 1) is not None  # the cheap bound never waves a record through


@pytest.mark.unit
def test_set_aside_skips_a_refused_create_and_update_pair_and_keeps_everything_else():
    changes = parse_changes({
        "create": [txt("big.example.org", "B" * 10), a_record("ok.example.org", "192.0.2.1")],
        "updateOld": [txt("u.example.org", "old"), txt("v.example.org", "old")],
        "updateNew": [txt("u.example.org", "B" * 10), txt("v.example.org", "new")],
        "delete": [txt("gone.example.org", "B" * 10)],
    }, DomainFilter())

    def refuse(candidate: Endpoint) -> Rejection | None:
        return too_large(candidate, PREFIX, 1) if "B" * 10 in candidate.targets else None

    kept = set_aside(changes, refuse)
    assert [e.dns_name for e in kept.create] == ["ok.example.org"]
    assert [(o.dns_name, n.targets) for o, n in zip(kept.update_old, kept.update_new, strict=True)] == [
        ("v.example.org", ("new",))]  # the refused pair is skipped whole: u keeps its old record
    assert kept.delete == changes.delete  # deleting is never too large
    assert [(s.path, s.rejection.dns_name, s.rejection.reason) for s in kept.skipped] == [
        ("create", "big.example.org", RejectReason.TOO_LARGE), ("updateNew", "u.example.org", RejectReason.TOO_LARGE)]
    assert set_aside(changes, lambda _: None) is changes
    assert set_aside(Changes(), refuse).is_empty


@pytest.mark.unit
def test_the_transaction_byte_limit_is_a_flag_with_a_variable_and_a_default_below_etcds(monkeypatch):
    monkeypatch.delenv("ETCD_MAX_TXN_BYTES", raising=False)
    assert load_settings([], {}).etcd.max_txn_bytes == DEFAULT_MAX_TXN_BYTES < ETCD_DEFAULT_MAX_REQUEST_BYTES
    monkeypatch.setenv("ETCD_MAX_TXN_BYTES", "1000000")
    assert load_settings([], {}).etcd.max_txn_bytes == 1_000_000
    assert load_settings(["--etcd-max-txn-bytes=900000"], {}).etcd.max_txn_bytes == 900_000  # the flag wins
    for bad in ("1.5MiB", "0", "-1", "1500"):
        with pytest.raises(ConfigError) as error:
            load_settings([f"--etcd-max-txn-bytes={bad}"], {})
        assert "--etcd-max-txn-bytes" in str(error.value) and bad in str(error.value)


# --- the webhook process against a real etcd -----------------------------------------------------------------


@pytest.fixture(scope="module")
def webhook(etcd, tmp_path_factory) -> Iterator[tuple[WebhookProvider, str]]:
    with running_webhook(etcd, tmp_path_factory.mktemp("webhook"), "big",
                         domain_filter=ZONE, name="webhook-batches") as started:
        yield started


def keys_in_etcd(etcd_url: str, prefix: str) -> dict[str, bytes]:
    host, port = etcd_url.removeprefix("http://").split(":")
    kv = pyetcd.client(host=host, port=int(port))
    try:
        return {meta.key.decode(): value for value, meta in kv.get_prefix(prefix)}
    finally:
        kv.close()


def names_in_etcd(etcd_url: str, prefix: str) -> set[str]:
    return {".".join(reversed(key[len(prefix):].split("/")[:3])) for key in keys_in_etcd(etcd_url, prefix)}


def log_entries(log_path: Path, message: str) -> list[dict]:
    """The webhook's JSON log lines whose message starts with ``message``, in order."""
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("msg", "").startswith(message):
                found.append(entry)
    return found


@pytest.mark.etcd
def test_a_record_too_large_for_etcd_is_skipped_with_its_reason_and_the_rest_of_the_batch_is_written(webhook, etcd):
    server, prefix = webhook
    hook = server.client
    huge = txt("huge.example.org", text_of(1_600_000, "huge"))
    assert hook.apply({"create": [txt("grows.example.org", "small")]}).status_code == 204
    before = hook.metrics()
    batch_ = {"create": [huge, a_record("beside.example.org", "192.0.2.7")],
              "updateOld": [txt("grows.example.org", "small")],
              "updateNew": [txt("grows.example.org", text_of(1_600_000, "grown"))]}
    for _ in range(2):  # ExternalDNS resends the same batch loop after loop
        response = hook.apply(batch_)
        assert response.status_code == 204, response.text

    got = hook.endpoints()
    assert got[("beside.example.org", "A")]["targets"] == ["192.0.2.7"]
    assert got[("grows.example.org", "TXT")]["targets"] == ["small"]  # the update is skipped: the old record stays
    assert ("huge.example.org", "TXT") not in got
    assert names_in_etcd(etcd.url, prefix) == {"beside.example.org", "grows.example.org"}
    assert hook.metrics()[REJECTED] - before.get(REJECTED, 0) == 4  # two endpoints, two requests

    warned = [(e["dnsName"], e["reason"], e["path"]) for e in log_entries(server.process.log_path, "record skipped")
              if e["level"] == "warning" and e["dnsName"] in ("huge.example.org", "grows.example.org")]
    assert warned == [("huge.example.org", "too_large", "create"), ("grows.example.org", "too_large", "updateNew")]
    detail = next(e["detail"] for e in log_entries(server.process.log_path, "record skipped"))
    assert "--etcd-max-txn-bytes" in detail and "--max-request-bytes" in detail

    # /adjustendpoints drops the same endpoint for the same reason, so ExternalDNS's plan never holds it.
    response = hook.adjust([huge, a_record("beside.example.org", "192.0.2.7")])
    assert response.status_code == 200
    assert [(e["dnsName"], e["recordType"]) for e in response.json()] == [("beside.example.org", "A")]
    assert hook.metrics()[DROPPED] - before.get(DROPPED, 0) == 1


@pytest.mark.etcd
def test_sixty_names_of_60_kb_in_one_batch_are_all_stored_updated_and_deleted_in_several_transactions(
        webhook, etcd):
    server, prefix = webhook
    hook = server.client
    names = [f"s{i}.example.org" for i in range(60)]
    first = [txt(name, text_of(60_000, f"{name}-1")) for name in names]
    response = hook.apply({"create": first})
    assert response.status_code == 204, response.text
    got = hook.endpoints()
    assert all(got[(e["dnsName"], "TXT")]["targets"] == e["targets"] for e in first)
    applied = log_entries(server.process.log_path, "changes applied")[-1]
    assert applied["create"] == 60 and applied["transactions"] == 3

    second = [txt(name, text_of(60_000, f"{name}-2")) for name in names]
    response = hook.apply({"updateOld": first, "updateNew": second})
    assert response.status_code == 204, response.text
    got = hook.endpoints()
    assert all(got[(e["dnsName"], "TXT")]["targets"] == e["targets"] for e in second)
    assert log_entries(server.process.log_path, "changes applied")[-1]["transactions"] >= 3

    response = hook.apply({"delete": second})
    assert response.status_code == 204, response.text
    assert not {name for name, _ in hook.endpoints()} & set(names)
    assert not names_in_etcd(etcd.url, prefix) & set(names)


@pytest.mark.etcd
def test_one_name_whose_records_exceed_a_transaction_is_written_in_parts_and_read_back_whole(webhook):
    server, _ = webhook
    hook = server.client
    big = txt("parts.example.org", *(text_of(700_000, f"part{i}") for i in range(4)))  # 2.8 MB at one name
    response = hook.apply({"create": [big, a_record("small.example.org", "192.0.2.8")]})
    assert response.status_code == 204, response.text
    got = hook.endpoints()
    assert sorted(got[("parts.example.org", "TXT")]["targets"]) == sorted(big["targets"])
    assert got[("small.example.org", "A")]["targets"] == ["192.0.2.8"]
    (warning,) = [e for e in log_entries(server.process.log_path, "name needs more than one etcd transaction")
                  if e["dnsName"] == "parts.example.org"]
    assert warning["bytes"] > warning["max_txn_bytes"] == DEFAULT_MAX_TXN_BYTES


@pytest.mark.etcd
def test_a_byte_limit_above_etcds_gets_503_with_an_error_naming_the_flag_to_lower(etcd, tmp_path):
    server = WebhookProvider(etcd.endpoints, tmp_path, domain_filter=ZONE, prefix=f"/over{uuid.uuid4().hex[:8]}/",
                             extra_args=["--etcd-max-txn-bytes=3000000"], name="webhook-over").start()
    try:
        response = server.client.apply({"create": [txt("huge.example.org", text_of(1_600_000, "huge"))]})
        assert response.status_code == 503  # retried by ExternalDNS; the log and the answer say what to fix
        error = response.json()["error"]
        assert "too large" in error and "--etcd-max-txn-bytes (3000000)" in error and "--max-request-bytes" in error
    finally:
        server.stop()


@pytest.mark.etcd
def test_listing_a_prefix_whose_pages_outgrow_grpcs_message_limit_reads_smaller_pages(etcd, monkeypatch):
    # 5,000 values of up to 1.44 MB would be a page of GBs; a 1 MiB receive limit shows the same with 3 MB.
    monkeypatch.setattr(store_module, "MAX_MESSAGE_BYTES", 1024 * 1024)
    prefix = f"/pages{uuid.uuid4().hex[:8]}/"
    settings = load_settings([f"--etcd-endpoints={etcd.url}", f"--prefix={prefix}"], {})
    store = EtcdStore(settings.etcd, Metrics.create().store)
    try:
        changes = parse_changes({"create": [txt(f"p{i}.example.org", text_of(400_000, str(i))) for i in range(8)]},
                                DomainFilter())
        transactions = batch(plan_changes([], changes, prefix), MAX_OPS, 900_000)  # one name each
        for transaction in transactions:
            store.commit(transaction)
        entries = store.read_prefix(prefix)
        assert sorted(r.target for e in entries for r in e.records) == sorted(
            text_of(400_000, str(i)) for i in range(8))
    finally:
        store.close()


# --- real ExternalDNS and CoreDNS ------------------------------------------------------------------------------


def tcp_txt(host: str, port: int, name: str) -> list[str]:
    """The TXT strings of ``name`` joined per record, over TCP (a 60 kB TXT answer never fits in UDP)."""
    response = dns.query.tcp(dns.message.make_query(name, "TXT"), host, port=port, timeout=5)
    return [b"".join(rr.strings).decode() for rrset in response.answer if rrset.rdtype == dns.rdatatype.TXT
            for rr in rrset]


@pytest.mark.etcd
@pytest.mark.coredns
@pytest.mark.apiserver
@pytest.mark.externaldns
def test_externaldns_publishes_sixty_60_kb_txt_records_and_the_a_record_beside_them_then_stays_quiet(
        fleet, etcd, coredns_factory, tmp_path):
    api = fleet.host.api_client()
    apply_crds(api)
    namespace = f"big-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    texts = {f"e{i}.example.org": text_of(60_000, f"e{i}") for i in range(60)}
    items = list(texts.items())
    # kube-apiserver's own etcd takes 1.5 MiB per object too: four DNSEndpoints of 15 names (0.9 MB each).
    for part in range(4):
        endpoints = [txt(name, text) for name, text in items[part * 15:(part + 1) * 15]]
        if part == 0:
            endpoints.append(a_record("plain.example.org", "192.0.2.41"))
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            DNS_ENDPOINTS.group, DNS_ENDPOINTS.version, namespace, DNS_ENDPOINTS.plural, {
                "apiVersion": DNS_ENDPOINTS.api_version, "kind": DNS_ENDPOINTS.kind,
                "metadata": {"name": f"big{part}"}, "spec": {"endpoints": endpoints}})
    prefix = f"/bigx{uuid.uuid4().hex[:8]}/"
    coredns = coredns_factory(etcd_corefile(ZONE, etcd.endpoints, path=prefix.rstrip("/")))
    webhook = WebhookProvider(etcd.endpoints, tmp_path, domain_filter=ZONE, prefix=prefix).start()
    hook = webhook.client
    edns = ExternalDNS(fleet.host.kubeconfig, [
        "--source=crd", f"--namespace={namespace}", "--registry=txt", "--txt-owner-id=big", "--policy=sync",
        "--interval=1s", "--provider=webhook", f"--webhook-provider-url={webhook.url}",
        "--managed-record-types=A", "--managed-record-types=TXT"], workdir=tmp_path).start()
    try:
        wait_for(lambda: dns_answers(coredns.host, coredns.port, "plain.example.org", "A") == {"192.0.2.41"}, 60,
                 "the A record beside the large TXT records answered")
        for name in ("e0.example.org", "e59.example.org"):
            assert tcp_txt(coredns.host, coredns.port, name) == [texts[name]]
        stored = hook.endpoints()
        assert all(stored[(name, "TXT")]["targets"] == [text] for name, text in texts.items())

        applied = hook.metrics()[APPLIED]
        gets = hook.metrics()[GETS]
        wait_for(lambda: hook.metrics()[GETS] >= gets + 3, 30, "three more sync loops")
        assert hook.metrics()[APPLIED] == applied  # converged: nothing resent
        assert hook.metrics().get('fleetdns_webhook_applies_total{outcome="failed"}', 0) == 0
        assert edns.process is not None and edns.process.running, edns.log()[-3000:]
        assert "level=error" not in edns.log() and "level=fatal" not in edns.log(), edns.log()[-3000:]
    finally:
        edns.stop()
        webhook.stop()

