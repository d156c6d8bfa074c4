"""A record the webhook cannot store never stops the rest: skipped with a reason, dropped by /adjustendpoints.

ExternalDNS v0.22 exits on any answer but 204 or 500-510, so one bad record answered with 400 used to stop
every change of the region. Real webhook process, real etcd, real ExternalDNS and CoreDNS.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyetcd
import pytest
from kubernetes import client

from fleetdns.apipaths import DNS_ENDPOINTS
from fleetdns.skydns.encoding import encode_name_key, encode_value, key_for, name_key
from fleetdns.skydns.records import Record
from rig import ExternalDNS
from rig.coredns import dns_answers, etcd_corefile, regional_coredns
from rig.region import WebhookProvider
from rig.waiting import wait_for
from rig.webhook_client import WebhookClient
from rig.workloads import apply_crds
from tests.support.webhook import a_record, running_webhook
from webhook_provider.changes import parse_changes
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.validation import RejectReason

ZONE = "example.org"
REJECTED = "fleetdns_webhook_records_rejected_total"
DROPPED = "fleetdns_webhook_adjust_dropped_total"
GETS = 'fleetdns_webhook_requests_total{method="GET",route="/records",status="200"}'
APPLIED = 'fleetdns_webhook_applies_total{outcome="applied"}'



def by_reason(metrics: dict[str, float], family: str) -> dict[str, float]:
    """The reasons counted at least once (every reason is exposed at 0 from the start, for the alerts' rates)."""
    prefix = family + '{reason="'
    return {key[len(prefix):-2]: value for key, value in metrics.items() if key.startswith(prefix) and value}


def skip_warnings(log_path: Path) -> list[dict]:
    """The webhook's warning-level "record skipped" log lines (JSON), in order."""
    lines = []
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("msg", "").startswith("record skipped") and entry.get("level") == "warning":
                lines.append(entry)
    return lines


# --- the HTTP protocol, real webhook process + real etcd -----------------------------------------------

@pytest.fixture(scope="module")
def webhook(etcd, tmp_path_factory) -> Iterator[tuple[WebhookProvider, str]]:
    with running_webhook(etcd, tmp_path_factory.mktemp("webhook"), "rej",
                         domain_filter=ZONE, name="webhook-rejects") as started:
        yield started


def names_in_etcd(etcd_url: str, prefix: str) -> set[str]:
    """``<label>.example.org`` for every key below ``<prefix>org/example/<label>``, and every other key as is."""
    host, port = etcd_url.removeprefix("http://").split(":")
    keys = [meta.key.decode() for _, meta in pyetcd.client(host=host, port=int(port)).get_prefix(prefix)]
    parts = [key[len(prefix):].split("/") for key in keys]
    return {f"{p[2]}.example.org" if p[:2] == ["org", "example"] and len(p) > 2 else "/".join(p) for p in parts}


@pytest.mark.etcd
def test_a_batch_with_unstorable_records_applies_the_rest_answers_204_and_names_each_once(webhook, etcd):
    server, prefix = webhook
    hook = server.client
    seed = {"create": [a_record("pair.example.org", "192.0.2.10"), a_record("moved.example.org", "192.0.2.20"),
                       a_record("gone.example.org", "192.0.2.30")]}
    assert hook.apply(seed).status_code == 204
    before = by_reason(hook.metrics(), REJECTED)
    batch = {
        "create": [
            a_record("ok1.example.org", "192.0.2.1"),
            {"dnsName": "ok2.example.org", "recordType": "CNAME", "targets": ["ok1.example.org"]},
            a_record("badip.example.org", "300.1.1.1"),
            a_record("outside.example.com", "192.0.2.2"),
            a_record("*.example.org", "192.0.2.3"),
            {"dnsName": "a-*.example.org", "recordType": "TXT", "targets": ['"heritage=external-dns,o=t"']},
        ],
        "updateOld": [a_record("pair.example.org", "192.0.2.10"), a_record("moved.example.org", "192.0.2.20")],
        "updateNew": [a_record("pair.example.org", "not-an-ip"), a_record("moved.example.org", "192.0.2.21")],
        "delete": [a_record("gone.example.org", "192.0.2.30"), a_record("elsewhere.example.com", "192.0.2.4"),
                   a_record("bad_name-.example.org", "192.0.2.5")],
    }
    for _ in range(2):  # ExternalDNS resends the same batch loop after loop
        assert hook.apply(batch).status_code == 204

    got = hook.endpoints()
    assert got[("ok1.example.org", "A")]["targets"] == ["192.0.2.1"]
    assert got[("ok2.example.org", "CNAME")]["targets"] == ["ok1.example.org"]
    assert got[("moved.example.org", "A")]["targets"] == ["192.0.2.21"]
    assert got[("pair.example.org", "A")]["targets"] == ["192.0.2.10"]  # invalid new side: the old record stays
    assert ("gone.example.org", "A") not in got
    assert names_in_etcd(etcd.url, prefix) == {"ok1.example.org", "ok2.example.org", "moved.example.org",
                                               "pair.example.org"}  # nothing of a skipped endpoint written

    rejected = by_reason(hook.metrics(), REJECTED)
    grown = {reason: rejected.get(reason, 0) - before.get(reason, 0) for reason in rejected}
    assert grown == {"invalid_target": 4, "domain_filter": 4, "wildcard": 2, "invalid_name": 4}

    expected = {("badip.example.org", "invalid_target"), ("outside.example.com", "domain_filter"),
                ("*.example.org", "wildcard"), ("a-*.example.org", "invalid_name"),
                ("pair.example.org", "invalid_target"), ("elsewhere.example.com", "domain_filter"),
                ("bad_name-.example.org", "invalid_name")}
    names = {name for name, _ in expected} | {"ok1.example.org", "ok2.example.org", "moved.example.org"}
    warned = Counter((entry["dnsName"], entry["reason"]) for entry in skip_warnings(server.process.log_path)
                     if entry["dnsName"] in names)
    assert warned == Counter(expected)  # each once, though the batch came twice


@pytest.mark.etcd
@pytest.mark.parametrize(("route", "body", "path"), [
    ("/records", b"{not json", "$"),
    ("/records", json.dumps([a_record("x.example.org", "192.0.2.1")]).encode(), "$"),
    ("/records", json.dumps({"updateOld": [a_record("x.example.org", "192.0.2.1")],
                             "updateNew": []}).encode(), "updateOld"),
    ("/records", json.dumps({"create": [a_record("x.example.org", "192.0.2.1"), "y.example.org"]}).encode(),
     "create[1]"),
    ("/records", json.dumps({"create": {"dnsName": "x.example.org"}}).encode(), "create"),
    ("/adjustendpoints", json.dumps({"dnsName": "x.example.org"}).encode(), "$"),
])
def test_a_malformed_document_still_gets_400_with_its_path_and_writes_nothing(webhook, route, body, path):
    server, _ = webhook
    hook = server.client
    before = hook.records().json()
    response = hook.session.post(hook.url + route, data=body, headers={"Content-Type": "application/json"},
                                 timeout=hook.timeout)
    assert response.status_code == 400
    assert response.json()["path"] == path and response.json()["error"]
    assert hook.records().json() == before


# --- text that cannot be stored, documents nested too deep (issue 14) ----------------------------------------

LONE = "\ud800"  # a lone UTF-16 surrogate: a valid JSON escape (requests sends it as \ud800), no UTF-8 form
SURROGATE_RECORDS = {
    "sur-label.example.org": a_record("sur-label.example.org", "192.0.2.41", labels={"owner": f"x{LONE}"}),
    "sur-labelkey.example.org": a_record("sur-labelkey.example.org", "192.0.2.42", labels={f"o{LONE}": "x"}),
    "sur-setid.example.org": a_record("sur-setid.example.org", "192.0.2.43", setIdentifier=f"east{LONE}"),
    "sur-prop.example.org": a_record("sur-prop.example.org", "192.0.2.44",
                                     providerSpecific=[{"name": "alias", "value": f"f{LONE}"}]),
    "sur-propname.example.org": a_record("sur-propname.example.org", "192.0.2.45",
                                         providerSpecific=[{"name": f"a{LONE}", "value": "false"}]),
    "sur-txt.example.org": {"dnsName": "sur-txt.example.org", "recordType": "TXT",
                            "targets": [f'"heritage=external-dns{LONE}"']},
    f"sur-name{LONE}.example.org": a_record(f"sur-name{LONE}.example.org", "192.0.2.46"),
    "sur-type.example.org": {"dnsName": "sur-type.example.org", "recordType": f"A{LONE}", "targets": ["192.0.2.47"]},
}


@pytest.mark.etcd
def test_a_lone_surrogate_in_any_string_skips_that_record_and_the_rest_of_the_batch_is_written(webhook, etcd):
    server, prefix = webhook
    hook = server.client
    good = [a_record("sur-ok.example.org", "192.0.2.40"),
            {"dnsName": "sur-oktxt.example.org", "recordType": "TXT", "targets": ['"héllo"']}]
    before = hook.metrics()
    response = hook.apply({"create": [*SURROGATE_RECORDS.values(), *good],
                           "delete": [a_record("sur-label.example.org", "192.0.2.41", labels={"owner": f"x{LONE}"})]})
    assert response.status_code == 204, response.text  # was 500 UnicodeEncodeError: the whole batch blocked

    got = hook.endpoints()
    assert got[("sur-ok.example.org", "A")]["targets"] == ["192.0.2.40"]
    assert got[("sur-oktxt.example.org", "TXT")]["targets"] == ['"héllo"']  # real non-ASCII text is fine
    stored = names_in_etcd(etcd.url, prefix)
    assert not {name.replace(LONE, "") for name in SURROGATE_RECORDS} & stored  # nothing of them written
    after = hook.metrics()
    grown = {reason: count - by_reason(before, REJECTED).get(reason, 0)
             for reason, count in by_reason(after, REJECTED).items()}
    assert grown.get("invalid_text") == len(SURROGATE_RECORDS) + 1  # the delete too: no record can hold it
    warned = {entry["dnsName"] for entry in skip_warnings(server.process.log_path)
              if entry["reason"] == "invalid_text" and entry["dnsName"].startswith("sur-")}
    assert warned == {name.replace(LONE, "\\ud800") for name in SURROGATE_RECORDS}  # named, printable

    adjusted = hook.adjust([*SURROGATE_RECORDS.values(), *good])
    assert adjusted.status_code == 200, adjusted.text  # was 500 as well
    assert [e["dnsName"] for e in adjusted.json()] == ["sur-ok.example.org", "sur-oktxt.example.org"]
    assert by_reason(hook.metrics(), DROPPED).get("invalid_text", 0) - by_reason(after, DROPPED).get(
        "invalid_text", 0) == len(SURROGATE_RECORDS)


def nested(depth: int) -> bytes:
    return b'{"create":[' + b"[" * depth + b"]" * depth + b"]}"


@pytest.mark.etcd
@pytest.mark.parametrize(("route", "body"), [
    ("/records", nested(1_000)),
    ("/records", nested(100_000)),
    ("/records", b'{"create":[{"dnsName":"deep.example.org","labels":{"x":' + b"[" * 5_000 + b"]" * 5_000 + b"}}]}"),
    ("/adjustendpoints", b"[" * 1_000 + b"]" * 1_000),
])
def test_a_body_nested_deeper_than_any_changes_document_gets_400_saying_so(webhook, route, body):
    server, _ = webhook
    hook = server.client
    before = hook.records().json()
    response = hook.session.post(hook.url + route, data=body, headers={"Content-Type": "application/json"},
                                 timeout=hook.timeout)
    assert response.status_code == 400, response.text  # was 500 RecursionError
    assert response.json() == {"error": "body nests arrays or objects too deeply to decode (about 1000 levels); "
                                        "a Changes document has 4", "path": "$"}
    assert hook.records().json() == before
    assert server.process.running


@pytest.mark.etcd
def test_a_malformed_label_whose_key_holds_a_lone_surrogate_gets_400_naming_it(webhook):
    server, _ = webhook
    hook = server.client
    response = hook.apply({"create": [a_record("x.example.org", "192.0.2.1", labels={f"k{LONE}": 5})]})
    assert response.status_code == 400, response.text  # the error's path could not be encoded: was 500
    assert response.json()["path"] == f"create[0].labels.k{LONE}"


@pytest.mark.etcd
@pytest.mark.coredns
def test_a_label_ending_in_a_newline_is_skipped_and_coredns_never_serves_it(webhook, etcd, tmp_path):
    server, prefix = webhook
    hook = server.client
    response = hook.apply({"create": [a_record("nl\n.example.org", "192.0.2.51"),
                                      a_record("nl-ok.example.org", "192.0.2.52")]})
    assert response.status_code == 204
    with regional_coredns(ZONE, etcd.endpoints, tmp_path, "coredns-newline", etcd_path=prefix.strip("/")) as dns:
        wait_for(lambda: dns_answers(dns.host, dns.port, "nl-ok.example.org", "A") == {"192.0.2.52"}, 10,
                 "the good record served from the zone file")
        assert dns_answers(dns.host, dns.port, "nl\\010.example.org", "A") == set()  # was served as nl\010
        assert "nl\\010" not in dns.sidecar.zone_file(ZONE).read_text()
    assert not [name for name in names_in_etcd(etcd.url, prefix) if "\n" in name]  # was stored under nl\n
    assert ("nl\n.example.org", "invalid_name") in {(e["dnsName"], e["reason"])
                                                    for e in skip_warnings(server.process.log_path)}


@pytest.mark.etcd
@pytest.mark.coredns
def test_a_record_an_older_version_stored_under_a_newline_label_can_still_be_deleted(webhook, etcd, tmp_path):
    """Versions before issue 14 stored ``nl2\\n.example.org``: GET /records returns it, /adjustendpoints now
    drops it from the desired state, so ExternalDNS sends its delete, which must remove it."""
    server, prefix = webhook
    hook = server.client
    stale = Record("nl2\n.example.org", "A", "192.0.2.61", labels={"owner": "t"})
    host, port = etcd.url.removeprefix("http://").split(":")
    db = pyetcd.client(host=host, port=int(port))
    db.put(key_for(stale, prefix), encode_value(stale))  # exactly what the old webhook wrote
    db.put(name_key(prefix, stale.name), encode_name_key(stale.name, [stale]) or "")
    with regional_coredns(ZONE, etcd.endpoints, tmp_path, "coredns-stale", etcd_path=prefix.strip("/")) as dns:
        wait_for(lambda: dns_answers(dns.host, dns.port, "nl2\\010.example.org", "A") == {"192.0.2.61"}, 10,
                 "the stale record served, as before the fix")
        listed = next(e for e in hook.records().json() if e["dnsName"] == stale.name)
        assert hook.adjust([listed]).json() == []  # not desired any more: ExternalDNS plans its delete
        assert hook.apply({"delete": [listed]}).status_code == 204
        wait_for(lambda: dns_answers(dns.host, dns.port, "nl2\\010.example.org", "A") == set(), 10,
                 "the stale record no longer served")
    assert not [key for _, meta in db.get_prefix(prefix) if "\n" in (key := meta.key.decode())]


@pytest.mark.etcd
def test_a_value_another_writer_stored_with_a_lone_surrogate_never_breaks_get_records(webhook, etcd):
    server, prefix = webhook
    hook = server.client
    host, port = etcd.url.removeprefix("http://").split(":")
    db = pyetcd.client(host=host, port=int(port))
    db.put(f"{prefix}org/example/foreign/x1", '{"text":"bad \\ud800","targetstrip":1}')  # e.g. etcdctl
    db.put(f"{prefix}org/example/foreign2/x1", '{"text":"fine \\u00e9","targetstrip":1}')
    assert hook.apply({"create": [a_record("after-foreign.example.org", "192.0.2.62")]}).status_code == 204
    response = hook.records()
    assert response.status_code == 200, response.text  # was 500 UnicodeEncodeError on every GET
    names = {e["dnsName"]: e for e in response.json()}
    assert "foreign.example.org" not in names  # not readable: never listed, never touched
    assert names["foreign2.example.org"]["targets"] == ["fine é"]
    assert "after-foreign.example.org" in names


# --- webhook/weights: an unusable value is left out, the record is stored ----------------------------------

PROPERTY_DROPPED = "fleetdns_webhook_properties_dropped_total"


def weighted_record(name: str, record_type: str, targets: list[str], value: str) -> dict:
    return {"dnsName": name, "recordType": record_type, "targets": targets,
            "providerSpecific": [{"name": "alias", "value": "false"}, {"name": "webhook/weights", "value": value}]}


def property_drops(metrics: dict[str, float], route: str) -> float:
    return metrics.get(f'{PROPERTY_DROPPED}{{property="webhook/weights",route="{route}"}}', 0)


def property_warnings(log_path: Path) -> list[dict]:
    lines = []
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("msg", "").startswith("providerSpecific property dropped") and entry["level"] == "warning":
                lines.append(entry)
    return lines


@pytest.mark.etcd
def test_unusable_weights_keep_the_record_without_them_counted_and_named_once_and_adjust_agrees(webhook):
    server, _ = webhook
    hook = server.client
    bad = {f"w-{label}.example.org": value for label, value in
           (("range", "192.0.2.1=256"), ("syntax", "192.0.2.1:5"), ("stranger", "192.0.2.9=5"),
            ("family", "2001:db8::1=5"), ("empty", ""))}
    batch = {"create": [
        weighted_record("w-ok.example.org", "AAAA", ["2001:DB8::1", "2001:db8::2"], "2001:DB8::1=255,2001:db8::2=64"),
        *(weighted_record(name, "A", ["192.0.2.1", "192.0.2.2"], value) for name, value in bad.items()),
    ]}
    before = hook.metrics()
    for _ in range(2):  # ExternalDNS resends the same batch loop after loop
        assert hook.apply(batch).status_code == 204

    got = hook.endpoints()
    assert got[("w-ok.example.org", "AAAA")]["providerSpecific"] == [
        {"name": "alias", "value": "false"}, {"name": "webhook/weights", "value": "2001:db8::1=255,2001:db8::2=64"}]
    for name in bad:
        assert got[(name, "A")]["targets"] == ["192.0.2.1", "192.0.2.2"]  # the record is served
        assert got[(name, "A")]["providerSpecific"] == [{"name": "alias", "value": "false"}]
    after = hook.metrics()
    assert property_drops(after, "/records") - property_drops(before, "/records") == 2 * len(bad)
    assert by_reason(after, REJECTED) == by_reason(before, REJECTED)  # nothing skipped
    warned = Counter(entry["dnsName"] for entry in property_warnings(server.process.log_path)
                     if entry["dnsName"] in bad)
    assert warned == Counter(list(bad))  # each once, though the batch came twice

    response = hook.adjust(batch["create"])
    assert response.status_code == 200
    adjusted = {(e["dnsName"], e["recordType"]): e for e in response.json()}
    assert {key: adjusted[key].get("providerSpecific") for key in adjusted} == {
        key: got[key].get("providerSpecific") for key in adjusted}  # what ExternalDNS wants is what is stored
    assert property_drops(hook.metrics(), "/adjustendpoints") - property_drops(after, "/adjustendpoints") == len(bad)


# --- /adjustendpoints drops exactly what apply skips (over a table) -----------------------------------

NAMES = ["app.t.example.org", "APP.T.Example.org.", "_sip._tcp.t.example.org", "*.t.example.org",
         "a-*.t.example.org", "x.t.example.com", "bad_name-.t.example.org", "", "l" * 64 + ".t.example.org"]
RECORDS = [
    ("A", ["192.0.2.1"]), ("A", [" 192.0.2.1", "192.0.2.1"]), ("A", ["300.1.1.1"]), ("A", ["2001:db8::1"]), ("A", []),
    ("AAAA", ["2001:DB8::1"]), ("AAAA", ["192.0.2.1"]),
    ("CNAME", ["LB.example.org."]), ("CNAME", ["a.example.org", "b.example.org"]), ("CNAME", ["192.0.2.1"]),
    ("TXT", ['"heritage=external-dns"']), ("SRV", ["10 5 5060 sip.example.org."]), ("SRV", ["10 5 sip"]),
    ("MX", ["10 mail.example.org"]), ("MX", ["99999 mail.example.org"]),
    ("NS", ["ns1.example.org"]), ("NS", ["192.0.2.1"]), ("NAPTR", ["x"]), ("a", ["192.0.2.1"]), ("", ["192.0.2.1"]),
]
TTLS = [0, 60, -1, 2**31]
TABLE = [{"dnsName": name, "recordType": record_type, "targets": targets, "recordTTL": ttl}
         for name, (record_type, targets), ttl in itertools.product(NAMES, RECORDS, TTLS)]
# webhook/view names the record's etcd prefix (<prefix>-<view>/): a DNSView's name or region-<region>, once.
VIEWS = [[{"name": "webhook/view", "value": value}] for value in
         ("east-office", "region-eu-west-1", "East", "region-", "a/b", "x" * 41, "")] + [
    [{"name": "webhook/view", "value": "east"}, {"name": "webhook/view", "value": "west"}]]
TABLE += [{"dnsName": "view.t.example.org", "recordType": "A", "targets": ["192.0.2.1"], "providerSpecific": props}
          for props in VIEWS]
TABLE += [{"dnsName": "text.t.example.org", "recordType": "TXT", "targets": ["x\ud800"]}]  # invalid_text


@pytest.mark.etcd
def test_adjustendpoints_drops_exactly_the_endpoints_apply_skips_with_the_same_reasons(webhook):
    server, _ = webhook
    hook = server.client
    domain_filter = DomainFilter.from_lists([ZONE], [])
    created = parse_changes({"create": TABLE}, domain_filter)
    updated = parse_changes({"updateOld": [a_record("app.t.example.org", "192.0.2.9")] * len(TABLE),
                             "updateNew": TABLE}, domain_filter)
    skipped_reasons = Counter(skipped.rejection.reason.value for skipped in created.skipped)
    assert skipped_reasons == Counter(skipped.rejection.reason.value for skipped in updated.skipped)
    assert created.create == updated.update_new  # a pair is skipped exactly when its new side is
    # The table covers every reason the document alone decides; too_large also needs the prefix and the
    # transaction limit, so the provider asks it on both routes (tests/webhook_provider/test_batches.py).
    assert set(skipped_reasons) == {reason.value for reason in RejectReason} - {RejectReason.TOO_LARGE.value}
    assert len(created.create) + len(created.skipped) == len(TABLE)

    before = by_reason(hook.metrics(), DROPPED)
    response = hook.adjust(TABLE)
    assert response.status_code == 200
    assert response.json() == [endpoint.to_json() for endpoint in created.create]  # same survivors, same forms
    after = by_reason(hook.metrics(), DROPPED)
    assert Counter({reason: after[reason] - before.get(reason, 0) for reason in after}) == skipped_reasons


# --- real ExternalDNS: one bad record next to good ones ------------------------------------------------------

GROUP, VERSION, PLURAL = DNS_ENDPOINTS.group, DNS_ENDPOINTS.version, DNS_ENDPOINTS.plural


def create_dnsendpoint(api: client.ApiClient, endpoints: list[dict]) -> str:
    """A fresh namespace holding one DNSEndpoint; the CRD is created first if this session has not yet."""
    apply_crds(api)  # idempotent: create or replace, then wait until established
    namespace = f"rej-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "DNSEndpoint", "metadata": {"name": "mixed"},
        "spec": {"endpoints": endpoints}})
    return namespace


@pytest.mark.etcd
@pytest.mark.coredns
@pytest.mark.apiserver
@pytest.mark.externaldns
def test_externaldns_keeps_running_publishes_the_good_records_and_never_sends_the_dropped_ones(
        fleet, etcd, coredns_factory, tmp_path):
    bad = {
        "*.example.org": {"dnsName": "*.example.org", "recordType": "A", "targets": ["192.0.2.32"]},
        "neg.example.org": {"dnsName": "neg.example.org", "recordType": "A", "targets": ["192.0.2.33"],
                            "recordTTL": -5},
        "ipc.example.org": {"dnsName": "ipc.example.org", "recordType": "CNAME", "targets": ["192.0.2.34"]},
    }
    namespace = create_dnsendpoint(fleet.host.api_client(), [
        {"dnsName": "good.example.org", "recordType": "A", "targets": ["192.0.2.31"]},
        {"dnsName": "goodc.example.org", "recordType": "CNAME", "targets": ["good.example.org"]},
        *bad.values(),
    ])
    prefix = f"/rejx{uuid.uuid4().hex[:8]}/"
    coredns = coredns_factory(etcd_corefile(ZONE, etcd.endpoints, path=prefix.rstrip("/")))
    webhook = WebhookProvider(etcd.endpoints, tmp_path, domain_filter=ZONE, prefix=prefix).start()
    hook = WebhookClient(webhook.url, f"http://127.0.0.1:{webhook.health_port}")
    edns = ExternalDNS(fleet.host.kubeconfig, [
        "--source=crd", f"--namespace={namespace}", "--registry=txt", "--txt-owner-id=rej", "--policy=sync",
        "--interval=1s", "--provider=webhook", f"--webhook-provider-url={webhook.url}"], workdir=tmp_path).start()
    try:
        wait_for(lambda: dns_answers(coredns.host, coredns.port, "good.example.org", "A") == {"192.0.2.31"}, 30,
                 "the good A record answered")
        wait_for(lambda: dns_answers(coredns.host, coredns.port, "goodc.example.org", "A") == {"192.0.2.31"}, 10,
                 "the good CNAME answered")
        wait_for(lambda: hook.metrics().get(APPLIED, 0) >= 1, 10, "first apply counted")
        gets = hook.metrics()[GETS]
        wait_for(lambda: hook.metrics()[GETS] >= gets + 4, 30, "four more sync loops")

        assert edns.process is not None and edns.process.running, edns.log()[-3000:]
        metrics = hook.metrics()
        assert by_reason(metrics, REJECTED) == {}  # /adjustendpoints dropped them: none ever reached POST /records
        dropped = by_reason(metrics, DROPPED)
        assert dropped["wildcard"] >= 4 and dropped["invalid_ttl"] >= 4 and dropped["invalid_target"] >= 4
        assert not set(bad) & {name for name, _ in hook.endpoints()}
        assert dns_answers(coredns.host, coredns.port, "neg.example.org", "A") == set()
        warned = [entry["dnsName"] for entry in skip_warnings(webhook.process.log_path)]
        assert sorted(warned) == sorted(bad)  # each named once, though dropped on every loop
        assert "level=fatal" not in edns.log(), edns.log()[-3000:]
    finally:
        edns.stop()
        webhook.stop()
