"""Names that exist never answer NXDOMAIN: every name with records has a name key (fleetdns/skydns/encoding.py).

Real etcd, the real webhook process and real CoreDNS (etcd plugin) for the answers; the planner's name-key
rules as pure unit tests. Stock CoreDNS answers CNAME-type queries only from the key exactly at the name,
and without one says NXDOMAIN, which a resolver may cache for the whole name (RFC 2308).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pyetcd
import pytest

from fleetdns.skydns.encoding import NAME_KEY_TEXT
from fleetdns.skydns.settings import DEFAULT_MAX_TXN_BYTES
from rig import CoreDNS
from rig.coredns import etcd_corefile
from rig.region import WebhookProvider
from rig.waiting import wait_for
from tests.support.webhook import PREFIX, apply_plans, entries_of, planned
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.planner import batch, plan_name_keys

ZONE = "example.org"
QTYPES = ("A", "AAAA", "CNAME", "TXT", "MX", "SRV")
NONE: frozenset[str] = frozenset()


def ep(name: str, record_type: str, *targets: str, **extra: object) -> dict:
    return {"dnsName": name, "recordType": record_type, "targets": list(targets), **extra}



class Stack:
    """etcd prefix + webhook + CoreDNS serving that prefix for example.org."""

    def __init__(self, etcd_url: str, prefix: str, coredns: CoreDNS, webhook: WebhookProvider | None) -> None:
        self.prefix, self.coredns, self.webhook = prefix, coredns, webhook
        self.kv = pyetcd.client(*etcd_url.removeprefix("http://").split(":"))

    def apply(self, **changes: list[dict]) -> None:
        assert self.webhook is not None
        response = self.webhook.client.apply(changes)
        assert response.status_code == 204, response.text

    def ask(self, name: str, qtype: str) -> tuple[str, frozenset[str]]:
        """(rcode, {"TYPE rdata", ...}) of CoreDNS's answer section."""
        response = dns.query.udp(dns.message.make_query(name, qtype), self.coredns.host, port=self.coredns.port,
                                 timeout=2)
        answers = frozenset(f"{dns.rdatatype.to_text(rrset.rdtype)} {rr.to_text()}"
                            for rrset in response.answer for rr in rrset)
        return dns.rcode.to_text(response.rcode()), answers

    def keys(self, below: str) -> dict[str, tuple[bytes, int]]:
        """{key: (value, mod revision)} of every key starting with ``prefix + below``."""
        return {meta.key.decode(): (value, meta.mod_revision)
                for value, meta in self.kv.get_prefix(self.prefix + below)}


def start_stack(etcd, workdir: Path, prefix: str, with_webhook: bool = True) -> Stack:
    coredns = CoreDNS(etcd_corefile(ZONE, etcd.endpoints, path=prefix.rstrip("/")), workdir / "coredns").start()
    webhook = WebhookProvider(etcd.endpoints, workdir, domain_filter=ZONE, prefix=prefix).start() \
        if with_webhook else None
    return Stack(etcd.url, prefix, coredns, webhook)


@pytest.fixture(scope="module")
def stack(etcd, tmp_path_factory) -> Iterator[Stack]:
    running = start_stack(etcd, tmp_path_factory.mktemp("name-layout"), f"/nk{uuid.uuid4().hex[:8]}/")
    yield running
    running.coredns.stop()
    assert running.webhook is not None
    running.webhook.stop()


# --- every kind of name × every query type, against real CoreDNS ---------------------------------------

# One name per kind. Stock CoreDNS (v1.15 etcd plugin) answers a few types with more than the name holds;
# each is marked STOCK and explained in webhook_provider/README.md ("What CoreDNS answers"):
# - SRV: every key with a host is a SkyDNS service, so an SRV query on any such name synthesizes SRV
#   records (port 0; target = the name for addresses, else the host minus `targetstrip` labels);
# - A/AAAA/TXT on MX and SRV names: a host that is a name reads as a CNAME (only MX queries check `mail`);
# - A CNAME is chased inside the zone: the CNAME plus the target's records, or nothing at all when the
#   target has none of that type; outside the zone CoreDNS answers the CNAME alone (no upstream here).
KINDS: dict[str, list[dict]] = {
    "a": [ep("a.example.org", "A", "192.0.2.1")],
    "aaaa": [ep("aaaa.example.org", "AAAA", "2001:db8::1")],
    "dual": [ep("dual.example.org", "A", "192.0.2.2"), ep("dual.example.org", "AAAA", "2001:db8::2")],
    "cname": [ep("cname.example.org", "CNAME", "a.example.org", recordTTL=42)],
    "cname-out": [ep("cname-out.example.org", "CNAME", "lb.example.net")],
    "txt": [ep("txt.example.org", "TXT", "hello")],
    "mx": [ep("mx.example.org", "MX", "10 mail.example.net")],
    "srv": [ep("_sip._tcp.example.org", "SRV", "10 5 5060 sip.example.net")],
    "a+txt": [ep("atxt.example.org", "A", "192.0.2.3"), ep("atxt.example.org", "TXT", "note")],
    "cname+txt": [ep("ctxt.example.org", "CNAME", "a.example.org"), ep("ctxt.example.org", "TXT", "hi")],
}
EXPECTED: dict[str, dict[str, frozenset[str]]] = {
    "a": {"A": frozenset({"A 192.0.2.1"}), "SRV": frozenset({"SRV 10 100 0 a.example.org."})},  # SRV: STOCK
    "aaaa": {"AAAA": frozenset({"AAAA 2001:db8::1"}), "SRV": frozenset({"SRV 10 100 0 aaaa.example.org."})},
    "dual": {"A": frozenset({"A 192.0.2.2"}), "AAAA": frozenset({"AAAA 2001:db8::2"}),
             "SRV": frozenset({"SRV 10 50 0 dual.example.org."})},
    "cname": {"A": frozenset({"CNAME a.example.org.", "A 192.0.2.1"}), "CNAME": frozenset({"CNAME a.example.org."}),
              "SRV": frozenset({"SRV 10 100 0 example.org."})},
    "cname-out": {"A": frozenset({"CNAME lb.example.net."}), "AAAA": frozenset({"CNAME lb.example.net."}),
                  "CNAME": frozenset({"CNAME lb.example.net."}), "TXT": frozenset({"CNAME lb.example.net."}),
                  "SRV": frozenset({"SRV 10 100 0 example.net."})},
    "txt": {"TXT": frozenset({'TXT "hello"'})},
    "mx": {"MX": frozenset({"MX 10 mail.example.net."}), "A": frozenset({"CNAME mail.example.net."}),
           "AAAA": frozenset({"CNAME mail.example.net."}), "TXT": frozenset({"CNAME mail.example.net."}),
           "SRV": frozenset({"SRV 10 100 0 mail.example.net."})},
    "srv": {"SRV": frozenset({"SRV 10 100 5060 sip.example.net."}), "A": frozenset({"CNAME sip.example.net."}),
            "AAAA": frozenset({"CNAME sip.example.net."}), "TXT": frozenset({"CNAME sip.example.net."})},
    "a+txt": {"A": frozenset({"A 192.0.2.3"}), "TXT": frozenset({'TXT "note"'}),
              "SRV": frozenset({"SRV 10 100 0 atxt.example.org."})},
    "cname+txt": {"A": frozenset({"CNAME a.example.org.", "A 192.0.2.1"}),
                  "CNAME": frozenset({"CNAME a.example.org."}), "TXT": frozenset({'TXT "hi"'}),
                  "SRV": frozenset({"SRV 10 100 0 example.org."})},
}


def matrix(stack: Stack) -> dict[tuple[str, str], tuple[str, frozenset[str]]]:
    return {(kind, qtype): stack.ask(endpoints[0]["dnsName"], qtype)
            for kind, endpoints in KINDS.items() for qtype in QTYPES}


@pytest.mark.etcd
@pytest.mark.coredns
def test_every_kind_of_name_answers_every_query_type_without_nxdomain(stack):
    stack.apply(create=[endpoint for endpoints in KINDS.values() for endpoint in endpoints])
    observed = matrix(stack)
    wrong = {f"{kind} {qtype}": got for (kind, qtype), got in observed.items()
             if got != ("NOERROR", EXPECTED[kind].get(qtype, NONE))}
    table = "\n".join(f"{kind:10} {qtype:5} {rcode:8} {sorted(answers)}"
                      for (kind, qtype), (rcode, answers) in observed.items())
    assert not wrong, f"unexpected answers {wrong}\nfull matrix:\n{table}"
    # The CNAME's own TTL, not CoreDNS's default 300, also for CNAME-type queries.
    response = dns.query.udp(dns.message.make_query("cname.example.org", "CNAME"), stack.coredns.host,
                             port=stack.coredns.port, timeout=2)
    assert [rrset.ttl for rrset in response.answer] == [42]


@pytest.mark.etcd
@pytest.mark.coredns
def test_a_cname_name_key_changes_nothing_of_its_parent_but_one_txt_string(stack):
    """The parent's own keys and its CNAME child's name key share a level of the parent's prefix range."""
    stack.apply(create=[ep("parent.example.org", "A", "192.0.2.50"), ep("parent.example.org", "TXT", "ptext"),
                        ep("c.parent.example.org", "CNAME", "a.example.org"),
                        ep("d.parent.example.org", "A", "192.0.2.51"),
                        ep("a.example.org", "A", "192.0.2.1")])
    assert stack.ask("parent.example.org", "A") == ("NOERROR", {"A 192.0.2.50"})  # no CNAME, no d's address
    assert stack.ask("parent.example.org", "AAAA") == ("NOERROR", NONE)
    assert stack.ask("parent.example.org", "MX") == ("NOERROR", NONE)
    # CoreDNS's synthesized SRV (STOCK) keeps weight 100: priority -1 keeps the name key out of the weight sum.
    assert stack.ask("parent.example.org", "SRV") == ("NOERROR", {"SRV 10 100 0 parent.example.org."})
    # The one thing no value at the exact key can avoid (README, "etcd layout"): the parent's TXT answer.
    assert stack.ask("parent.example.org", "TXT") == ("NOERROR", {'TXT "ptext"', f'TXT "{NAME_KEY_TEXT}"'})
    assert stack.ask("c.parent.example.org", "CNAME") == ("NOERROR", {"CNAME a.example.org."})
    assert stack.ask("c.parent.example.org", "A") == ("NOERROR", {"CNAME a.example.org.", "A 192.0.2.1"})
    assert stack.ask("d.parent.example.org", "A") == ("NOERROR", {"A 192.0.2.51"})
    assert stack.ask("d.parent.example.org", "CNAME") == ("NOERROR", NONE)


@pytest.mark.etcd
@pytest.mark.coredns
def test_an_empty_non_terminal_has_no_name_key_so_only_cname_queries_still_get_nxdomain(stack):
    """A documented limit (README): names without records of their own get no name key."""
    stack.apply(create=[ep("x.ent.example.org", "CNAME", "a.example.org"), ep("y.ent.example.org", "A", "192.0.2.61"),
                        ep("a.example.org", "A", "192.0.2.1")])
    assert stack.ask("ent.example.org", "A") == ("NOERROR", NONE)  # x's name key sets the group on that level
    assert stack.ask("ent.example.org", "CNAME")[0] == "NXDOMAIN"


@pytest.mark.etcd
@pytest.mark.coredns
def test_name_keys_follow_updates_and_go_with_the_last_record(stack):
    stack.apply(create=[ep("flip.example.org", "CNAME", "a.example.org"), ep("a.example.org", "A", "192.0.2.1"),
                        ep("b.example.org", "A", "192.0.2.4")])
    assert stack.ask("flip.example.org", "CNAME") == ("NOERROR", {"CNAME a.example.org."})
    stack.apply(updateOld=[ep("flip.example.org", "CNAME", "a.example.org")],
                updateNew=[ep("flip.example.org", "CNAME", "b.example.org")])
    assert stack.ask("flip.example.org", "CNAME") == ("NOERROR", {"CNAME b.example.org."})
    stack.apply(delete=[ep("flip.example.org", "CNAME", "b.example.org")],
                create=[ep("flip.example.org", "A", "192.0.2.5")])
    assert stack.ask("flip.example.org", "CNAME") == ("NOERROR", NONE)
    assert stack.ask("flip.example.org", "A") == ("NOERROR", {"A 192.0.2.5"})
    stack.apply(delete=[ep("flip.example.org", "A", "192.0.2.5")])
    for qtype in QTYPES:  # a deleted name is gone for every type: no name key left behind
        assert stack.ask("flip.example.org", qtype)[0] == "NXDOMAIN", qtype
    assert stack.keys("org/example/flip") == {}


# --- names written before name keys existed (or by the coredns provider) get them at start --------------

def coredns_provider_value(**fields: object) -> str:
    """A value as ExternalDNS's coredns provider writes it (random 8-hex leaf, targetstrip 1, no group)."""
    return json.dumps({**fields, "targetstrip": 1})


REPAIRED = "fleetdns_webhook_name_keys_repaired"  # -1 until the repair pass at start completed


def repaired(webhook: WebhookProvider) -> float:
    return webhook.client.metrics()[REPAIRED]


@pytest.mark.etcd
@pytest.mark.coredns
def test_a_start_gives_existing_names_their_name_keys_once_and_touches_nothing_else(etcd, tmp_path):
    prefix = f"/nk{uuid.uuid4().hex[:8]}/"
    stack = start_stack(etcd, tmp_path / "first", prefix, with_webhook=False)
    try:
        put = stack.kv.put
        put(prefix + "org/example/old-a/1a2b3c4d", coredns_provider_value(host="192.0.2.70"))
        put(prefix + "org/example/old-c/5e6f7a8b", coredns_provider_value(host="old-a.example.org"))
        put(prefix + "org/example/old-t/0badcafe", coredns_provider_value(text='"heritage=external-dns"'))
        put(prefix + "org/example/exact", json.dumps({"host": "192.0.2.71"}))  # someone's key without a leaf
        put(prefix + "net/other/x/1234abcd", coredns_provider_value(host="192.0.2.72"))  # outside the filter
        put(prefix + "org/example/orphan", json.dumps({"nameKey": "orphan.example.org"}))  # ours, no records
        untouched = {key: stack.keys(key) for key in ("org/example/exact", "net/other")}
        for name in ("old-a", "old-c", "old-t"):  # the control: what today's keys answer
            assert stack.ask(f"{name}.example.org", "CNAME")[0] == "NXDOMAIN"

        stack.webhook = WebhookProvider(etcd.endpoints, tmp_path / "first", domain_filter=ZONE, prefix=prefix).start()
        wait_for(lambda: repaired(stack.webhook) >= 0, 20, "the repair pass")
        assert repaired(stack.webhook) == 4  # old-a, old-c, old-t, orphan
        assert stack.ask("old-c.example.org", "CNAME") == ("NOERROR", {"CNAME old-a.example.org."})
        assert stack.ask("old-c.example.org", "A") == ("NOERROR", {"CNAME old-a.example.org.", "A 192.0.2.70"})
        assert stack.ask("old-a.example.org", "CNAME") == ("NOERROR", NONE)
        assert stack.ask("old-a.example.org", "A") == ("NOERROR", {"A 192.0.2.70"})
        assert stack.ask("old-t.example.org", "CNAME") == ("NOERROR", NONE)
        assert stack.ask("orphan.example.org", "CNAME")[0] == "NXDOMAIN"
        assert {key: stack.keys(key) for key in untouched} == untouched
        assert stack.webhook.client.endpoints().keys() == {  # name keys are no records
            ("old-a.example.org", "A"), ("old-c.example.org", "CNAME"), ("old-t.example.org", "TXT"),
            ("exact.example.org", "A")}
        stack.webhook.stop()
        stack.webhook = None

        before = stack.keys("")
        again = WebhookProvider(etcd.endpoints, tmp_path / "second", domain_filter=ZONE, prefix=prefix).start()
        try:
            wait_for(lambda: repaired(again) >= 0, 20, "the second repair pass")
            assert repaired(again) == 0
            assert stack.keys("") == before  # idempotent: not one key rewritten
        finally:
            again.stop()
    finally:
        stack.coredns.stop()
        if stack.webhook is not None:
            stack.webhook.stop()


# --- the planner's name-key rules (pure) ---------------------------------------------------------------

@pytest.mark.unit
def test_a_name_key_is_written_first_in_the_same_plan_as_the_records():
    (app, www) = planned({}, create=[ep("app.example.org", "A", "192.0.2.1"),
                                     ep("www.example.org", "CNAME", "app.example.org", recordTTL=30)])
    assert next(iter(app.puts)) == "/skydns/org/example/app"
    assert json.loads(app.puts["/skydns/org/example/app"]) == {"nameKey": "app.example.org"}
    assert next(iter(www.puts)) == "/skydns/org/example/www"
    assert json.loads(www.puts["/skydns/org/example/www"]) == {
        "host": "app.example.org", "text": NAME_KEY_TEXT, "priority": -1, "ttl": 30, "targetstrip": 3,
        "group": "example.org", "nameKey": "www.example.org"}
    assert all(plan.expected["/skydns/org/example/" + plan.name.split(".")[0]] == 0 for plan in (app, www))


@pytest.mark.unit
def test_a_name_key_reads_back_as_no_record_and_is_only_ours_where_we_write_it():
    (plan,) = planned({}, create=[ep("www.example.org", "CNAME", "app.example.org")])
    entries = entries_of(plan.puts)
    assert [(e.key, e.name_key_of, e.records) for e in entries if not e.records] == [
        ("/skydns/org/example/www", "www.example.org", ())]
    assert [r.record_type for e in entries for r in e.records] == ["CNAME"]
    (elsewhere,) = entries_of({"/skydns/org/example/other": plan.puts["/skydns/org/example/www"]})
    assert elsewhere.name_key_of is None and elsewhere.records == ()


@pytest.mark.unit
def test_a_name_key_follows_the_cname_and_goes_only_with_the_last_record():
    state = apply_plans({}, planned({}, create=[ep("app.example.org", "CNAME", "a.example.org"),
                                          ep("app.example.org", "TXT", "note")]))
    assert planned(state, create=[ep("app.example.org", "CNAME", "a.example.org")]) == []  # nothing to do
    (flip,) = planned(state, delete=[ep("app.example.org", "CNAME", "a.example.org")],
                      create=[ep("app.example.org", "A", "192.0.2.1")])
    assert json.loads(flip.puts["/skydns/org/example/app"]) == {"nameKey": "app.example.org"}
    state = apply_plans(state, [flip])
    (partial,) = planned(state, delete=[ep("app.example.org", "A", "192.0.2.1")])
    assert "/skydns/org/example/app" not in partial.deletes  # the TXT record is still there
    (last,) = planned(apply_plans(state, [partial]), delete=[ep("app.example.org", "TXT", "note")])
    assert list(last.deletes)[-1] == "/skydns/org/example/app"
    assert apply_plans(apply_plans(state, [partial]), [last]) == {}


@pytest.mark.unit
def test_a_foreign_key_exactly_at_the_name_is_never_overwritten_until_its_record_moves_off_it():
    state = {"/skydns/org/example/app": json.dumps({"host": "192.0.2.1"})}  # no leaf: it answers exact lookups
    (plan,) = planned(state, create=[ep("app.example.org", "A", "192.0.2.2")])
    assert "/skydns/org/example/app" not in plan.puts and not plan.deletes
    (moved,) = planned(state, updateOld=[ep("app.example.org", "A", "192.0.2.1")],
                       updateNew=[ep("app.example.org", "A", "192.0.2.1", recordTTL=5)])
    assert json.loads(moved.puts["/skydns/org/example/app"]) == {"nameKey": "app.example.org"}
    assert not moved.deletes  # the name key's put replaces the old key's delete (one op per key)
    junk = {"/skydns/org/example/app": "not json", "/skydns/org/example/app/1a2b3c4d": json.dumps(
        {"host": "192.0.2.1", "targetstrip": 1})}
    (kept,) = planned(junk, create=[ep("app.example.org", "A", "192.0.2.2")])
    assert "/skydns/org/example/app" not in kept.puts


@pytest.mark.unit
def test_a_name_split_over_transactions_gets_its_name_key_in_the_first_and_loses_it_in_the_last():
    big = ep("big.example.org", "A", *(f"192.0.2.{i}" for i in range(1, 8)))
    (create,) = planned({}, create=[big])
    parts = batch([create], max_ops=5, max_bytes=DEFAULT_MAX_TXN_BYTES)
    assert parts[0].puts[0][0] == "/skydns/org/example/big"
    parts = batch(planned(apply_plans({}, [create]), delete=[big]), max_ops=5, max_bytes=DEFAULT_MAX_TXN_BYTES)
    assert parts[-1].deletes[-1] == "/skydns/org/example/big"


@pytest.mark.unit
def test_the_repair_pass_adds_missing_keys_fixes_stale_ones_drops_orphans_and_is_idempotent():
    state = {
        "/skydns/org/example/old-a/1a2b3c4d": coredns_provider_value(host="192.0.2.70"),
        "/skydns/org/example/old-c/5e6f7a8b": coredns_provider_value(host="old-a.example.org"),
        "/skydns/org/example/stale": json.dumps({"nameKey": "stale.example.org"}),  # a CNAME name's, out of date
        "/skydns/org/example/stale/00000001": coredns_provider_value(host="lb.example.net"),
        "/skydns/org/example/orphan": json.dumps({"nameKey": "orphan.example.org"}),
        "/skydns/org/example/exact": json.dumps({"host": "192.0.2.71"}),
        "/skydns/net/other/x/1234abcd": coredns_provider_value(host="192.0.2.72"),
    }
    serves = DomainFilter.from_lists(["example.org"], []).match
    plans = plan_name_keys(entries_of(state), PREFIX, serves)
    assert {plan.name: (sorted(plan.puts), list(plan.deletes)) for plan in plans} == {
        "old-a.example.org": (["/skydns/org/example/old-a"], []),
        "old-c.example.org": (["/skydns/org/example/old-c"], []),
        "stale.example.org": (["/skydns/org/example/stale"], []),
        "orphan.example.org": ([], ["/skydns/org/example/orphan"]),
    }
    assert json.loads(apply_plans(state, plans)["/skydns/org/example/old-c"])["host"] == "old-a.example.org"
    assert all(plan.expected == {key: (1 if key in state else 0) for key in (*plan.puts, *plan.deletes)}
               for plan in plans)
    assert plan_name_keys(entries_of(apply_plans(state, plans)), PREFIX, serves) == []
