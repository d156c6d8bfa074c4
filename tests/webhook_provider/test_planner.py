"""The webhook's pure parts: encoding, decoding, planning, validation, domain filter, settings."""

from __future__ import annotations

import json

import pytest

from fleetdns.config import ConfigError
from fleetdns.endpoint import Endpoint, EndpointFormatError, ProviderSpecificProperty
from webhook_provider.changes import parse_changes
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.planner import NamePlan, batch, plan_changes
from webhook_provider.records import Record, StoredEntry, endpoints_of
from webhook_provider.settings import DEFAULT_MAX_TXN_BYTES, load_settings
from webhook_provider.skydns import decode_entry, encode_value, key_for
from webhook_provider.validation import canonical_target

pytestmark = pytest.mark.unit
PREFIX = "/skydns/"
EVERYTHING = DomainFilter()


def stored(key: str, value: dict | str, revision: int = 1) -> StoredEntry:
    raw = value if isinstance(value, str) else json.dumps(value)
    return decode_entry(PREFIX, key, raw.encode(), revision)


def apply_plans(state: dict[str, str], plans: list[NamePlan]) -> dict[str, str]:
    """What etcd holds after the plans' operations (a pure stand-in for committing them)."""
    after = dict(state)
    for plan in plans:
        for key in plan.deletes:
            after.pop(key, None)
        after.update(plan.puts)
    return after


def entries_of(state: dict[str, str]) -> list[StoredEntry]:
    return [stored(key, value) for key, value in sorted(state.items())]


def endpoints_in(state: dict[str, str]) -> list[dict]:
    records = [r for entry in entries_of(state) for r in entry.records]
    return [e.to_json() for e in endpoints_of(records)]


def changes(**lists: list[dict]) -> object:
    return parse_changes(lists, EVERYTHING)


# --- encoding and decoding ---------------------------------------------------------------------------

@pytest.mark.parametrize(("record_type", "target", "fields"), [
    ("A", "192.0.2.1", {"host": "192.0.2.1"}),
    ("AAAA", "2001:db8::1", {"host": "2001:db8::1"}),
    ("CNAME", "lb.example.org", {"host": "lb.example.org"}),
    ("TXT", '"heritage=external-dns,external-dns/owner=o"', {"text": '"heritage=external-dns,external-dns/owner=o"'}),
    ("SRV", "10 5 5060 sip.example.org.", {"host": "sip.example.org", "port": 5060, "priority": 10, "weight": 5}),
    ("MX", "10 mail.example.org", {"host": "mail.example.org", "priority": 10, "mail": True}),
])
def test_each_record_type_round_trips_through_its_skydns_value(record_type, target, fields):
    record = Record("app.example.org", record_type, target, "eu", 60, {"owner": "o"},
                    (ProviderSpecificProperty("webhook/x", "1"),))
    value = json.loads(encode_value(record))
    assert {k: value[k] for k in fields} == fields
    assert value["targetstrip"] == (0 if record_type in ("SRV", "MX") else 1)
    assert value["group"] == "app.example.org" and value["ttl"] == 60
    entry = stored(key_for(record, PREFIX), encode_value(record))
    assert entry.records == (record,)
    assert entry.records[0].labels == {"owner": "o"}


def test_txt_text_never_shares_a_value_with_a_host():
    value = json.loads(encode_value(Record("app.example.org", "TXT", "hello")))
    assert "host" not in value and value["text"] == "hello"


def test_keys_are_deterministic_per_type_set_identifier_and_target():
    a = Record("app.example.org", "A", "192.0.2.1")
    assert key_for(a, PREFIX) == key_for(Record("app.example.org", "A", "192.0.2.1", ttl=99), PREFIX)
    assert key_for(a, PREFIX).startswith("/skydns/org/example/app/")
    assert len(key_for(a, PREFIX).rsplit("/", 1)[1]) == 12
    assert key_for(a, PREFIX) != key_for(Record("app.example.org", "A", "192.0.2.2"), PREFIX)
    assert key_for(a, PREFIX) != key_for(Record("app.example.org", "A", "192.0.2.1", "eu"), PREFIX)


def test_explicit_coredns_group_replaces_the_default_group_and_round_trips():
    record = Record("app.example.org", "A", "192.0.2.1",
                    provider_specific=(ProviderSpecificProperty("coredns/group", "g1"),))
    assert json.loads(encode_value(record))["group"] == "g1"
    assert stored(key_for(record, PREFIX), encode_value(record)).records == (record,)


def test_values_written_by_the_coredns_provider_read_back_as_the_same_endpoints():
    state = {
        "/skydns/org/example/app/1a2b3c4d": json.dumps({"host": "192.0.2.1", "ttl": 60, "targetstrip": 1}),
        "/skydns/org/example/app/5e6f7a8b": json.dumps({"host": "192.0.2.2", "ttl": 60, "targetstrip": 1}),
        "/skydns/org/example/v6/00000001": json.dumps({"host": "2001:db8::1", "targetstrip": 1}),
        "/skydns/org/example/www/00000002": json.dumps({"host": "app.example.org", "targetstrip": 1,
                                                        "group": "g"}),
        "/skydns/org/example/a-app/00000003": json.dumps({"text": '"heritage=external-dns"', "targetstrip": 1}),
    }
    assert endpoints_in(state) == [
        {"dnsName": "a-app.example.org", "targets": ['"heritage=external-dns"'], "recordType": "TXT"},
        {"dnsName": "app.example.org", "targets": ["192.0.2.1", "192.0.2.2"], "recordType": "A", "recordTTL": 60},
        {"dnsName": "v6.example.org", "targets": ["2001:db8::1"], "recordType": "AAAA"},
        {"dnsName": "www.example.org", "targets": ["app.example.org"], "recordType": "CNAME",
         "providerSpecific": [{"name": "coredns/group", "value": "g"}]},
    ]


def test_a_coredns_provider_value_with_host_and_text_reads_as_two_records():
    entry = stored("/skydns/org/example/app/1a2b3c4d", {"host": "lb.example.org", "text": "hi", "targetstrip": 1})
    assert [(r.record_type, r.target) for r in entry.records] == [("CNAME", "lb.example.org"), ("TXT", "hi")]


def test_values_without_targetstrip_name_the_whole_key_and_garbage_is_ignored():
    assert stored("/skydns/org/example/app", {"host": "192.0.2.1"}).records[0].name == "app.example.org"
    assert stored("/skydns/org/example/app/x", "not json").records == ()
    assert stored("/skydns/org/example/app/x", "[1, 2]").records == ()
    assert stored("/skydns/org/exa mple/app/x", {"host": "192.0.2.1", "targetstrip": 1}).records == ()


# --- validation --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("record_type", "given", "canonical"), [
    ("A", " 192.0.2.1", "192.0.2.1"),
    ("AAAA", "2001:DB8:0::1", "2001:db8::1"),
    ("CNAME", "LB.Example.org.", "lb.example.org"),
    ("SRV", "10  5 5060 SIP.example.org", "10 5 5060 sip.example.org."),
    ("MX", "10 Mail.example.org.", "10 mail.example.org"),
    ("TXT", ' "Keep Case" ', ' "Keep Case" '),
])
def test_targets_have_one_canonical_form(record_type, given, canonical):
    assert canonical_target(record_type, given) == canonical


@pytest.mark.parametrize(("body", "path"), [
    ({"create": [{"dnsName": "a.example.org", "recordType": "A", "targets": "1.2.3.4"}]}, "create[0].targets"),
    ({"create": [{"dnsName": "a.example.org", "recordType": "A", "targets": [1]}]}, "create[0].targets[0]"),
    ({"create": {"dnsName": "a.example.org"}}, "create"),
    ({"delete": ["a.example.org"]}, "delete[0]"),
    ({"updateOld": [{"dnsName": "a.example.org", "recordType": "A", "targets": ["1.2.3.4"]}]}, "updateOld"),
    ([], "$"),
])
def test_malformed_changes_documents_are_refused_with_the_json_path_of_the_problem(body, path):
    with pytest.raises(EndpointFormatError) as error:
        parse_changes(body, EVERYTHING)
    assert error.value.path == path


@pytest.mark.parametrize(("body", "path", "reason"), [
    ({"create": [{"dnsName": "a.example.org", "recordType": "A", "targets": ["1.2.3.4", "nope"]}]},
     "create[0]", "invalid_target"),
    ({"create": [{"dnsName": "a.example.org", "recordType": "AAAA", "targets": ["192.0.2.1"]}]},
     "create[0]", "invalid_target"),
    ({"updateNew": [{"dnsName": "a.example.org", "recordType": "CNAME", "targets": ["x.org", "y.org"]}],
      "updateOld": [{"dnsName": "a.example.org", "recordType": "CNAME", "targets": ["x.org"]}]},
     "updateNew[0]", "cname_multiple_targets"),
    ({"create": [{"dnsName": "bad_name-.example.org", "recordType": "A", "targets": ["1.2.3.4"]}]},
     "create[0]", "invalid_name"),
    ({"create": [{"dnsName": "a.example.org", "recordType": "NS", "targets": ["ns.example.org"]}]},
     "create[0]", "unsupported_type"),
    ({"create": [{"dnsName": "a.example.org", "recordType": "SRV", "targets": ["10 5 sip.example.org"]}]},
     "create[0]", "invalid_target"),
    ({"create": [{"dnsName": "a.example.org", "recordType": "MX", "targets": ["99999 mail.example.org"]}]},
     "create[0]", "invalid_target"),
    ({"Create": [{"dnsName": "a.example.org", "recordType": "A", "targets": []}]}, "Create[0]", "invalid_target"),
    ({"create": [{"dnsName": "*.example.org", "recordType": "A", "targets": ["1.2.3.4"]}]}, "create[0]", "wildcard"),
    ({"create": [{"dnsName": "a.example.org", "recordType": "A", "targets": ["1.2.3.4"], "recordTTL": -5}]},
     "create[0]", "invalid_ttl"),
    ({"delete": [{"dnsName": "a-*.example.org", "recordType": "TXT", "targets": ["x"]}]}, "delete[0]",
     "invalid_name"),
])
def test_endpoints_that_cannot_be_stored_are_skipped_with_a_reason_and_the_rest_kept(body, path, reason):
    good = {"dnsName": "good.example.org", "recordType": "A", "targets": ["192.0.2.1"]}
    key = "Create" if "Create" in body else "create"
    parsed = parse_changes({**body, key: [*body.get(key, []), good]}, EVERYTHING)
    assert [(s.path, s.rejection.reason.value) for s in parsed.skipped] == [(path, reason)]
    assert [e.dns_name for e in parsed.create] == ["good.example.org"]
    assert not (parsed.update_old or parsed.update_new or parsed.delete)


_GOOD_A = {"dnsName": "good.example.org", "recordType": "A", "targets": ["192.0.2.1"]}
_LONE = "\ud800"  # a lone UTF-16 surrogate: valid as a JSON escape, no UTF-8 form


@pytest.mark.parametrize("field", [
    {"dnsName": f"a{_LONE}.example.org"},
    {"recordType": f"A{_LONE}"},
    {"setIdentifier": f"east{_LONE}"},
    {"recordType": "TXT", "targets": [f'"heritage=external-dns{_LONE}"']},
    {"labels": {f"owner{_LONE}": "x"}},
    {"labels": {"owner": f"x{_LONE}"}},
    {"providerSpecific": [{"name": f"alias{_LONE}", "value": "false"}]},
    {"providerSpecific": [{"name": "alias", "value": f"false{_LONE}"}]},
])
@pytest.mark.parametrize("where", ["create", "delete", "updateNew", "updateOld"])
def test_a_lone_surrogate_in_any_string_skips_the_endpoint_as_invalid_text(field: dict, where: str) -> None:
    bad = {**_GOOD_A, "dnsName": "bad.example.org", **field}
    body: dict[str, list[dict]] = {"create": [_GOOD_A]}
    if where.startswith("update"):
        body["updateOld"] = [bad if where == "updateOld" else {**_GOOD_A, "dnsName": "bad.example.org"}]
        body["updateNew"] = [bad if where == "updateNew" else {**_GOOD_A, "dnsName": "bad.example.org"}]
    else:
        body[where] = [*body.get(where, []), bad]
    parsed = parse_changes(body, EVERYTHING)
    (skipped,) = parsed.skipped
    assert skipped.rejection.reason.value == "invalid_text" and "\\ud800" in skipped.rejection.message
    skipped.rejection.message.encode()  # printable: it is logged and counted
    skipped.rejection.dns_name.encode()
    assert [e.dns_name for e in parsed.create] == ["good.example.org"]
    assert not (parsed.update_old or parsed.update_new or parsed.delete)


def test_both_spellings_of_changes_and_null_lists_parse_the_same():
    endpoint = {"dnsName": "A.example.org.", "recordType": "a", "targets": ["192.0.2.1"]}
    new = parse_changes({"create": [endpoint], "updateOld": [], "updateNew": None}, EVERYTHING)
    old = parse_changes({"Create": [endpoint], "UpdateOld": None, "UpdateNew": None, "Delete": None}, EVERYTHING)
    assert new == old
    assert new.create[0].dns_name == "a.example.org" and new.create[0].record_type == "A"
    assert parse_changes({}, EVERYTHING).is_empty


def test_names_outside_the_domain_filter_are_skipped_naming_the_name():
    parsed = parse_changes({"create": [{"dnsName": "evil.example.com", "recordType": "A", "targets": ["192.0.2.1"]}]},
                           DomainFilter.from_lists(["example.org"], []))
    (skipped,) = parsed.skipped
    assert parsed.is_empty and skipped.path == "create[0]" and skipped.rejection.reason.value == "domain_filter"
    assert "evil.example.com" in skipped.rejection.message


def test_deletes_accept_records_we_could_only_have_read_such_as_a_foreign_two_target_cname():
    parsed = parse_changes({"delete": [{"dnsName": "a.example.org", "recordType": "CNAME",
                                        "targets": ["X.example.org", "y.example.org"]}]}, EVERYTHING)
    assert parsed.delete[0].targets == ("x.example.org", "y.example.org")


def _weighted(name: str, record_type: str, targets: list[str], value: str, **extra: object) -> dict:
    return {"dnsName": name, "recordType": record_type, "targets": targets,
            "providerSpecific": [{"name": "alias", "value": "false"}, {"name": "webhook/weights", "value": value}],
            **extra}


@pytest.mark.parametrize(("record_type", "targets", "value", "why"), [
    ("A", ["192.0.2.1", "192.0.2.2"], "192.0.2.1=256", "outside 1-255"),
    ("A", ["192.0.2.1", "192.0.2.2"], "192.0.2.1=0", "outside 1-255"),
    ("A", ["192.0.2.1"], "192.0.2.1:5", "is not <ip>=<weight>"),
    ("A", ["192.0.2.1"], "192.0.2.9=5", "is not a target"),
    ("A", ["192.0.2.1"], "2001:db8::1=5", "is not an IPv4 address"),
    ("AAAA", ["2001:db8::1"], "2001:db8::1=5,2001:DB8::1=6", "twice"),
    ("A", ["192.0.2.1"], "", "lists no address"),
])
def test_unusable_weights_are_left_out_and_the_record_is_kept_with_its_other_properties(record_type, targets,
                                                                                           value, why):
    parsed = changes(create=[_weighted("app.example.org", record_type, targets, value)])
    (endpoint,) = parsed.create
    assert endpoint.provider_specific == (ProviderSpecificProperty("alias", "false"),)
    assert not parsed.skipped
    (trimmed,) = parsed.trimmed
    assert trimmed.path == "create[0]" and trimmed.dropped.property == "webhook/weights"
    assert why in trimmed.dropped.message


def test_usable_weights_are_stored_in_one_canonical_form_and_a_registry_copy_passes_unchanged():
    parsed = changes(create=[
        _weighted("app.example.org", "AAAA", ["2001:DB8::2", "2001:db8::1"], " 2001:DB8::2=64, 2001:db8::1=255"),
        _weighted("a-app.example.org", "TXT", ['"heritage=external-dns"'], "not weights at all"),
    ], updateOld=[_weighted("b.example.org", "A", ["192.0.2.1"], "192.0.2.1=5")],
       updateNew=[_weighted("b.example.org", "A", ["192.0.2.2"], "192.0.2.1=5")])
    aaaa, txt = parsed.create
    assert aaaa.provider_specific_value("webhook/weights") == "2001:db8::1=255,2001:db8::2=64"
    assert txt.provider_specific_value("webhook/weights") == "not weights at all"
    assert parsed.update_new[0].targets == ("192.0.2.2",)  # the update applies, without the stale weights
    assert parsed.update_new[0].provider_specific_value("webhook/weights") is None
    assert [t.path for t in parsed.trimmed] == ["updateNew[0]"]


# --- planning ----------------------------------------------------------------------------------------

A_APP = {"dnsName": "app.example.org", "recordType": "A", "targets": ["192.0.2.1", "192.0.2.2"], "recordTTL": 60,
         "labels": {"owner": "o"}}
A_X_APP = {"dnsName": "x.app.example.org", "recordType": "A", "targets": ["192.0.2.9"]}


def test_create_then_the_same_create_again_writes_nothing_more():
    plans = plan_changes([], changes(create=[A_APP, A_X_APP]), PREFIX)
    state = apply_plans({}, plans)
    assert len(state) == 5  # three record keys and the two names' name keys
    assert endpoints_in(state) == [A_APP, A_X_APP]
    assert plan_changes(entries_of(state), changes(create=[A_APP, A_X_APP]), PREFIX) == []


def test_update_rewrites_only_what_changed_and_keeps_the_name_in_one_plan():
    state = apply_plans({}, plan_changes([], changes(create=[A_APP]), PREFIX))
    new = {**A_APP, "targets": ["192.0.2.2", "192.0.2.3"]}
    plans = plan_changes(entries_of(state), changes(updateOld=[A_APP], updateNew=[new]), PREFIX)
    assert [p.name for p in plans] == ["app.example.org"]
    assert len(plans[0].puts) == 1 and len(plans[0].deletes) == 1  # 192.0.2.2 is left alone
    (after,) = endpoints_in(apply_plans(state, plans))
    assert sorted(after["targets"]) == ["192.0.2.2", "192.0.2.3"] and after["labels"] == {"owner": "o"}


def test_a_ttl_change_rewrites_the_values_in_place():
    state = apply_plans({}, plan_changes([], changes(create=[A_APP]), PREFIX))
    plans = plan_changes(entries_of(state), changes(updateOld=[A_APP], updateNew=[{**A_APP, "recordTTL": 30}]),
                         PREFIX)
    # The A name's name key holds no TTL (tests/webhook_provider/test_name_layout.py): only the records are rewritten.
    assert set(plans[0].puts) == set(state) - {"/skydns/org/example/app"} and not plans[0].deletes
    assert all(plans[0].expected[key] == 1 for key in plans[0].puts)


def test_deleting_a_name_never_touches_deeper_names_or_unnamed_records():
    state = apply_plans({}, plan_changes([], changes(create=[A_APP, A_X_APP]), PREFIX))
    state["/skydns/org/example/app/foreign1"] = json.dumps({"host": "192.0.2.77", "targetstrip": 1})
    plans = plan_changes(entries_of(state), changes(delete=[A_APP]), PREFIX)
    after = apply_plans(state, plans)
    assert {e["dnsName"]: e["targets"] for e in endpoints_in(after)} == {
        "app.example.org": ["192.0.2.77"], "x.app.example.org": ["192.0.2.9"]}


def test_updating_a_coredns_provider_record_splits_host_and_text_onto_their_own_keys():
    state = {"/skydns/org/example/app/1a2b3c4d": json.dumps({"host": "lb.example.org", "text": "hi",
                                                             "targetstrip": 1})}
    old_txt = {"dnsName": "app.example.org", "recordType": "TXT", "targets": ["hi"]}
    new_txt = {"dnsName": "app.example.org", "recordType": "TXT", "targets": ["bye"]}
    plans = plan_changes(entries_of(state), changes(updateOld=[old_txt], updateNew=[new_txt]), PREFIX)
    after = apply_plans(state, plans)
    assert "/skydns/org/example/app/1a2b3c4d" not in after
    assert all(not ("host" in json.loads(v) and "text" in json.loads(v)) for k, v in after.items()
               if k != "/skydns/org/example/app")  # a CNAME name's name key holds both on purpose (skydns.py)
    assert {(e["recordType"], e["targets"][0]) for e in endpoints_in(after)} == {("CNAME", "lb.example.org"),
                                                                                ("TXT", "bye")}


def test_a_changed_record_on_a_foreign_key_moves_to_its_own_key_in_the_same_plan():
    state = {"/skydns/org/example/app": json.dumps({"host": "192.0.2.1"})}  # no leaf, no targetstrip
    one = {"dnsName": "app.example.org", "recordType": "A", "targets": ["192.0.2.1"]}
    (plan,) = plan_changes(entries_of(state), changes(updateOld=[one], updateNew=[{**one, "recordTTL": 5}]), PREFIX)
    assert not plan.deletes and len(plan.puts) == 2  # the name key's put replaces the old key's delete
    assert endpoints_in(apply_plans(state, [plan])) == [{**one, "recordTTL": 5}]


def test_duplicate_keys_of_one_target_are_collapsed_when_that_target_is_written():
    state = {"/skydns/org/example/app/00000001": json.dumps({"host": "192.0.2.1", "targetstrip": 1}),
             "/skydns/org/example/app/00000002": json.dumps({"host": "192.0.2.1", "targetstrip": 1})}
    one = {"dnsName": "app.example.org", "recordType": "A", "targets": ["192.0.2.1"]}
    after = apply_plans(state, plan_changes(entries_of(state), changes(updateOld=[one],
                                                                       updateNew=[{**one, "recordTTL": 5}]), PREFIX))
    assert len(after) == 2  # one record key and the name key


def test_batches_hold_whole_names_and_split_an_oversized_name_puts_first():
    many = [{"dnsName": f"n{i}.example.org", "recordType": "A", "targets": ["192.0.2.1", "192.0.2.2"]}
            for i in range(10)]
    plans = plan_changes([], changes(create=many), PREFIX)
    transactions = batch(plans, max_ops=6, max_bytes=DEFAULT_MAX_TXN_BYTES)  # 2 records + name key each
    assert [len(t.names) for t in transactions] == [2, 2, 2, 2, 2]
    assert all(t.op_count <= 6 and len(t.compares) <= 6 for t in transactions)

    big = {"dnsName": "big.example.org", "recordType": "A", "targets": [f"192.0.2.{i}" for i in range(1, 8)]}
    state = apply_plans({}, plan_changes([], changes(create=[big]), PREFIX))
    replaced = {**big, "targets": [f"198.51.100.{i}" for i in range(1, 8)]}
    plans = plan_changes(entries_of(state), changes(updateOld=[big], updateNew=[replaced]), PREFIX)
    parts = batch(plans, max_ops=5, max_bytes=DEFAULT_MAX_TXN_BYTES)
    assert all(t.splits_a_name for t in parts) and len(parts) == 3
    assert parts[0].puts and not parts[0].deletes and parts[-1].deletes and not parts[-1].puts


# --- domain filter -----------------------------------------------------------------------------------

def test_domain_filter_follows_externaldns_matching_rules():
    f = DomainFilter.from_lists(["example.org", ".sub.example.net", "xn--bcher-kva.example"], ["bad.example.org"])
    assert f.match("example.org") and f.match("a.example.org") and f.match("A.Example.org.")
    assert not f.match("badexample.org") and not f.match("bad.example.org") and not f.match("x.bad.example.org")
    assert f.match("x.sub.example.net") and not f.match("sub.example.net")
    assert f.match("shop.bücher.example") and f.match("shop.xn--bcher-kva.example")
    assert f.to_json() == {"include": [".sub.example.net", "bücher.example", "example.org"],
                           "exclude": ["bad.example.org"]}
    assert DomainFilter().match("anything.at.all") and DomainFilter().to_json() == {}


def test_regex_domain_filter_and_its_negotiation_json():
    f = DomainFilter.from_regex(r"\.example\.org$", r"^internal\.")
    assert f.match("a.example.org") and not f.match("internal.example.org") and not f.match("a.example.net")
    assert f.to_json() == {"regexInclude": r"\.example\.org$", "regexExclude": r"^internal\."}


# --- settings ----------------------------------------------------------------------------------------

def test_settings_read_flags_and_the_issue_s_environment_variables(monkeypatch):
    env = {"ETCD_URLS": "http://10.0.0.1:2379,http://10.0.0.2:2379", "WEBHOOK_PREFIX": "/gslb",
           "DOMAIN_FILTER": "example.org,example.net"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings([], env)
    assert [e.url for e in settings.etcd.endpoints] == ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    assert settings.prefix == "/gslb/" and settings.domain_filter.include == ("example.net", "example.org")
    assert settings.listen == ("127.0.0.1", 8888) and settings.health_listen == ("0.0.0.0", 8080)


@pytest.mark.parametrize(("argv", "env", "flag"), [
    (["--etcd-endpoints=ftp://x:1"], {}, "--etcd-endpoints"),
    (["--listen=nope"], {}, "--listen"),
    (["--prefix=skydns"], {}, "--prefix"),
    (["--domain-filter=example.org", "--regex-domain-filter=x"], {}, "--regex-domain-filter"),
    (["--regex-domain-filter=("], {}, "--regex-domain-filter"),
    (["--max-request-bytes=0"], {}, "--max-request-bytes"),
    (["--etcd-endpoints=https://127.0.0.1:2379"], {"ETCD_TLS_INSECURE": "true"}, "ETCD_TLS_INSECURE"),
    ([], {"ETCD_USERNAME": "root"}, "ETCD_USERNAME"),
    (["--etcd-endpoints=https://127.0.0.1:2379"], {"ETCD_CA_FILE": "/no/such/ca.pem"}, "ETCD_CA_FILE"),
])
def test_invalid_configuration_names_the_flag_and_the_value(argv, env, flag):
    with pytest.raises(ConfigError) as error:
        load_settings(argv, env)
    assert error.value.flag == flag


def test_endpoints_of_groups_by_name_type_and_set_identifier():
    records = [Record("a.example.org", "A", "192.0.2.1", "eu"), Record("a.example.org", "A", "192.0.2.2", "us"),
               Record("a.example.org", "A", "192.0.2.3", "eu")]
    assert [(e.set_identifier, e.targets) for e in endpoints_of(records)] == [
        ("eu", ("192.0.2.1", "192.0.2.3")), ("us", ("192.0.2.2",))]
    assert isinstance(endpoints_of(records)[0], Endpoint)
