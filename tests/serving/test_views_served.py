"""Serving client-location views (docs/design/views.md §4): endpoints with ``webhook/view`` kept under the view's
etcd prefix by the webhook (real etcd, real ExternalDNS), a zone file per view overlaid name by name by
``fleetdns-zonefiles``, and a Corefile per region rendered by ``fleetdns-corefile`` that real CoreDNS v1.15 serves:
clients by source address (127.0.0.0/8 is all local) and by GeoIP of an EDNS client subnet (dnspython)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rdatatype
import pyetcd
import pytest
from kubernetes import client

from fleetdns.apipaths import DNS_ENDPOINTS
from fleetdns.dnsview import VIEW_PROPERTY, DNSView, parse_dns_view
from fleetdns.skydns.encoding import decode_key
from rig import ExternalDNS
from rig.apiserver import KubeAPIServer
from rig.coredns import REGION_COREFILE, RegionalCoreDNS, regional_coredns
from rig.geoip import write_geoip_db
from rig.region import WebhookProvider
from rig.waiting import wait_for
from rig.webhook_client import WebhookClient
from rig.workloads import apply_crds
from serving.corefile import Layout, render_corefile, served_views
from tests.support.etcd import etcd_kv
from tests.support.webhook import running_webhook
from webhook_provider.changes import parse_changes
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.planner import plan_changes

ZONE = "gslb.example.com"
REJECTED_VIEW = 'fleetdns_webhook_records_rejected_total{reason="invalid_view"}'
APPLIED = 'fleetdns_webhook_applies_total{outcome="applied"}'
GETS = 'fleetdns_webhook_requests_total{method="GET",route="/records",status="200"}'
OWNERSHIP = '"heritage=external-dns,external-dns/owner=t,external-dns/resource=crd/ns/app"'


def endpoint(name: str, record_type: str, *targets: str, view: str = "", **extra: object) -> dict:
    """An endpoint as the aggregator writes it: a view's carries setIdentifier and webhook/view = the view."""
    found: dict = {"dnsName": name, "recordType": record_type, "targets": list(targets), **extra}
    if view:
        found["setIdentifier"] = view
        found["providerSpecific"] = [{"name": VIEW_PROPERTY, "value": view}]
    return found


def dns_view(name: str, **spec: object) -> DNSView:
    return parse_dns_view({"metadata": {"name": name}, "spec": spec})


def keys_under(kv: pyetcd.Etcd3Client, root: str) -> dict[str, tuple[bytes, int]]:
    """Every key starting with ``root`` (a default prefix without its slash: it and its view prefixes)."""
    return {meta.key.decode(): (value, meta.mod_revision) for value, meta in kv.get_prefix(root)}


def ask(server: RegionalCoreDNS, name: str, source: str = "127.0.0.1", subnet: str | None = None,
        rdtype: str = "A") -> set[str]:
    """What a client at ``source`` (and with an EDNS client subnet) gets for ``name``."""
    if subnet is None:
        query = dns.message.make_query(name, rdtype)
    else:
        address, length = subnet.split("/")
        query = dns.message.make_query(name, rdtype, use_edns=0, options=[dns.edns.ECSOption(address, int(length))])
    response = dns.query.udp(query, server.host, port=server.port, timeout=2, source=source)
    wanted = dns.rdatatype.from_text(rdtype)
    return {rr.to_text() for rrset in response.answer if rrset.rdtype == wanted for rr in rrset}


def shape(endpoints: list[dict]) -> set[tuple]:
    """What ExternalDNS compares: name, type, set identifier, targets and properties."""
    return {(e["dnsName"], e["recordType"], e.get("setIdentifier", ""), tuple(sorted(e["targets"])),
             tuple(sorted((p["name"], p["value"]) for p in e.get("providerSpecific") or []))) for e in endpoints}


# --- the webhook: one etcd prefix per view ------------------------------------------------------------------

@pytest.mark.unit
def test_a_record_reads_back_in_the_view_of_the_prefix_it_is_stored_under():
    value = json.dumps({"host": "198.18.0.9", "targetstrip": 1, "group": "app.x.org", "recordType": "A",
                        "setIdentifier": "office-a",
                        "providerSpecific": [{"name": VIEW_PROPERTY, "value": "office-a"}]}).encode()
    in_view = decode_key("/skydns/", "/skydns-office-a/org/x/app/0123456789ab", value, 5)
    misplaced = decode_key("/skydns/", "/skydns/org/x/app/0123456789ab", value, 5)  # as a webhook before views did
    in_other = decode_key("/skydns/", "/skydns-office-b/org/x/app/0123456789ab", value, 5)
    assert (in_view.prefix, in_view.view) == ("/skydns-office-a/", "office-a")
    assert [p.value for p in in_view.records[0].provider_specific if p.name == VIEW_PROPERTY] == ["office-a"]
    # Where the key is decides: ExternalDNS sees the difference and moves the record with an update.
    assert [p for p in misplaced.records[0].provider_specific if p.name == VIEW_PROPERTY] == []
    assert [p.value for p in in_other.records[0].provider_specific if p.name == VIEW_PROPERTY] == ["office-b"]
    assert decode_key("/skydns/", "/skydns-Not_A_View/org/x/app/0123456789ab", value, 5).records == ()
    assert decode_key("/skydns/", "/skydns2/org/x/app/0123456789ab", value, 5).records == ()


@pytest.mark.unit
def test_an_update_moves_a_misplaced_record_into_its_views_prefix_and_the_name_keys_follow():
    app = f"app.{ZONE}"
    old = endpoint(app, "A", "198.18.1.1", view="office-a")
    (plan,) = plan_changes([], parse_changes({"create": [old]}, DomainFilter()), "/skydns/")
    # As a webhook before views stored it: under the default prefix (the name key too).
    state = {key.replace("/skydns-office-a/", "/skydns/"): value for key, value in plan.puts.items()}
    entries = [decode_key("/skydns/", key, value.encode(), 1) for key, value in sorted(state.items())]
    misplaced = endpoint(app, "A", "198.18.1.1", setIdentifier="office-a")  # read back: no webhook/view
    assert [(e.prefix, [r.provider_specific for r in e.records]) for e in entries] == [("/skydns/", []),
                                                                                      ("/skydns/", [()])]
    (move,) = plan_changes(entries, parse_changes({"updateOld": [misplaced], "updateNew": [old]}, DomainFilter()),
                           "/skydns/")
    assert set(move.deletes) == set(state)  # the record and the default prefix's name key go
    assert set(move.puts) == set(plan.puts) and all(key.startswith("/skydns-office-a/") for key in move.puts)
    assert next(iter(move.puts)) == "/skydns-office-a/com/example/gslb/app"  # its name key first
    assert list(move.deletes)[-1] == "/skydns/com/example/gslb/app"  # the old one last


@pytest.fixture
def webhook(etcd, tmp_path) -> Iterator[tuple[WebhookProvider, str]]:
    with running_webhook(etcd, tmp_path, "vw", domain_filter=ZONE, name="webhook-views") as started:
        yield started


@pytest.mark.etcd
def test_view_endpoints_are_kept_under_their_views_prefix_listed_as_sent_and_deleted_alone(etcd, webhook):
    server, prefix = webhook
    hook, root = server.client, prefix.rstrip("/")
    app = f"app.{ZONE}"
    sent = [endpoint(app, "A", "198.18.0.1"),
            endpoint(app, "A", "198.18.1.1", view="office-a"),
            endpoint(app, "A", "198.18.2.1", view="region-east"),
            endpoint(f"a-app.{ZONE}", "TXT", OWNERSHIP, view="office-a"),  # the registry copies the property
            endpoint(f"a-app.{ZONE}", "TXT", OWNERSHIP)]
    bad = endpoint(f"bad.{ZONE}", "A", "198.18.3.1", view="Office_A")
    before = hook.metrics().get(REJECTED_VIEW, 0)
    assert hook.apply({"create": [*sent, bad]}).status_code == 204  # the bad one is skipped, never a 4xx

    kv = etcd_kv(etcd.url)
    stored = keys_under(kv, root)
    by_prefix = {where: sorted(key.removeprefix(where) for key in stored if key.startswith(where))
                 for where in (prefix, f"{root}-office-a/", f"{root}-region-east/")}
    assert len(stored) == sum(len(keys) for keys in by_prefix.values())  # nothing anywhere else
    for where, leaves in by_prefix.items():  # each prefix: the A record, its name key; the TXT and its name key
        names = {"/".join(leaf.split("/")[:4]) for leaf in leaves}
        expected = {"com/example/gslb/app"} | ({"com/example/gslb/a-app"} if "region-east" not in where else set())
        assert names == expected, (where, leaves)
    office_a = json.loads(stored[next(k for k in stored if k.startswith(f"{root}-office-a/com/example/gslb/app/"))][0])
    assert office_a["host"] == "198.18.1.1" and office_a["setIdentifier"] == "office-a"

    assert shape(hook.records().json()) == shape(sent)  # as sent: ExternalDNS sees no difference
    assert hook.metrics()[REJECTED_VIEW] == before + 1

    untouched = {key: meta for key, meta in stored.items() if not key.startswith(f"{root}-office-a/")}
    assert hook.apply({"delete": [sent[1], sent[3]]}).status_code == 204
    after = keys_under(kv, root)
    assert after == untouched  # the default and the other view: same keys, same revisions; office-a: gone
    assert shape(hook.records().json()) == shape([sent[0], sent[2], sent[4]])


# --- real ExternalDNS ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def host(tmp_path_factory) -> Iterator[tuple[client.ApiClient, Path]]:
    with KubeAPIServer("views-host", tmp_path_factory.mktemp("views-host")) as server:
        api = server.api_client()
        apply_crds(api)
        yield api, server.kubeconfig


def put_dns_endpoint(api: client.ApiClient, namespace: str, name: str, endpoints: list[dict]) -> None:
    custom = client.CustomObjectsApi(api)
    group, version, plural = DNS_ENDPOINTS.group, DNS_ENDPOINTS.version, DNS_ENDPOINTS.plural
    body = {"apiVersion": DNS_ENDPOINTS.api_version, "kind": DNS_ENDPOINTS.kind, "metadata": {"name": name},
            "spec": {"endpoints": endpoints}}
    try:
        current = custom.get_namespaced_custom_object(group, version, namespace, plural, name)
    except client.ApiException as error:
        if error.status != 404:
            raise
        custom.create_namespaced_custom_object(group, version, namespace, plural, body)
        return
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    custom.replace_namespaced_custom_object(group, version, namespace, plural, name, body)


@pytest.mark.etcd
@pytest.mark.apiserver
@pytest.mark.externaldns
def test_externaldns_publishes_view_endpoints_without_churn_and_a_views_change_touches_only_its_keys(
        etcd, webhook, host, tmp_path):
    server, prefix = webhook
    hook, root = server.client, prefix.rstrip("/")
    api, kubeconfig = host
    namespace = f"views-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    app = f"app.{ZONE}"
    desired = [endpoint(app, "A", "198.18.0.1", "198.18.0.2", recordTTL=30),
               endpoint(app, "A", "198.18.1.1", view="office-a", recordTTL=30),
               endpoint(app, "A", "198.18.2.1", view="region-east", recordTTL=30),
               endpoint(f"other.{ZONE}", "A", "198.18.9.1", recordTTL=30)]
    put_dns_endpoint(api, namespace, "app", desired)
    externaldns = ExternalDNS(kubeconfig, [
        "--source=crd", f"--namespace={namespace}", "--provider=webhook", f"--webhook-provider-url={server.url}",
        "--registry=txt", "--txt-owner-id=views", "--policy=sync", "--interval=500ms", f"--domain-filter={ZONE}",
    ], workdir=tmp_path, name="external-dns-views").start()
    try:
        def published() -> set[tuple]:
            return {item for item in shape(hook.records().json()) if item[1] == "A"}

        wait_for(lambda: published() == shape(desired), 60, "every view's endpoint published")
        kv = etcd_kv(etcd.url)
        stored = keys_under(kv, root)
        ownership = [key for key, (value, _) in stored.items() if "heritage=external-dns" in value.decode()]
        # Each endpoint's ownership record lives in its endpoint's view.
        assert {key.split("/")[1] for key in ownership} == {root[1:], f"{root[1:]}-office-a", f"{root[1:]}-region-east"}

        # Converged: further sync loops read records and send no changes.
        wait_for(lambda: hook.metrics().get(APPLIED, 0) >= 1, 10, "the first apply counted")
        applied, gets = hook.metrics()[APPLIED], hook.metrics()[GETS]
        wait_for(lambda: hook.metrics()[GETS] >= gets + 3, 30, "three more sync loops")
        assert hook.metrics()[APPLIED] == applied, externaldns.log()[-3000:]

        stored = keys_under(kv, root)
        desired[1] = endpoint(app, "A", "198.18.1.2", view="office-a", recordTTL=30)
        put_dns_endpoint(api, namespace, "app", desired)
        wait_for(lambda: published() == shape(desired), 60, "office-a's new target published")
        after = keys_under(kv, root)
        office_a = f"{root}-office-a/"
        assert {k: v for k, v in after.items() if not k.startswith(office_a)} == \
            {k: v for k, v in stored.items() if not k.startswith(office_a)}  # no other key rewritten
        hosts = {json.loads(value).get("host") for key, (value, _) in after.items() if key.startswith(office_a)}
        assert "198.18.1.2" in hosts and "198.18.1.1" not in hosts
        assert "level=error" not in externaldns.log() and "level=fatal" not in externaldns.log()
    finally:
        externaldns.stop()


# --- zone files per view, served by the rendered Corefile ---------------------------------------------------

VIEWS = [dns_view("office-a", clientCIDRs=["127.0.1.0/24"]),
         dns_view("office-b", clientCIDRs=["127.0.2.0/24"]),
         dns_view("quiet", clientCIDRs=["127.0.3.0/24"]),  # no key of its own: serves the default records
         dns_view("geo-de", countries=["DE"]),
         dns_view("asia", continents=["AS"])]


@dataclass
class Served:
    coredns: RegionalCoreDNS
    hook: WebhookClient

    def apply(self, **changes: list[dict]) -> None:
        response = self.hook.apply(changes)
        assert response.status_code == 204, response.text

    def writes(self) -> dict[str, float]:
        metrics = self.coredns.sidecar.metrics()
        return {key: value for key, value in metrics.items() if key.startswith("fleetdns_zonefiles_writes_total")}


@pytest.fixture(scope="module")
def served(etcd, tmp_path_factory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("views-serving")
    segment = f"sv{uuid.uuid4().hex[:8]}"
    webhook = WebhookProvider(etcd.endpoints, workdir, domain_filter=ZONE, prefix=f"/{segment}/",
                              name="webhook-served-views").start()
    coredns = regional_coredns(ZONE, etcd.endpoints, workdir / "coredns", "coredns-views", etcd_path=segment,
                               views=VIEWS, region="east", geoip_db=write_geoip_db(workdir / "geoip.mmdb"))
    try:
        coredns.start()
        yield Served(coredns, webhook.client)
    finally:
        coredns.stop()
        webhook.stop()


APP, WWW = f"app.{ZONE}", f"www.{ZONE}"
# (source, EDNS client subnet) -> the view CoreDNS picks for it
POPULATIONS = {
    ("127.0.1.5", None): "office-a",
    ("127.0.2.5", None): "office-b",
    ("127.0.3.5", None): "quiet",
    ("127.0.0.1", "192.0.2.0/24"): "geo-de",  # Germany in rig/geoip.py
    ("127.0.0.1", "2001:db8:de::/48"): "geo-de",
    ("127.0.0.1", "203.0.113.0/24"): "asia",  # Japan
    ("127.0.0.1", "198.51.100.0/24"): "region-east",  # the United States: no view, the region's own
    ("127.0.0.1", None): "region-east",  # no ECS: GeoIP of 127.0.0.1, which the database does not know
    ("127.0.1.5", "192.0.2.0/24"): "office-a",  # CIDR blocks come before country blocks
}


def answers_by_population(served: Served, name: str) -> dict[str, set[str]]:
    return {f"{source} {subnet or ''}".strip(): ask(served.coredns, name, source, subnet)
            for source, subnet in POPULATIONS}


def expected_by_population(per_view: dict[str, str], default: str) -> dict[str, set[str]]:
    return {f"{source} {subnet or ''}".strip(): {per_view.get(view, default)}
            for (source, subnet), view in POPULATIONS.items()}


@pytest.mark.etcd
@pytest.mark.coredns
def test_each_population_gets_its_views_records_and_every_other_name_the_default_ones(served):
    app = {"region-east": "198.18.0.2", "office-a": "198.18.0.3", "geo-de": "198.18.0.4", "asia": "198.18.0.5"}
    served.apply(create=[endpoint(APP, "A", "198.18.0.1"),
                         *(endpoint(APP, "A", address, view=view) for view, address in app.items()),
                         endpoint(WWW, "A", "198.18.9.1"), endpoint(WWW, "A", "198.18.9.9", view="office-b")])
    wait_for(lambda: answers_by_population(served, APP) == expected_by_population(app, "198.18.0.1"), 20,
             "app answered per view")
    # www: overridden in office-b only; every other view (quiet has no key at all) and the region: the default.
    assert answers_by_population(served, WWW) == expected_by_population({"office-b": "198.18.9.9"}, "198.18.9.1")
    sidecar = served.coredns.sidecar
    assert all(sidecar.zone_file(ZONE, view.name).is_file() for view in VIEWS)

    # A change under one view rewrites that view's file only; a default change every file not overriding it.
    before = served.writes()
    served.apply(updateOld=[endpoint(APP, "A", "198.18.0.3", view="office-a")],
                 updateNew=[endpoint(APP, "A", "198.18.0.33", view="office-a")])
    app["office-a"] = "198.18.0.33"
    wait_for(lambda: answers_by_population(served, APP) == expected_by_population(app, "198.18.0.1"), 20,
             "office-a's new answer")
    wait_for(lambda: served.writes() != before, 5, "the sidecar's write counted")
    changed = {key for key, count in served.writes().items() if count != before.get(key)}
    assert changed == {f'fleetdns_zonefiles_writes_total{{file="office-a/db.{ZONE}"}}'}

    before = served.writes()
    served.apply(updateOld=[endpoint(WWW, "A", "198.18.9.1")], updateNew=[endpoint(WWW, "A", "198.18.9.2")])
    wait_for(lambda: answers_by_population(served, WWW) == expected_by_population({"office-b": "198.18.9.9"},
                                                                                     "198.18.9.2"), 20, "www moved")
    files = {f"db.{ZONE}", *(f"{view.name}/db.{ZONE}" for view in VIEWS if view.name != "office-b")}
    wait_for(lambda: {key for key, count in served.writes().items() if count != before.get(key)} ==
             {f'fleetdns_zonefiles_writes_total{{file="{file}"}}' for file in files}, 5, "every file but office-b's")


# --- the Corefile tool ---------------------------------------------------------------------------------------

@pytest.mark.unit
def test_the_shipped_corefile_is_what_the_tool_renders_without_dnsviews():
    assert render_corefile([]) == REGION_COREFILE.read_text()
    shown = subprocess.run([sys.executable, "-m", "serving.corefile"], capture_output=True, text=True,
                           check=True, timeout=60)
    assert shown.stdout == REGION_COREFILE.read_text()


@pytest.mark.unit
def test_views_get_blocks_cidrs_first_then_countries_then_continents_and_an_overlap_gets_none():
    views, refused = served_views([dns_view("a-geo", countries=["DE", "FR"], continents=["EU"]),
                                   dns_view("b-office", clientCIDRs=["10.1.0.0/16", "2001:db8:b::/48"]),
                                   dns_view("c-overlap", clientCIDRs=["10.1.2.0/24"]),
                                   dns_view("d-asia", continents=["AS"])])
    assert [view.name for view in views] == ["b-office", "a-geo", "d-asia"]
    assert "10.1.2.0/24 overlaps 10.1.0.0/16 of DNSView b-office" in refused["c-overlap"]
    text = render_corefile(views, Layout(geoip_db="/geo/City.mmdb"))
    blocks = text.split("\n{$FLEETDNS_ZONE}:{$FLEETDNS_DNS_PORT} {\n")[1:]
    assert [block.split("\n")[0].strip() for block in blocks] == [
        "view b-office {", "view a-geo {", "view d-asia {", "# The zone in memory, replaced when the file's SOA "
        "serial differs (checked every 100 ms: an"]
    assert "expr incidr(client_ip(), '10.1.0.0/16') || incidr(client_ip(), '2001:db8:b::/48')\n" in blocks[0]
    assert "geoip" not in blocks[0] and "file {$FLEETDNS_ZONE_DIR}/b-office/db.{$FLEETDNS_ZONE} {" in blocks[0]
    assert ("expr metadata('geoip/country/code') in ['DE', 'FR'] || metadata('geoip/continent/code') in ['EU']\n"
            in blocks[1])
    assert "    geoip /geo/City.mmdb {\n        edns-subnet\n    }\n    metadata\n" in blocks[1]
    assert "file {$FLEETDNS_ZONE_DIR}/db.{$FLEETDNS_ZONE} {" in blocks[3] and "view " not in blocks[3]


def corefile_tool(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "serving.corefile", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.unit
def test_the_tool_reads_kubectl_output_and_prints_the_sidecars_views(tmp_path):
    listed = tmp_path / "views.yaml"
    listed.write_text(
        "apiVersion: v1\nkind: List\nitems:\n"
        "- apiVersion: fleetdns.io/v1alpha1\n  kind: DNSView\n  metadata: {name: geo-de}\n"
        "  spec: {countries: [DE]}\n"
        "- apiVersion: fleetdns.io/v1alpha1\n  kind: DNSView\n  metadata: {name: office}\n"
        "  spec: {clientCIDRs: [10.0.0.0/8]}\n")
    shown = corefile_tool(str(listed), "--print-views")
    assert (shown.returncode, shown.stdout) == (0, "office,geo-de\n"), shown.stderr
    missing = corefile_tool(str(listed))
    assert missing.returncode == 2 and "DNSView geo-de matches by countries or continents" in missing.stderr
    assert "--geoip-db" in missing.stderr and missing.stdout == ""
    geo_db = write_geoip_db(tmp_path / "geo.mmdb")
    rendered = corefile_tool("-", "--geoip-db", str(geo_db), "--region", "east", "--zone", "gslb.example.com",
                             stdin=listed.read_text())
    assert rendered.returncode == 0, rendered.stderr
    assert f"geoip {geo_db} {{" in rendered.stdout and "--default-view=region-east" in rendered.stdout
    assert "gslb.example.com:{$FLEETDNS_DNS_PORT} {" in rendered.stdout


@pytest.mark.unit
def test_bad_dnsview_yaml_is_refused_naming_the_file_the_object_and_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: fleetdns.io/v1alpha1\nkind: DNSViewList\nitems:\n"
                   "- apiVersion: fleetdns.io/v1alpha1\n  kind: DNSView\n  metadata: {name: fine}\n"
                   "  spec: {clientCIDRs: [10.0.0.0/8]}\n"
                   "- apiVersion: fleetdns.io/v1alpha1\n  kind: DNSView\n  metadata: {name: geo}\n"
                   "  spec: {countries: [de]}\n")
    refused = corefile_tool(str(bad))
    assert refused.returncode == 2 and refused.stdout == ""
    assert f"{bad}: document 1, items[1]: DNSView 'geo': spec.countries[0] 'de'" in refused.stderr
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("apiVersion: fleetdns.io/v1alpha1\nkind: DNSView\nmetadata: {name: ok}\nspec: {countries: [DE]}\n"
                     "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    refused = corefile_tool(str(wrong))
    assert refused.returncode == 2 and f"{wrong}: document 2: expected kind DNSView" in refused.stderr
    host_bits = tmp_path / "bits.yaml"
    host_bits.write_text("apiVersion: fleetdns.io/v1alpha1\nkind: DNSView\nmetadata: {name: lab}\n"
                         "spec: {clientCIDRs: [10.0.0.1/8]}\n")
    refused = corefile_tool(str(host_bits))
    assert refused.returncode == 2 and "DNSView 'lab': spec.clientCIDRs[0] '10.0.0.1/8'" in refused.stderr


@pytest.mark.unit
def test_the_sidecar_refuses_a_view_that_names_no_served_view(tmp_path):
    common = [sys.executable, "-m", "serving.zonefiles", f"--zone={ZONE}", f"--zone-dir={tmp_path}",
              f"--weight-file={tmp_path / 'weights'}"]
    for flag, value in (("--views", "office-a,Office_B"), ("--views", "a,a"), ("--default-view", "region-")):
        refused = subprocess.run([*common, f"{flag}={value}"], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and f"invalid {flag}={value!r}" in refused.stderr, refused.stderr
