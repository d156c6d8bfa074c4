"""A Domain's delegation, pure: spec.delegation read and checked, each nameserver's addresses (current, else the last
published, never an empty NS set), the Delegated condition, and the two DNSEndpoints rendered."""

from __future__ import annotations

import pytest

from aggregator.model import Delegation, Nameserver, ObjectRef, parse_domain, parse_owner_references
from aggregator.render.delegation import (
    ADDRESSES_KEPT,
    NOTHING_TO_PUBLISH,
    PUBLISHED,
    Seen,
    delegation_event,
    is_ours,
    parent_records,
    plan_delegation,
    published_glue,
    render_delegation_endpoints,
    zone_records,
)

pytestmark = pytest.mark.unit
ZONE = "gslb.example.com"
SERVICE = "fleetdns-system/fleetdns-coredns"


def domain(delegation: object, name: str = "gslb") -> dict:
    return {"metadata": {"name": name, "namespace": "fleetdns-system", "uid": "u-1", "generation": 3},
            "spec": {"domain": ZONE, "delegation": delegation}}


def test_spec_delegation_is_read_with_member_services_fixed_addresses_ttl_and_labels():
    parsed = parse_domain(domain({"ttl": 600, "labels": {"dns.example.com/zone": "public"}, "nameservers": [
        {"name": "ns-east", "member": "east", "service": SERVICE},
        {"name": "ns-x", "addresses": ["2001:DB8::53", "192.0.2.53", "192.0.2.53"]}]}))
    assert parsed.delegation == Delegation(
        (Nameserver("ns-east", "east", ObjectRef("fleetdns-system", "fleetdns-coredns")),
         Nameserver("ns-x", addresses=("2001:db8::53", "192.0.2.53"))),
        600, (("dns.example.com/zone", "public"),))
    assert parsed.delegation_problem == "" and parsed.uid == "u-1" and parsed.generation == 3
    assert parse_domain({"metadata": {"name": "d"}, "spec": {"domain": ZONE}}).delegation is None


@pytest.mark.parametrize(("delegation", "message"), [
    ({"nameservers": []}, "spec.delegation.nameservers must list at least one nameserver"),
    ({"nameservers": [{"name": "NS_1", "addresses": ["192.0.2.1"]}]},
     "spec.delegation.nameservers[0].name must be a DNS label"),
    ({"nameservers": [{"name": "ns1"}]}, "spec.delegation.nameservers[0] (ns1) needs member and service, or addresses"),
    ({"nameservers": [{"name": "ns1", "member": "east", "service": SERVICE, "addresses": ["192.0.2.1"]}]},
     "not both, not neither"),
    ({"nameservers": [{"name": "ns1", "member": "east"}]}, "spec.delegation.nameservers[0].service must be namespace/"),
    ({"nameservers": [{"name": "ns1", "addresses": ["192.0.2.300"]}]}, "'192.0.2.300' is not an IPv4 or IPv6"),
    ({"nameservers": [{"name": "ns1", "addresses": ["192.0.2.1"]}, {"name": "ns1", "member": "e", "service": SERVICE}]},
     "lists 'ns1' twice"),
    ({"ttl": 0, "nameservers": [{"name": "ns1", "addresses": ["192.0.2.1"]}]}, "spec.delegation.ttl must be"),
])
def test_a_bad_delegation_is_reported_with_the_field_and_the_domain_keeps_its_other_rules(delegation, message):
    parsed = parse_domain(domain(delegation))
    assert parsed.delegation is None and message in parsed.delegation_problem
    assert parsed.delegated and parsed.domain == ZONE


DELEGATION = Delegation((Nameserver("ns-east", "east", ObjectRef("fleetdns-system", "fleetdns-coredns")),
                         Nameserver("ns-west", "west", ObjectRef("fleetdns-system", "fleetdns-coredns")),
                         Nameserver("ns-x", addresses=("192.0.2.99",))), 300)


def test_every_nameserver_with_its_current_addresses_is_published():
    plan = plan_delegation(ZONE, DELEGATION, {"ns-east": Seen(("2001:db8::1", "192.0.2.1")),
                                              "ns-west": Seen(("192.0.2.2",))}, {})
    assert plan.condition.status == "True" and plan.condition.reason == PUBLISHED
    assert plan.condition.message == (f"{ZONE} is delegated to ns-east.{ZONE} 192.0.2.1, 2001:db8::1; "
                                      f"ns-west.{ZONE} 192.0.2.2; ns-x.{ZONE} 192.0.2.99")
    assert [e.to_json() for e in parent_records(plan)] == [
        {"dnsName": ZONE, "recordType": "NS", "targets": [f"ns-east.{ZONE}", f"ns-west.{ZONE}", f"ns-x.{ZONE}"],
         "recordTTL": 300},
        {"dnsName": f"ns-east.{ZONE}", "recordType": "A", "targets": ["192.0.2.1"], "recordTTL": 300},
        {"dnsName": f"ns-east.{ZONE}", "recordType": "AAAA", "targets": ["2001:db8::1"], "recordTTL": 300},
        {"dnsName": f"ns-west.{ZONE}", "recordType": "A", "targets": ["192.0.2.2"], "recordTTL": 300},
        {"dnsName": f"ns-x.{ZONE}", "recordType": "A", "targets": ["192.0.2.99"], "recordTTL": 300}]
    marked = [{"name": "webhook/nameserver", "value": "true"}]
    assert [e.to_json() for e in zone_records(plan)][:1] == [
        {"dnsName": f"ns-east.{ZONE}", "recordType": "A", "targets": ["192.0.2.1"], "recordTTL": 300,
         "providerSpecific": marked}]
    assert all(e.record_type != "NS" for e in zone_records(plan))


def test_a_nameserver_without_an_address_keeps_the_last_published_and_the_condition_names_it():
    published = {f"ns-east.{ZONE}": ("192.0.2.1",), f"ns-west.{ZONE}": ("192.0.2.2",)}
    plan = plan_delegation(ZONE, DELEGATION, {"ns-east": Seen(("192.0.2.11",)),
                                              "ns-west": Seen(problem="Service has no load-balancer address")},
                           published)
    assert dict(plan.glue) == {f"ns-east.{ZONE}": ("192.0.2.11",), f"ns-west.{ZONE}": ("192.0.2.2",),
                               f"ns-x.{ZONE}": ("192.0.2.99",)}
    assert plan.condition.status == "False" and plan.condition.reason == ADDRESSES_KEPT
    assert plan.condition.message == (f"ns-west.{ZONE} keeps its last published addresses (192.0.2.2): "
                                      "Service has no load-balancer address")


def test_a_nameserver_that_never_had_an_address_is_left_out_and_none_at_all_writes_nothing():
    plan = plan_delegation(ZONE, DELEGATION, {"ns-east": Seen(("192.0.2.1",))}, {})
    assert sorted(plan.glue) == [f"ns-east.{ZONE}", f"ns-x.{ZONE}"]
    assert f"ns-west.{ZONE} is left out of the NS set (no address published yet): not observed yet" in \
        plan.condition.message
    only_watched = Delegation(DELEGATION.nameservers[:2])
    cold = plan_delegation(ZONE, only_watched, {}, {})
    assert cold.glue == {} and cold.condition.reason == NOTHING_TO_PUBLISH
    assert cold.condition.message.startswith(f"nothing is published for {ZONE} (an NS set is never emptied)")
    # a cold cache after a restart keeps what the existing DNSEndpoint says
    kept = plan_delegation(ZONE, only_watched, {}, published_glue([
        {"dnsName": ZONE, "recordType": "NS", "targets": [f"ns-east.{ZONE}"]},
        {"dnsName": f"NS-East.{ZONE}.", "recordType": "A", "targets": ["192.0.2.1"]}]))
    assert dict(kept.glue) == {f"ns-east.{ZONE}": ("192.0.2.1",)} and kept.condition.reason == ADDRESSES_KEPT


def test_the_dnsendpoints_are_owned_by_the_domain_and_labelled_for_the_parent_and_the_zone():
    parsed = parse_domain(domain({"labels": {"team": "dns"},
                                  "nameservers": [{"name": "ns1", "addresses": ["192.0.2.1"]}]}))
    assert parsed.delegation is not None
    parent, zone = render_delegation_endpoints(parsed, plan_delegation(ZONE, parsed.delegation, {}, {}))
    assert parent["metadata"]["name"] == "fleetdns-delegation-gslb"
    assert parent["metadata"]["labels"] == {
        "team": "dns", "fleetdns.io/publish": "parent", "fleetdns.io/domain": "gslb"}
    assert zone["metadata"]["name"] == "fleetdns-nameservers-gslb"
    assert zone["metadata"]["labels"] == {"fleetdns.io/publish": "zone", "fleetdns.io/domain": "gslb"}
    owner = parent["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("Domain", "gslb", "u-1", True)
    assert is_ours(parent["metadata"]["labels"], parse_owner_references([owner]), "gslb")
    assert not is_ours(parent["metadata"]["labels"], (), "gslb")
    assert not is_ours({"fleetdns.io/domain": "gslb"}, parse_owner_references([owner]), "gslb")


def test_an_event_is_made_when_the_condition_or_its_addresses_change():
    plan = plan_delegation(ZONE, DELEGATION, {"ns-east": Seen(("192.0.2.1",)), "ns-west": Seen(("192.0.2.2",))}, {})
    first = delegation_event(None, plan.condition)
    assert first is not None and first.type == "Normal" and first.reason == PUBLISHED
    assert delegation_event(plan.condition, plan.condition) is None
    moved = plan_delegation(ZONE, DELEGATION, {"ns-east": Seen(("192.0.2.7",)), "ns-west": Seen(("192.0.2.2",))}, {})
    assert delegation_event(plan.condition, moved.condition) is not None
    lost = plan_delegation(ZONE, DELEGATION, {"ns-east": Seen(problem="gone")}, dict(plan.glue))
    event = delegation_event(moved.condition, lost.condition)
    assert event is not None and event.type == "Warning" and event.reason == ADDRESSES_KEPT
