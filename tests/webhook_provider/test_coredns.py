"""After each apply through the webhook, real CoreDNS (etcd plugin) answers exactly the expected records."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pyetcd
import pytest

from rig import CoreDNS
from rig.coredns import dns_answers, etcd_corefile
from rig.region import WebhookProvider
from rig.webhook_client import WebhookClient

pytestmark = [pytest.mark.etcd, pytest.mark.coredns]
ZONE = "example.org"


class Stack:
    def __init__(self, client: WebhookClient, coredns: CoreDNS, prefix: str, etcd_url: str) -> None:
        self.client, self.coredns, self.prefix, self.etcd_url = client, coredns, prefix, etcd_url

    def apply(self, **changes: list[dict]) -> None:
        response = self.client.apply(changes)
        assert response.status_code == 204, response.text

    def answers(self, name: str, rdtype: str) -> set[str]:
        return dns_answers(self.coredns.host, self.coredns.port, name, rdtype)

    def query(self, name: str, rdtype: str) -> dns.message.Message:
        return dns.query.udp(dns.message.make_query(name, rdtype), self.coredns.host, port=self.coredns.port,
                             timeout=2)

    def cname_of(self, name: str) -> set[str]:
        """CNAME answers to an A query: CoreDNS answers CNAME-type queries only from an exact key (no leaf)."""
        wanted = dns.rdatatype.CNAME
        return {rr.to_text() for rrset in self.query(name, "A").answer if rrset.rdtype == wanted for rr in rrset}

    def current(self, name: str, record_type: str) -> dict:
        return self.client.endpoints()[(name, record_type)]


@pytest.fixture(scope="module")
def stack(etcd, tmp_path_factory) -> Iterator[Stack]:
    prefix = f"/dns{uuid.uuid4().hex[:8]}/"
    workdir = tmp_path_factory.mktemp("webhook-coredns")
    webhook = WebhookProvider(etcd.endpoints, workdir, domain_filter=ZONE, prefix=prefix).start()
    coredns = CoreDNS(etcd_corefile(ZONE, etcd.endpoints, path=prefix.rstrip("/")), workdir / "coredns").start()
    yield Stack(WebhookClient(webhook.url), coredns, prefix, etcd.url)
    coredns.stop()
    webhook.stop()


def a(name: str, *targets: str, **extra: object) -> dict:
    return {"dnsName": name, "recordType": "A", "targets": list(targets), **extra}


def test_a_records_with_several_targets_and_their_ttl(stack):
    stack.apply(create=[a("multi.example.org", "192.0.2.1", "192.0.2.2", "192.0.2.3", recordTTL=42)])
    assert stack.answers("multi.example.org", "A") == {"192.0.2.1", "192.0.2.2", "192.0.2.3"}
    assert {rrset.ttl for rrset in stack.query("multi.example.org", "A").answer} == {42}


def test_aaaa_cname_txt_srv_and_mx(stack):
    stack.apply(create=[
        {"dnsName": "v6.example.org", "recordType": "AAAA", "targets": ["2001:db8::1", "2001:db8::2"]},
        a("lb.example.org", "192.0.2.10"),
        {"dnsName": "www.example.org", "recordType": "CNAME", "targets": ["lb.example.org"]},
        {"dnsName": "a-www.example.org", "recordType": "TXT",
         "targets": ['"heritage=external-dns,external-dns/owner=test"']},
        {"dnsName": "_sip._tcp.example.org", "recordType": "SRV",
         "targets": ["10 5 5060 sip1.example.org", "20 7 5061 sip2.example.org"]},
        {"dnsName": "mail.example.org", "recordType": "MX", "targets": ["10 mx1.example.org", "20 mx2.example.org"]},
    ])
    assert stack.answers("v6.example.org", "AAAA") == {"2001:db8::1", "2001:db8::2"}
    assert stack.answers("v6.example.org", "A") == set()
    assert stack.cname_of("www.example.org") == {"lb.example.org."}
    assert stack.answers("www.example.org", "A") == {"192.0.2.10"}  # CoreDNS follows the CNAME in its zone
    txt = stack.query("a-www.example.org", "TXT")
    assert [b"".join(rr.strings) for rrset in txt.answer for rr in rrset] == [
        b'"heritage=external-dns,external-dns/owner=test"']
    # CoreDNS rescales SRV weights to shares of 100 within each priority.
    assert stack.answers("_sip._tcp.example.org", "SRV") == {"10 100 5060 sip1.example.org.",
                                                             "20 100 5061 sip2.example.org."}
    assert stack.answers("mail.example.org", "MX") == {"10 mx1.example.org.", "20 mx2.example.org."}


def test_srv_weights_keep_their_proportions_within_a_priority(stack):
    stack.apply(create=[{"dnsName": "_web._tcp.example.org", "recordType": "SRV",
                         "targets": ["10 1 443 w1.example.org", "10 3 443 w2.example.org"]}])
    assert stack.answers("_web._tcp.example.org", "SRV") == {"10 25 443 w1.example.org.", "10 75 443 w2.example.org."}
    assert stack.current("_web._tcp.example.org", "SRV")["targets"] == ["10 1 443 w1.example.org.",
                                                                        "10 3 443 w2.example.org."]


def test_a_txt_record_beside_a_cname_leaves_the_cname_answer_intact(stack):
    stack.apply(create=[a("target.example.org", "192.0.2.20"),
                        {"dnsName": "both.example.org", "recordType": "CNAME", "targets": ["target.example.org"]},
                        {"dnsName": "both.example.org", "recordType": "TXT", "targets": ["note"]}])
    assert stack.cname_of("both.example.org") == {"target.example.org."}
    assert stack.answers("both.example.org", "A") == {"192.0.2.20"}
    assert stack.answers("both.example.org", "TXT") == {'"note"'}


def test_a_name_never_answers_with_the_records_of_names_below_it(stack):
    stack.apply(create=[a("app.example.org", "192.0.2.1"), a("x.app.example.org", "192.0.2.9")])
    assert stack.answers("app.example.org", "A") == {"192.0.2.1"}
    assert stack.answers("x.app.example.org", "A") == {"192.0.2.9"}


def test_without_a_group_coredns_would_mix_deeper_names_in_which_is_why_every_value_has_one(stack):
    kv = pyetcd.client(*stack.etcd_url.removeprefix("http://").split(":"))
    kv.put(f"{stack.prefix}org/example/ctl/00000001", json.dumps({"host": "192.0.2.31", "targetstrip": 1}))
    kv.put(f"{stack.prefix}org/example/ctl/x/00000002", json.dumps({"host": "192.0.2.32", "targetstrip": 1}))
    assert stack.answers("ctl.example.org", "A") == {"192.0.2.31", "192.0.2.32"}  # the control: a leak


def test_updates_change_the_answers_and_deletes_remove_only_that_name(stack):
    stack.apply(create=[a("upd.example.org", "192.0.2.1", "192.0.2.2"), a("x.upd.example.org", "192.0.2.9")])
    old = stack.current("upd.example.org", "A")
    stack.apply(updateOld=[old], updateNew=[a("upd.example.org", "192.0.2.2", "192.0.2.3", recordTTL=30)])
    assert stack.answers("upd.example.org", "A") == {"192.0.2.2", "192.0.2.3"}
    assert {rrset.ttl for rrset in stack.query("upd.example.org", "A").answer} == {30}
    stack.apply(delete=[stack.current("upd.example.org", "A")])
    assert ("upd.example.org", "A") not in stack.client.endpoints()
    assert stack.answers("x.upd.example.org", "A") == {"192.0.2.9"}
    # CoreDNS's etcd range: a name without keys of its own answers with those of the names below it
    # (an empty non-terminal); the coredns provider's layout behaves the same. See webhook_provider/README.md.
    assert stack.answers("upd.example.org", "A") == {"192.0.2.9"}


def test_a_cname_can_be_replaced_by_a_records_in_one_apply(stack):
    stack.apply(create=[a("dest.example.org", "192.0.2.40"),
                        {"dnsName": "flip.example.org", "recordType": "CNAME", "targets": ["dest.example.org"]}])
    assert stack.cname_of("flip.example.org") == {"dest.example.org."}
    stack.apply(delete=[stack.current("flip.example.org", "CNAME")], create=[a("flip.example.org", "192.0.2.41")])
    assert stack.cname_of("flip.example.org") == set()
    assert stack.answers("flip.example.org", "A") == {"192.0.2.41"}


def test_a_deleted_name_is_nxdomain(stack):
    stack.apply(create=[a("gone.example.org", "192.0.2.50")])
    stack.apply(delete=[stack.current("gone.example.org", "A")])
    assert stack.query("gone.example.org", "A").rcode() == dns.rcode.NXDOMAIN
