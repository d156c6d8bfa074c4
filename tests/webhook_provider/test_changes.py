"""The changes document as the webhook parses it: malformed ones refused with the JSON path, endpoints that cannot be
stored skipped with a reason, the domain filter, deletes of what we could only have read, and weights kept or left
out."""

from __future__ import annotations

import pytest

from fleetdns.endpoint import EndpointFormatError, ProviderSpecificProperty
from tests.support.webhook import EVERYTHING, changes
from webhook_provider.changes import parse_changes
from webhook_provider.domain_filter import DomainFilter

pytestmark = pytest.mark.unit


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
    ({"create": [{"dnsName": "a.example.org", "recordType": "NAPTR", "targets": ["ns.example.org"]}]},
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
