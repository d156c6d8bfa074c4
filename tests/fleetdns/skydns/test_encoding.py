"""SkyDNS encoding: every record type round-trips through its etcd value, keys are deterministic, and values other
writers left (the coredns provider, garbage) read back as what they mean."""

from __future__ import annotations

import json

import pytest

from fleetdns.endpoint import ProviderSpecificProperty
from fleetdns.skydns.encoding import encode_value, key_for
from fleetdns.skydns.records import Record
from tests.support.webhook import PREFIX, endpoints_in, stored

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("record_type", "target", "fields"), [
    ("A", "192.0.2.1", {"host": "192.0.2.1"}),
    ("AAAA", "2001:db8::1", {"host": "2001:db8::1"}),
    ("CNAME", "lb.example.org", {"host": "lb.example.org"}),
    ("TXT", '"heritage=external-dns,external-dns/owner=o"', {"text": '"heritage=external-dns,external-dns/owner=o"'}),
    ("SRV", "10 5 5060 sip.example.org.", {"host": "sip.example.org", "port": 5060, "priority": 10, "weight": 5}),
    ("MX", "10 mail.example.org", {"host": "mail.example.org", "priority": 10, "mail": True}),
    ("NS", "ns-east.gslb.example.org", {"host": "ns-east.gslb.example.org"}),
])
def test_each_record_type_round_trips_through_its_skydns_value(record_type, target, fields):
    record = Record("app.example.org", record_type, target, "eu", 60, {"owner": "o"},
                    (ProviderSpecificProperty("webhook/x", "1"),))
    value = json.loads(encode_value(record))
    assert {k: value[k] for k in fields} == fields
    assert value["targetstrip"] == (0 if record_type in ("SRV", "MX", "NS") else 1)
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
