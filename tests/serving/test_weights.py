"""Weighted answers on stock CoreDNS: a DNSEndpoint's ``webhook/weights`` → real ExternalDNS → webhook → etcd →
fleetdns-zonefiles (its weight file) → the shipped Corefile's ``loadbalance weighted``. Real etcd, API server,
ExternalDNS, CoreDNS.

Weights only pick which address comes first; every answer still carries every address.
"""

from __future__ import annotations

import random
import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest
from kubernetes import client

from fleetdns.apipaths import DNS_ENDPOINTS
from fleetdns.endpoint import ProviderSpecificProperty
from fleetdns.skydns.records import Record, StoredEntry
from fleetdns.weights import WEIGHTS_PROPERTY
from rig import CoreDNS, ExternalDNS
from rig.coredns import RegionalCoreDNS, ZoneFilesSidecar, dns_answers, regional_coredns
from rig.ports import free_port
from rig.region import WebhookProvider
from rig.waiting import wait_for
from rig.workloads import apply_crds
from serving.weightfile import HEADER, name_weights, render
from serving.zonefiles import ReplacedFile

ZONE = "gslb.example.com"
V4 = ("198.18.1.1", "198.18.2.1")
V6 = ("2001:db8:f:1::1", "2001:db8:f:2::1")
HEAVY, LIGHT = 255, 64  # 80/20 as the aggregator scales it: 255 / (255 + 64) = 79.9 %
GROUP, VERSION, PLURAL = DNS_ENDPOINTS.group, DNS_ENDPOINTS.version, DNS_ENDPOINTS.plural
APPLIED = 'fleetdns_webhook_applies_total{outcome="applied"}'
GETS = 'fleetdns_webhook_requests_total{method="GET",route="/records",status="200"}'
DROPPED_WEIGHTS = 'fleetdns_webhook_properties_dropped_total{property="webhook/weights",route="/adjustendpoints"}'


def weighted(name: str, record_type: str, targets: tuple[str, ...], weights: str | None) -> dict:
    endpoint: dict = {"dnsName": name, "recordType": record_type, "targets": list(targets), "recordTTL": 30}
    if weights is not None:
        endpoint["providerSpecific"] = [{"name": WEIGHTS_PROPERTY, "value": weights}]
    return endpoint


def endpoints(heavy_v4: str = V4[0]) -> list[dict]:
    """weighted.* 80/20 (A and AAAA), plain.* without weights, malformed.* with weights that cannot be used."""
    light_v4 = V4[1] if heavy_v4 == V4[0] else V4[0]
    return [
        weighted(f"weighted.{ZONE}", "A", V4, f"{heavy_v4}={HEAVY},{light_v4}={LIGHT}"),
        weighted(f"weighted.{ZONE}", "AAAA", V6, f"{V6[0]}={HEAVY},{V6[1]}={LIGHT}"),
        weighted(f"plain.{ZONE}", "A", (*V4, "198.18.3.1"), None),
        weighted(f"malformed.{ZONE}", "A", V4, f"{V4[0]}=300,{V4[1]}=64"),
    ]


def first_answers(server: CoreDNS, name: str, rdtype: str, count: int, mixed_case: bool = False) -> Counter[str]:
    """How often each address came first over ``count`` queries; every answer must hold every address seen."""
    firsts: Counter[str] = Counter()
    sizes: Counter[int] = Counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(count):
            qname = "".join(c.upper() if random.random() < 0.5 else c for c in name) if mixed_case else name
            query = dns.message.make_query(qname, rdtype)
            reply = dns.query.udp(query, server.host, port=server.port, timeout=2, sock=sock)
            assert reply.question[0].name.to_text(omit_final_dot=True) == qname  # 0x20: the case is echoed
            addresses = [rr.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.from_text(rdtype)
                         for rr in rrset]
            firsts[addresses[0]] += 1
            sizes[len(addresses)] += 1
    assert len(sizes) == 1, f"answers of {name} changed size: {sizes}"
    return firsts


def share(firsts: Counter[str], address: str) -> float:
    return 100.0 * firsts[address] / sum(firsts.values())


@dataclass
class Stack:
    coredns: RegionalCoreDNS
    webhook: WebhookProvider
    externaldns: ExternalDNS
    custom: client.CustomObjectsApi
    namespace: str
    prefix: str

    def put_endpoints(self, items: list[dict]) -> None:
        current = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, "apps")
        current["spec"]["endpoints"] = items
        self.custom.replace_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, "apps", current)


@pytest.fixture(scope="module")
def stack(fleet, etcd, tmp_path_factory) -> Iterator[Stack]:
    api = fleet.host.api_client()
    apply_crds(api)
    namespace = f"ws-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "DNSEndpoint", "metadata": {"name": "apps"},
        "spec": {"endpoints": endpoints()}})
    segment = f"ws{uuid.uuid4().hex[:8]}"
    workdir = tmp_path_factory.mktemp("weighted")
    started: list = []
    try:
        coredns = regional_coredns(ZONE, etcd.endpoints, workdir / "coredns", "coredns-weighted", etcd_path=segment)
        started.append(coredns.start())
        webhook = WebhookProvider(etcd.endpoints, workdir, domain_filter=ZONE, prefix=f"/{segment}/",
                                  name="webhook-weighted")
        started.append(webhook.start())
        edns = ExternalDNS(fleet.host.kubeconfig, [
            "--source=crd", f"--namespace={namespace}", "--registry=txt", "--txt-owner-id=weighted",
            "--policy=sync", "--interval=500ms", "--provider=webhook", f"--webhook-provider-url={webhook.url}",
            f"--domain-filter={ZONE}"], workdir=workdir)
        started.append(edns.start())
        wait_for(lambda: coredns.sidecar.metrics().get("fleetdns_zonefiles_weighted_names") == 1, 60,
                 "the weight file holding weighted.* (published through ExternalDNS)")
        wait_for(lambda: share(first_answers(coredns, f"weighted.{ZONE}", "A", 300), V4[0]) > 65, 15,
                 "CoreDNS reloading the weight file")
        yield Stack(coredns, webhook, edns, custom, namespace, f"/{segment}/")
    finally:
        for component in reversed(started):
            component.stop()


@pytest.mark.etcd
@pytest.mark.coredns
@pytest.mark.apiserver
@pytest.mark.externaldns
@pytest.mark.parametrize(("rdtype", "addresses"), [("A", V4), ("AAAA", V6)])
def test_a_name_weighted_80_20_answers_its_first_address_by_the_weights_over_10000_queries(stack, rdtype, addresses):
    firsts = first_answers(stack.coredns, f"weighted.{ZONE}", rdtype, 10_000)
    assert set(firsts) == set(addresses)
    expected = 100.0 * HEAVY / (HEAVY + LIGHT)
    assert abs(share(firsts, addresses[0]) - expected) <= 3, firsts


@pytest.mark.etcd
@pytest.mark.coredns
@pytest.mark.apiserver
@pytest.mark.externaldns
def test_mixed_case_queries_of_0x20_resolvers_keep_the_weights(stack):
    firsts = first_answers(stack.coredns, f"weighted.{ZONE}", "A", 10_000, mixed_case=True)
    assert abs(share(firsts, V4[0]) - 100.0 * HEAVY / (HEAVY + LIGHT)) <= 3, firsts


@pytest.mark.etcd
@pytest.mark.coredns
@pytest.mark.apiserver
@pytest.mark.externaldns
def test_a_name_without_weights_answers_every_address_each_first_about_equally(stack):
    firsts = first_answers(stack.coredns, f"plain.{ZONE}", "A", 3_000)
    assert set(firsts) == {*V4, "198.18.3.1"}
    assert all(share(firsts, address) > 25 for address in firsts), firsts  # uniform: 33.3 % each


@pytest.mark.etcd
@pytest.mark.coredns
@pytest.mark.apiserver
@pytest.mark.externaldns
def test_malformed_weights_publish_the_record_without_them_and_externaldns_does_not_churn(stack):
    assert dns_answers(stack.coredns.host, stack.coredns.port, f"malformed.{ZONE}", "A") == set(V4)
    published = stack.webhook.client.endpoints()[(f"malformed.{ZONE}", "A")]
    assert "providerSpecific" not in published  # dropped by /adjustendpoints, so never written
    assert stack.webhook.client.metrics().get(DROPPED_WEIGHTS, 0) >= 1
    applied = stack.webhook.client.metrics().get(APPLIED, 0)
    gets = stack.webhook.client.metrics()[GETS]
    wait_for(lambda: stack.webhook.client.metrics()[GETS] >= gets + 4, 30, "four more ExternalDNS loops")
    assert stack.webhook.client.metrics().get(APPLIED, 0) == applied  # no update loop after loop
    assert stack.externaldns.process is not None and stack.externaldns.process.running


@pytest.mark.etcd
@pytest.mark.coredns
@pytest.mark.apiserver
@pytest.mark.externaldns
def test_changed_weights_reach_the_answers_within_a_bounded_time(stack):
    try:
        stack.put_endpoints(endpoints(heavy_v4=V4[1]))  # 20/80 now
        wait_for(lambda: share(first_answers(stack.coredns, f"weighted.{ZONE}", "A", 300), V4[1]) > 65, 30,
                 "the new heavy address first in most answers")
    finally:
        stack.put_endpoints(endpoints())
        wait_for(lambda: share(first_answers(stack.coredns, f"weighted.{ZONE}", "A", 300), V4[0]) > 65, 30,
                 "the weights restored")


def _log_count(server: CoreDNS, text: str) -> int:
    assert server.process is not None
    return server.process.log_path.read_text(errors="replace").count(text)


@pytest.mark.etcd
@pytest.mark.coredns
@pytest.mark.apiserver
@pytest.mark.externaldns
def test_a_missing_or_broken_weight_file_never_empties_an_answer(stack, etcd, tmp_path):
    segment = stack.prefix.strip("/")
    server = regional_coredns(ZONE, etcd.endpoints, tmp_path, "coredns-nofile", etcd_path=segment)
    try:
        server.sidecar.start().wait_ready()  # the zone file, then CoreDNS alone without the weight file
        server.sidecar.stop()
        weight_file = Path(server.env["FLEETDNS_WEIGHT_FILE"])
        weight_file.unlink()
        CoreDNS.start(server)
        assert _log_count(server, "Failed to open weight file") == 1
        firsts = first_answers(server, f"weighted.{ZONE}", "A", 600)
        assert set(firsts) == set(V4) and 35 < share(firsts, V4[0]) < 65  # every address, equal weights

        server.sidecar.start().wait_ready()
        wait_for(lambda: share(first_answers(server, f"weighted.{ZONE}", "A", 300), V4[0]) > 65, 15,
                 "the weights applied once the file exists")
        server.sidecar.stop()

        weight_file.write_text(f"weighted.{ZONE}.\n{V4[0]} 0\nnot-an-address 10\n")
        wait_for(lambda: _log_count(server, "wrong weight value"), 15, "CoreDNS reading the broken file")
        firsts = first_answers(server, f"weighted.{ZONE}", "A", 1_000)
        assert set(firsts) == set(V4) and share(firsts, V4[0]) > 70  # the last good weights stay

        missing = _log_count(server, "[ERROR] plugin/loadbalance: weight file open error")
        weight_file.unlink()
        wait_for(lambda: _log_count(server, "[ERROR] plugin/loadbalance: weight file open error") > missing, 15,
                 "CoreDNS missing the file")
        firsts = first_answers(server, f"weighted.{ZONE}", "A", 1_000)
        assert set(firsts) == set(V4) and share(firsts, V4[0]) > 70
    finally:
        server.stop()


@pytest.mark.unit  # our own process only: the etcd it is given does not exist
def test_the_sidecar_never_replaces_the_files_while_etcd_cannot_be_read(tmp_path):
    weight_file = tmp_path / "weights"
    kept = f"{HEADER}weighted.{ZONE}.\n{V4[0]} 255\n{V4[1]} 64\n"
    weight_file.write_text(kept)
    zone_dir = tmp_path / "zones"
    zone_dir.mkdir()
    zone_kept = f"$ORIGIN {ZONE}.\n{ZONE}. 30 IN SOA ns.dns.{ZONE}. hostmaster.{ZONE}. 5 7200 1800 86400 30\n"
    (zone_dir / f"db.{ZONE}").write_text(zone_kept)
    dead_etcd = f"http://127.0.0.1:{free_port()}"
    sidecar = ZoneFilesSidecar([dead_etcd], "/skydns/", [ZONE], zone_dir, weight_file, tmp_path,
                               extra_args=["--etcd-timeout=500ms"])
    with_errors = 'fleetdns_zonefiles_sync_errors_total{stage="etcd"}'
    try:
        sidecar.start()
        wait_for(lambda: sidecar.metrics().get(with_errors, 0) >= 3, 30, "three failed syncs")
        assert not sidecar.ready()
        assert weight_file.read_text() == kept
        assert sidecar.zone_file(ZONE).read_text() == zone_kept
        assert [path.name for path in [*tmp_path.iterdir(), *zone_dir.iterdir()] if path.name.startswith(".")] == []
    finally:
        sidecar.stop()


# --- the pure parts of the sidecar -----------------------------------------------------------------------------

def _entry(key: str, *records: Record) -> StoredEntry:
    return StoredEntry(key, b"{}", 1, "/skydns/", records)


def _record(name: str, record_type: str, target: str, weights: str | None = None) -> Record:
    props = (ProviderSpecificProperty(WEIGHTS_PROPERTY, weights),) if weights is not None else ()
    return Record(name, record_type, target, provider_specific=props)


@pytest.mark.unit
def test_weights_are_taken_from_address_records_for_the_addresses_the_name_answers():
    value = f"{V4[0]}=255,{V4[1]}=64,198.18.9.9=5"
    entries = [
        _entry("/skydns/com/example/gslb/app/1", _record(f"app.{ZONE}", "A", V4[0], value)),
        _entry("/skydns/com/example/gslb/app/2", _record(f"app.{ZONE}", "A", V4[1], value)),
        _entry("/skydns/com/example/gslb/app/3", _record(f"app.{ZONE}", "AAAA", V6[0], f"{V6[0].upper()}=7")),
        _entry("/skydns/com/example/gslb/app/4", _record(f"app.{ZONE}", "TXT", '"owner"', "198.18.7.7=9")),
    ]
    weights, invalid = name_weights(entries)
    assert weights == {V4[0]: 255, V4[1]: 64, V6[0]: 7} and invalid == []  # not 198.18.9.9, not the TXT copy


@pytest.mark.unit
def test_unusable_stored_weights_give_the_name_no_weights_and_are_reported():
    weights, invalid = name_weights([_entry("/k", _record(f"app.{ZONE}", "A", V4[0], f"{V4[0]}=0"))])
    assert weights == {} and [bad.name for bad in invalid] == [f"app.{ZONE}"]


@pytest.mark.unit
def test_the_file_lists_each_name_fully_qualified_then_ip_weight_lines():
    text = render({f"b.{ZONE}": {V6[0]: 7, V4[1]: 64, V4[0]: 255}, f"a.{ZONE}": {V4[0]: 1}})
    assert text == (f"{HEADER}a.{ZONE}.\n{V4[0]} 1\n"
                    f"b.{ZONE}.\n{V4[0]} 255\n{V4[1]} 64\n{V6[0]} 7\n")
    assert render({}) == HEADER  # no weighted name: CoreDNS weighs every address 1


@pytest.mark.unit
def test_the_file_is_replaced_whole_and_only_when_its_content_changes(tmp_path):
    path = tmp_path / "weights"
    assert ReplacedFile(path).replace("one\n") is True
    inode = path.stat().st_ino
    assert ReplacedFile(path).replace("one\n") is False  # a restart with the same data writes nothing
    assert path.stat().st_ino == inode
    writer = ReplacedFile(path)
    assert writer.replace("two\n") is True and path.read_text() == "two\n"
    assert path.stat().st_ino != inode  # renamed into place, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]
