"""The zone as CoreDNS's ``file`` plugin serves it: records in etcd (written through the webhook, or by hand in
SkyDNS form) → ``fleetdns-zonefiles`` → ``db.<zone>`` → the shipped Corefile. Real etcd and CoreDNS; the pure
rendering (``zonefile.py``) on its own below."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.zone
import pyetcd
import pytest

from fleetdns.endpoint import NAMESERVER_PROPERTY, ProviderSpecificProperty
from fleetdns.skydns.encoding import decode_entry, encode_name_key, encode_value, key_for, name_key
from fleetdns.skydns.mirror import PrefixMirror
from fleetdns.skydns.records import Record, StoredEntry
from fleetdns.skydns.store import EtcdStore
from rig import CoreDNS, EtcdServer
from rig.coredns import RegionalCoreDNS, dns_answers, regional_coredns, shipped_corefile
from rig.process import RigError
from rig.region import WebhookProvider
from rig.waiting import wait_for
from rig.webhook_client import WebhookClient
from serving import zonefile
from serving.zonefile import DropReason, render_name, render_zone
from serving.zonefiles import ReplacedFile, ZoneFile, ZoneFilesWriter, sidecar_metrics
from tests.support.etcd import etcd_kv
from webhook_provider.settings import load_settings

ZONE = "gslb.example.com"
ZONE_FILE = f"db.{ZONE}"
WRITES = f'fleetdns_zonefiles_writes_total{{file="{ZONE_FILE}"}}'
DROPPED = 'fleetdns_zonefiles_dropped_records_total{{reason="{}"}}'
OWNERSHIP = '"heritage=external-dns,external-dns/owner=test,external-dns/resource=crd/ns/apps"'
LONG_TEXT = 'v=spf1 "quoted" \\back ' + "x" * 300  # two character-strings on the wire


def reply(server: CoreDNS, name: str, rdtype: str) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype), server.host, port=server.port, timeout=2)


def answers(server: CoreDNS, name: str, rdtype: str = "A") -> set[str]:
    return dns_answers(server.host, server.port, name, rdtype)


def txt_of(server: CoreDNS, name: str) -> list[tuple[bytes, ...]]:
    """The character-strings of each TXT record answered."""
    return [tuple(rr.strings) for rrset in reply(server, name, "TXT").answer for rr in rrset]


def serial_of(path: Path) -> int | None:
    return zonefile.soa_serial(path.read_text())


@dataclass
class Served:
    coredns: RegionalCoreDNS
    webhook: WebhookClient
    etcd: pyetcd.Etcd3Client
    prefix: str

    def apply(self, **changes: list[dict]) -> None:
        response = self.webhook.apply(changes)
        assert response.status_code == 204, response.text

    def put(self, name: str, leaf: str, value: dict) -> None:
        """A value written by someone else (by hand, the coredns provider) in SkyDNS form."""
        key = self.prefix + "/".join(reversed(name.split("."))) + f"/{leaf}"
        self.etcd.put(key, json.dumps({"targetstrip": 1, **value}))

    @property
    def zone_file(self) -> Path:
        return self.coredns.sidecar.zone_file(ZONE)


def endpoint(name: str, record_type: str, *targets: str, **extra: object) -> dict:
    return {"dnsName": name, "recordType": record_type, "targets": list(targets), **extra}


@pytest.fixture(scope="module")
def served(etcd, tmp_path_factory) -> Iterator[Served]:
    segment = f"zf{uuid.uuid4().hex[:8]}"
    workdir = tmp_path_factory.mktemp("zonefiles")
    webhook = WebhookProvider(etcd.endpoints, workdir, domain_filter=ZONE, prefix=f"/{segment}/",
                              name="webhook-zonefiles").start()
    coredns = regional_coredns(ZONE, etcd.endpoints, workdir / "coredns", "coredns-zonefiles", etcd_path=segment)
    try:
        coredns.start()
        yield Served(coredns, WebhookClient(webhook.url), etcd_kv(etcd.url), f"/{segment}/")
    finally:
        coredns.stop()
        webhook.stop()


# --- served by real CoreDNS ------------------------------------------------------------------------------------

@pytest.mark.etcd
@pytest.mark.coredns
def test_records_written_through_the_webhook_are_answered_as_users_expect(served):
    served.apply(create=[
        endpoint(f"app.{ZONE}", "A", "192.0.2.1", "192.0.2.2", recordTTL=42),
        endpoint(f"app.{ZONE}", "AAAA", "2001:db8::1"),
        endpoint(f"lb.{ZONE}", "A", "192.0.2.10"),
        endpoint(f"www.{ZONE}", "CNAME", f"lb.{ZONE}"),
        endpoint(f"ext.{ZONE}", "CNAME", "lb.example.net"),
        endpoint(f"cname-www.{ZONE}", "TXT", OWNERSHIP),
        endpoint(f"note.{ZONE}", "TXT", LONG_TEXT),
        endpoint(f"x.note.{ZONE}", "CNAME", f"lb.{ZONE}"),
        endpoint(f"mail.{ZONE}", "MX", f"0 mx1.{ZONE}", f"20 mx2.{ZONE}"),
        endpoint(f"_sip._tcp.{ZONE}", "SRV", f"0 5 5060 sip1.{ZONE}", f"0 15 5061 sip2.{ZONE}"),
        endpoint(f"x.deep.{ZONE}", "A", "192.0.2.20"),
    ])
    coredns = served.coredns
    wait_for(lambda: answers(coredns, f"x.deep.{ZONE}") == {"192.0.2.20"}, 15, "the last record served")

    assert answers(coredns, f"app.{ZONE}") == {"192.0.2.1", "192.0.2.2"}
    assert {rrset.ttl for rrset in reply(coredns, f"app.{ZONE}", "A").answer} == {42}  # the record's own TTL
    assert answers(coredns, f"app.{ZONE}", "AAAA") == {"2001:db8::1"}
    assert {rrset.ttl for rrset in reply(coredns, f"app.{ZONE}", "AAAA").answer} == {300}  # none given: 300
    assert answers(coredns, "ApP.gSlB.eXaMpLe.CoM") == {"192.0.2.1", "192.0.2.2"}  # 0x20 resolvers
    # A CNAME inside the zone is followed; one outside is answered alone (NOERROR) for the resolver to chase.
    assert answers(coredns, f"www.{ZONE}", "CNAME") == {f"lb.{ZONE}."}
    assert answers(coredns, f"www.{ZONE}") == {"192.0.2.10"}
    assert reply(coredns, f"www.{ZONE}", "A").answer[0].rdtype == dns.rdatatype.CNAME
    external = reply(coredns, f"ext.{ZONE}", "A")
    assert external.rcode() == dns.rcode.NOERROR and answers(coredns, f"ext.{ZONE}", "CNAME") == {"lb.example.net."}
    # TXT exactly as stored, quotes and backslashes included, in 255-byte strings. A name with a CNAME name below
    # it answers its own TXT only (the etcd plugin added the webhook's "fleetdns-name-key" there).
    assert txt_of(coredns, f"cname-www.{ZONE}") == [(OWNERSHIP.encode(),)]
    assert txt_of(coredns, f"note.{ZONE}") == [(LONG_TEXT.encode()[:255], LONG_TEXT.encode()[255:])]
    # MX and SRV as written (the etcd plugin served preference 0 as 10 and rescaled SRV weights to 100).
    assert answers(coredns, f"mail.{ZONE}", "MX") == {f"0 mx1.{ZONE}.", f"20 mx2.{ZONE}."}
    assert answers(coredns, f"_sip._tcp.{ZONE}", "SRV") == {f"0 5 5060 sip1.{ZONE}.", f"0 15 5061 sip2.{ZONE}."}
    # Names that do not exist are NXDOMAIN with the SOA (negative TTL 30); names that do, NODATA for other types.
    missing = reply(coredns, f"nothing.{ZONE}", "A")
    assert missing.rcode() == dns.rcode.NXDOMAIN and missing.authority[0].ttl == 30
    for name, rdtype in ((f"app.{ZONE}", "CNAME"), (f"app.{ZONE}", "TXT"), (f"deep.{ZONE}", "A")):
        nodata = reply(coredns, name, rdtype)
        assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == [], (name, rdtype)


@pytest.mark.etcd
@pytest.mark.coredns
def test_ns_below_the_apex_is_a_referral_with_glue_and_the_zones_own_nameservers_are_its_apex_ns(served):
    """What a parent zone holds for a delegated child (the aggregator's delegation DNSEndpoint), and what the child
    holds for its own nameservers (their A records marked ``webhook/nameserver``)."""
    nameserver = [{"name": "webhook/nameserver", "value": "true"}]
    delegation = [endpoint(f"child.{ZONE}", "NS", f"ns1.child.{ZONE}", f"ns2.child.{ZONE}", recordTTL=120),
                  endpoint(f"ns1.child.{ZONE}", "A", "192.0.2.53"),
                  endpoint(f"ns2.child.{ZONE}", "AAAA", "2001:db8::53"),
                  endpoint(f"ns-a.{ZONE}", "A", "192.0.2.54", providerSpecific=nameserver),
                  endpoint(f"ns-b.{ZONE}", "A", "192.0.2.55", providerSpecific=nameserver)]
    served.apply(create=delegation)
    coredns = served.coredns
    try:
        wait_for(lambda: answers(coredns, ZONE, "NS") == {f"ns-a.{ZONE}.", f"ns-b.{ZONE}."}, 15, "the apex NS")
        referral = reply(coredns, f"app.child.{ZONE}", "A")
        assert referral.rcode() == dns.rcode.NOERROR and referral.answer == []
        assert not referral.flags & dns.flags.AA
        assert {rr.to_text() for rrset in referral.authority if rrset.rdtype == dns.rdatatype.NS for rr in rrset} \
            == {f"ns1.child.{ZONE}.", f"ns2.child.{ZONE}."}
        assert {(rrset.name.to_text(), rr.to_text()) for rrset in referral.additional for rr in rrset} == {
            (f"ns1.child.{ZONE}.", "192.0.2.53"), (f"ns2.child.{ZONE}.", "2001:db8::53")}
        soa = reply(coredns, ZONE, "SOA").answer[0][0]
        assert soa.mname.to_text() == f"ns-a.{ZONE}."  # the primary is the first nameserver
        assert answers(coredns, f"ns-a.{ZONE}") == {"192.0.2.54"}  # the zone answers for its own nameservers
    finally:
        served.apply(delete=delegation)
    wait_for(lambda: answers(coredns, ZONE, "NS") == {f"ns.dns.{ZONE}."}, 15, "the default apex NS again")


@pytest.mark.etcd
@pytest.mark.coredns
def test_a_wildcard_written_in_etcd_answers_every_name_below_it(served):
    served.put(f"*.wild.{ZONE}", "w1", {"host": "192.0.2.99"})
    wait_for(lambda: answers(served.coredns, f"anything.wild.{ZONE}") == {"192.0.2.99"}, 15, "the wildcard served")
    assert answers(served.coredns, f"other.wild.{ZONE}") == {"192.0.2.99"}
    assert reply(served.coredns, f"wild.{ZONE}", "A").answer == []  # the wildcard's parent is no match


@pytest.mark.etcd
@pytest.mark.coredns
def test_a_change_is_answered_after_the_zone_file_is_rewritten(served):
    served.apply(create=[endpoint(f"moving.{ZONE}", "A", "192.0.2.30")])
    wait_for(lambda: answers(served.coredns, f"moving.{ZONE}") == {"192.0.2.30"}, 15, "the first address")
    before = serial_of(served.zone_file)
    served.apply(updateOld=[endpoint(f"moving.{ZONE}", "A", "192.0.2.30")],
                 updateNew=[endpoint(f"moving.{ZONE}", "A", "192.0.2.31")])
    wait_for(lambda: answers(served.coredns, f"moving.{ZONE}") == {"192.0.2.31"}, 15, "the new address")
    assert serial_of(served.zone_file) != before
    served.apply(delete=[endpoint(f"moving.{ZONE}", "A", "192.0.2.31")])
    wait_for(lambda: reply(served.coredns, f"moving.{ZONE}", "A").rcode() == dns.rcode.NXDOMAIN, 15, "gone")


@pytest.mark.etcd
@pytest.mark.coredns
def test_a_bad_record_is_dropped_and_every_other_record_is_still_served(served):
    def dropped() -> dict[str, float]:
        metrics = served.coredns.sidecar.metrics()
        return {reason: metrics.get(DROPPED.format(reason), 0) for reason in ("invalid_target", "cname_beside_data")}

    before = dropped()
    served.put(f"broken.{ZONE}", "b1", {"host": "not-an-address", "recordType": "A"})  # would fail the whole file
    served.put(f"mixed.{ZONE}", "m1", {"host": "192.0.2.40"})
    served.put(f"mixed.{ZONE}", "m2", {"host": "elsewhere.example.net"})  # a CNAME beside an A record
    served.apply(create=[endpoint(f"good.{ZONE}", "A", "192.0.2.41")])

    wait_for(lambda: answers(served.coredns, f"good.{ZONE}") == {"192.0.2.41"}, 15, "the good record served")
    assert answers(served.coredns, f"mixed.{ZONE}") == {"192.0.2.40"}  # the data stays, the CNAME goes
    assert reply(served.coredns, f"mixed.{ZONE}", "CNAME").answer == []
    assert reply(served.coredns, f"broken.{ZONE}", "A").rcode() == dns.rcode.NXDOMAIN
    assert "not-an-address" not in served.zone_file.read_text()
    after = dropped()
    assert all(after[reason] > before[reason] for reason in after), (before, after)  # counted, with the reason


@pytest.mark.etcd
@pytest.mark.coredns
def test_a_restarted_sidecar_with_unchanged_data_writes_nothing_and_coredns_keeps_answering(served):
    served.apply(create=[endpoint(f"steady.{ZONE}", "A", "192.0.2.50")])
    wait_for(lambda: answers(served.coredns, f"steady.{ZONE}") == {"192.0.2.50"}, 15, "served")
    sidecar = served.coredns.sidecar
    sidecar.stop()
    inode, serial = served.zone_file.stat().st_ino, serial_of(served.zone_file)
    sidecar.start().wait_ready()
    assert sidecar.metrics().get(WRITES, 0) == 0  # found identical: the serial stays, CoreDNS reloads nothing
    assert served.zone_file.stat().st_ino == inode and serial_of(served.zone_file) == serial
    assert answers(served.coredns, f"steady.{ZONE}") == {"192.0.2.50"}

    served.apply(create=[endpoint(f"after-restart.{ZONE}", "A", "192.0.2.51")])
    wait_for(lambda: answers(served.coredns, f"after-restart.{ZONE}") == {"192.0.2.51"}, 15, "a change served")
    assert serial is not None and serial_of(served.zone_file) == serial + 1


@pytest.mark.etcd
@pytest.mark.coredns
def test_coredns_answers_servfail_before_its_first_zone_file_and_keeps_the_last_zone_when_one_cannot_be_parsed(
        served, etcd, tmp_path):
    served.apply(create=[endpoint(f"first.{ZONE}", "A", "192.0.2.60")])
    wait_for(lambda: answers(served.coredns, f"first.{ZONE}") == {"192.0.2.60"}, 15, "served")
    # the shipped Corefile given from the start (in a pod, CoreDNS starts once the sidecar rendered its Corefile,
    # after the zone files; this is the file plugin's own behaviour without them)
    server = regional_coredns(ZONE, etcd.endpoints, tmp_path, "coredns-nofile", etcd_path=served.prefix.strip("/"),
                              corefile=shipped_corefile())
    try:
        CoreDNS.start(server)  # CoreDNS alone: its sidecar has not written the zone file yet
        assert reply(server, f"first.{ZONE}", "A").rcode() == dns.rcode.SERVFAIL
        server.sidecar.start().wait_ready()
        wait_for(lambda: answers(server, f"first.{ZONE}") == {"192.0.2.60"}, 15, "the zone once its file exists")
        server.sidecar.stop()

        zone_file = server.sidecar.zone_file(ZONE)
        good = zone_file.read_text()
        broken = re.sub(r"(IN SOA \S+ \S+ )\d+", r"\g<1>7", good) + f"bad.{ZONE}. 300 IN A 192.0.2.999\n"
        zone_file.write_text(broken)
        assert server.process is not None
        wait_for(lambda: "bad A A" in server.process.log_path.read_text(), 15, "CoreDNS reading the broken file")
        assert answers(server, f"first.{ZONE}") == {"192.0.2.60"}  # the last good zone stays
        server.stop()
        with pytest.raises(RigError, match="exited with 1"):  # but at start a broken file is fatal
            CoreDNS.start(server, timeout=10)
    finally:
        server.stop()


@pytest.mark.etcd
@pytest.mark.coredns
def test_while_etcd_is_down_coredns_answers_the_last_zone_and_the_sidecar_is_not_ready(tmp_path):
    with EtcdServer(tmp_path / "etcd") as etcd:
        kv = etcd_kv(etcd.url)
        kv.put(f"/skydns/com/example/gslb/app/{'a' * 12}",
               encode_value(Record(f"app.{ZONE}", "A", "192.0.2.70")))
        server = regional_coredns(ZONE, etcd.endpoints, tmp_path / "coredns", "coredns-etcd-down").start()
        try:
            assert answers(server, f"app.{ZONE}") == {"192.0.2.70"}
            etcd.stop()
            wait_for(lambda: not server.sidecar.ready(), 60, "the sidecar noticing etcd is gone")
            assert answers(server, f"app.{ZONE}") == {"192.0.2.70"}
            assert serial_of(server.sidecar.zone_file(ZONE)) is not None  # kept, never emptied

            etcd.start_member(0)
            server.sidecar.wait_ready(60)
            kv = etcd_kv(etcd.url)
            kv.put(f"/skydns/com/example/gslb/app/{'b' * 12}",
                   encode_value(Record(f"app.{ZONE}", "A", "192.0.2.71")))
            wait_for(lambda: answers(server, f"app.{ZONE}") == {"192.0.2.70", "192.0.2.71"}, 30, "etcd back")
        finally:
            server.stop()


# --- the sidecar's writes, on real etcd with a stepped clock ------------------------------------------------------

@pytest.mark.etcd
def test_the_first_change_after_a_quiet_spell_is_written_at_once_and_later_ones_coalesce(etcd, tmp_path):
    prefix = f"/zf{uuid.uuid4().hex[:8]}/"
    metrics, writer_metrics = sidecar_metrics()
    store = EtcdStore(load_settings([f"--etcd-endpoints={etcd.url}"], {}).etcd, metrics)
    mirror = PrefixMirror(store, prefix, metrics, wait_seconds=5.0)
    clock = [1000.0]
    zone_file = ZoneFile(ZONE, tmp_path / ZONE_FILE)
    writer = ZoneFilesWriter(mirror, [zone_file], ReplacedFile(tmp_path / "weights"), writer_metrics,
                             min_write_interval=1.0, clock=lambda: clock[0])
    kv = etcd_kv(etcd.url)

    def put(name: str, address: str) -> None:
        record = Record(name, "A", address)
        mirror.committed(kv.put(key_for(record, prefix), encode_value(record)).header.revision)

    try:
        assert writer.sync() == [zone_file.path, tmp_path / "weights"]  # the first pass writes every file
        assert writer.ready()[0]
        clock[0] += 5.0  # a quiet spell
        put(f"one.{ZONE}", "192.0.2.1")
        assert writer.sync() == [zone_file.path]  # written at once
        first = zone_file.serial
        clock[0] += 0.3
        put(f"two.{ZONE}", "192.0.2.2")
        assert writer.sync() == []  # within a second of the last write: waits
        clock[0] += 0.3
        put(f"three.{ZONE}", "192.0.2.3")
        assert writer.sync() == [] and f"two.{ZONE}" not in zone_file.path.read_text()
        clock[0] += 0.5
        assert writer.sync() == [zone_file.path]  # both changes in one write, one serial step
        assert f"two.{ZONE}." in zone_file.path.read_text() and f"three.{ZONE}." in zone_file.path.read_text()
        assert first is not None and zone_file.serial == first + 1
        assert writer.sync() == []  # nothing left
    finally:
        mirror.close()
        store.close()


# --- the pure rendering -------------------------------------------------------------------------------------------

def _entries(*records: Record) -> list[StoredEntry]:
    return [StoredEntry(f"/skydns/k{index}", b"{}", 1, "/skydns/", (record,)) for index, record in enumerate(records)]


def _render(*records: Record, zone: str | None = ZONE) -> zonefile.RenderedName:
    return render_name(zone, records[0].name, _entries(*records))


def _parsed(text: str) -> dns.zone.Zone:
    return dns.zone.from_text(text, origin=f"{ZONE}.", relativize=False)


@pytest.mark.unit
def test_every_record_type_renders_one_line_each_with_the_etcd_plugins_default_ttl():
    name = f"app.{ZONE}"
    rendered = _render(Record(name, "A", "192.0.2.1", ttl=42), Record(name, "AAAA", "2001:db8::1"),
                       Record(name, "MX", "10 mx.example.net"), Record(name, "SRV", "0 5 443 svc.example.net."),
                       Record(name, "TXT", 'say "hi"'), Record(name, "A", "192.0.2.1", set_identifier="eu", ttl=42))
    assert rendered.text == (f"{name}. 42 IN A 192.0.2.1\n"  # the same address under two keys is one record
                             f"{name}. 300 IN AAAA 2001:db8::1\n"
                             f"{name}. 300 IN MX 10 mx.example.net.\n"
                             f"{name}. 300 IN SRV 0 5 443 svc.example.net.\n"
                             f'{name}. 300 IN TXT "say \\"hi\\""\n')
    assert rendered.records == 5 and rendered.dropped == ()
    assert _render(Record("1.2.0.192.in-addr.arpa", "PTR", "host.example.net"), zone="in-addr.arpa").text == \
        "1.2.0.192.in-addr.arpa. 300 IN PTR host.example.net.\n"
    assert _render(Record(f"*.wild.{ZONE}", "A", "192.0.2.9")).text == f"*.wild.{ZONE}. 300 IN A 192.0.2.9\n"


@pytest.mark.unit
def test_ns_records_render_as_lines_and_choose_the_apex_ns():
    child = _render(Record(f"child.{ZONE}", "NS", f"ns2.child.{ZONE}"),
                    Record(f"child.{ZONE}", "NS", "ns1.example.net"))
    assert child.text == f"child.{ZONE}. 300 IN NS ns1.example.net.\nchild.{ZONE}. 300 IN NS ns2.child.{ZONE}.\n"
    mark = (ProviderSpecificProperty(NAMESERVER_PROPERTY, "true"),)
    own = _render(Record(f"ns-b.{ZONE}", "A", "192.0.2.2", provider_specific=mark))
    assert own.text.startswith(zonefile.NAMESERVER_MARK) and own.records == 1
    names = {f"ns-b.{ZONE}": own.text, f"child.{ZONE}": child.text,
             f"ns-a.{ZONE}": _render(Record(f"ns-a.{ZONE}", "AAAA", "2001:db8::1", provider_specific=mark)).text}
    parsed = _parsed(render_zone(ZONE, 5, names))
    assert {rr.target.to_text() for rr in parsed.find_rdataset(f"{ZONE}.", "NS")} == {f"ns-a.{ZONE}.", f"ns-b.{ZONE}."}
    assert parsed.find_rdataset(f"{ZONE}.", "SOA")[0].mname.to_text() == f"ns-a.{ZONE}."
    # NS stored at the apex say it themselves; with neither, the etcd plugin's ns.dns.<zone>
    stored = {ZONE: _render(Record(ZONE, "NS", "ns.example.net")).text}
    assert {rr.target.to_text() for rr in _parsed(render_zone(ZONE, 5, stored)).find_rdataset(f"{ZONE}.", "NS")} == \
        {"ns.example.net."}
    assert {rr.target.to_text() for rr in _parsed(render_zone(ZONE, 5, {})).find_rdataset(f"{ZONE}.", "NS")} == \
        {f"ns.dns.{ZONE}."}


@pytest.mark.unit
def test_txt_text_comes_back_byte_for_byte_from_the_file_in_255_byte_strings():
    text = 'owner="a b" \\ ' + "é" * 200  # quotes, a backslash, multi-byte characters, over 255 bytes
    rendered = _render(Record(f"t.{ZONE}", "TXT", text))
    (rdata,) = _parsed(render_zone(ZONE, 1, {f"t.{ZONE}": rendered.text})).find_rdataset(f"t.{ZONE}.", "TXT")
    assert b"".join(rdata.strings) == text.encode() and max(len(s) for s in rdata.strings) == 255
    assert _render(Record(f"e.{ZONE}", "TXT", "")).text == f'e.{ZONE}. 300 IN TXT ""\n'


@pytest.mark.unit
def test_a_cname_beside_other_data_goes_and_of_several_cnames_the_lowest_target_stays():
    name = f"app.{ZONE}"
    beside = _render(Record(name, "CNAME", "lb.example.net"), Record(name, "A", "192.0.2.1"))
    assert beside.text == f"{name}. 300 IN A 192.0.2.1\n"
    assert [(d.record_type, d.reason) for d in beside.dropped] == [("CNAME", DropReason.CNAME_BESIDE_DATA)]
    several = _render(Record(name, "CNAME", "b.example.net"), Record(name, "CNAME", "a.example.net"))
    assert several.text == f"{name}. 300 IN CNAME a.example.net.\n"
    assert [(d.target, d.reason) for d in several.dropped] == [("b.example.net", DropReason.CNAME_MULTIPLE)]
    apex = _render(Record(ZONE, "CNAME", "elsewhere.example.net"), Record(ZONE, "A", "192.0.2.7"))
    assert apex.text == f"{ZONE}. 300 IN A 192.0.2.7\n"
    assert [d.reason for d in apex.dropped] == [DropReason.CNAME_AT_APEX]


@pytest.mark.unit
def test_records_that_would_break_the_file_are_dropped_with_their_reason_and_the_rest_kept():
    name = f"app.{ZONE}"
    rendered = _render(Record(name, "A", "192.0.2.1"), Record(name, "A", "192.0.2.300"),
                       Record(name, "MX", "ten mx.example.net"), Record(name, "CNAME", "two words"),
                       Record(name, "AAAA", "2001:db8::1", ttl=2**31), Record(name, "NAPTR", "x"))
    assert rendered.text == f"{name}. 300 IN A 192.0.2.1\n"
    assert sorted(d.reason for d in rendered.dropped) == sorted([
        DropReason.INVALID_TARGET, DropReason.INVALID_TARGET, DropReason.INVALID_TARGET, DropReason.INVALID_TTL,
        DropReason.UNSUPPORTED_TYPE])
    outside = _render(Record("app.example.org", "A", "192.0.2.1"), zone=None)
    assert outside.text == "" and [d.reason for d in outside.dropped] == [DropReason.OUTSIDE_ZONE]
    long_label = _render(Record(f"{'x' * 64}.{ZONE}", "A", "192.0.2.1"))
    assert long_label.text == "" and [d.reason for d in long_label.dropped] == [DropReason.INVALID_NAME]


@pytest.mark.unit
def test_the_webhooks_name_keys_are_not_rendered():
    prefix = "/skydns/"
    cname = Record(f"www.{ZONE}", "CNAME", f"lb.{ZONE}")
    stored = [decode_entry(prefix, name_key(prefix, cname.name), encode_name_key(cname.name, [cname]).encode(), 1),
              decode_entry(prefix, key_for(cname, prefix), encode_value(cname).encode(), 1)]
    assert render_name(ZONE, cname.name, stored).text == f"www.{ZONE}. 300 IN CNAME lb.{ZONE}.\n"
    parent_key = decode_entry(prefix, name_key(prefix, cname.name), encode_name_key(cname.name, [cname]).encode(), 1)
    assert parent_key.records == ()  # so ZONE's TXT answer no longer carries "fleetdns-name-key"


@pytest.mark.unit
def test_the_same_records_give_a_byte_identical_file_whatever_their_order():
    records = [Record(f"n{i}.{ZONE}", "A", f"192.0.2.{i}") for i in range(20)] + [
        Record(f"n1.{ZONE}", "TXT", "b"), Record(f"n1.{ZONE}", "TXT", "a"), Record(f"n1.{ZONE}", "AAAA", "2001:db8::1")]

    def file_of(ordered: list[Record]) -> str:
        names: dict[str, list[Record]] = {}
        for record in ordered:
            names.setdefault(record.name, []).append(record)
        return render_zone(ZONE, 9, {name: render_name(ZONE, name, _entries(*rs)).text for name, rs in names.items()})

    text = file_of(records)
    assert text == file_of(list(reversed(records)))
    assert len(list(_parsed(text).iterate_rdatas())) == 2 + 20 + 3  # SOA, NS and every record


@pytest.mark.unit
def test_each_name_goes_to_the_most_specific_zone_that_holds_it():
    zones = ("example.com", f"{ZONE}")
    assert zonefile.zone_of(f"app.{ZONE}", zones) == ZONE
    assert zonefile.zone_of("app.example.com", zones) == "example.com"
    assert zonefile.zone_of("app.example.org", zones) is None
    assert zonefile.zone_of("example.com", zones) == "example.com"


@pytest.mark.unit
def test_the_serial_changes_on_every_write_never_becomes_zero_and_continues_from_the_existing_file():
    assert zonefile.next_serial(41) == 42
    assert zonefile.next_serial(2**32 - 1) == 1  # CoreDNS fails to start on a file with serial 0
    assert zonefile.next_serial(None, now=1_800_000_000.5) == 1_800_000_001
    assert zonefile.soa_serial(render_zone(ZONE, 77, {})) == 77
    assert zonefile.soa_serial("not a zone file") is None
    soa = _parsed(render_zone(ZONE, 77, {})).find_rdataset(f"{ZONE}.", "SOA")
    assert soa.ttl == 30 and soa[0].minimum == 30  # negative answers cached 30 s, as with the etcd plugin


@pytest.mark.unit
def test_a_zone_file_is_replaced_by_rename_only_when_its_content_changes_and_keeps_its_serial_otherwise(tmp_path):
    path = tmp_path / ZONE_FILE
    names = {f"a.{ZONE}": f"a.{ZONE}. 300 IN A 192.0.2.1\n"}
    first = ZoneFile(ZONE, path)
    assert first.update(names) is True and first.serial is not None
    inode, serial = path.stat().st_ino, first.serial
    restarted = ZoneFile(ZONE, path)  # a sidecar restart
    assert restarted.serial == serial and restarted.update(names) is False
    assert path.stat().st_ino == inode
    assert restarted.update({**names, f"b.{ZONE}": f"b.{ZONE}. 300 IN A 192.0.2.2\n"}) is True
    assert restarted.serial == serial + 1 and path.stat().st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == [ZONE_FILE]  # no temporary file left behind


@pytest.mark.unit
def test_the_sidecar_refuses_bad_flags_naming_the_flag_and_the_value(tmp_path):
    from fleetdns.config import ConfigError
    from serving.zonefiles import load_settings as sidecar_settings

    good = [f"--zone={ZONE}", f"--zone-dir={tmp_path}", f"--weight-file={tmp_path / 'weights'}"]
    settings = sidecar_settings([*good, "--zone=Example.ORG., gslb.example.com"], {})
    assert settings.zones == ("example.org", ZONE) and settings.zone_path(ZONE) == tmp_path / ZONE_FILE
    for bad, flag in (([f"--zone-dir={tmp_path}", f"--weight-file={tmp_path / 'w'}"], "--zone"),
                      ([*good, f"--zone={ZONE},{ZONE}"], "--zone"),
                      ([*good, "--zone=bad_label-.example.org"], "--zone"),
                      ([*good, f"--zone-dir={tmp_path / 'missing'}"], "--zone-dir"),
                      ([*good, f"--weight-file={tmp_path / ZONE_FILE}"], "--weight-file"),
                      ([*good, "--min-write-interval=soon"], "--min-write-interval")):
        with pytest.raises(ConfigError, match=f"invalid {flag}="):
            sidecar_settings(bad, {})
