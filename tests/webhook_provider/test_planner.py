"""The planner: what a change writes and deletes per name (nothing for a repeat, in place for a TTL, never a deeper
name), records moved off foreign keys, and batches that hold whole names."""

from __future__ import annotations

import json

import pytest

from tests.support.webhook import PREFIX, apply_plans, changes, endpoints_in, entries_of
from webhook_provider.planner import batch, plan_changes
from webhook_provider.settings import DEFAULT_MAX_TXN_BYTES

pytestmark = pytest.mark.unit


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
