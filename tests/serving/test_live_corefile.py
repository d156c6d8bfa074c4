"""``fleetdns-zonefiles --corefile``: the Corefile rendered from the DNSViews in etcd and loaded by real CoreDNS's
``reload`` plugin (docs/design/views.md §7). The view keys are written here as the webhook writes them
(``/fleetdns/views/<name>``, tests/webhook_provider/test_host_views.py proves the webhook's part); the records come
through the real webhook. Clients are loopback source addresses (127.0.0.0/8 is all local)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import pytest

from fleetdns.dnsview import VIEW_PROPERTY, VIEWS_KEY_PREFIX
from rig.coredns import RegionalCoreDNS, regional_coredns
from rig.region import WebhookProvider
from rig.waiting import holds_for, wait_for
from tests.support.etcd import etcd_kv
from tests.support.webhook import running_webhook

pytestmark = [pytest.mark.etcd, pytest.mark.coredns]

ZONE = "gslb.example.com"
APP = f"app.{ZONE}"
DEFAULT, REGION, OFFICE = "198.18.0.1", "198.18.0.2", "198.18.0.3"
CLIENT = "127.0.1.5"
RELOADED = 15.0  # a Corefile change: the sidecar's pass (0.1 s) and CoreDNS's reload check (every 2 s)


def endpoint(name: str, target: str, view: str = "") -> dict:
    found: dict = {"dnsName": name, "recordType": "A", "targets": [target]}
    if view:
        found["setIdentifier"] = view
        found["providerSpecific"] = [{"name": VIEW_PROPERTY, "value": view}]
    return found


@dataclass
class Live:
    coredns: RegionalCoreDNS
    webhook: WebhookProvider
    etcd_url: str

    def put_view(self, name: str, value: str | None) -> None:
        kv = etcd_kv(self.etcd_url)
        try:
            if value is None:
                kv.delete(VIEWS_KEY_PREFIX + name)
            else:
                kv.put(VIEWS_KEY_PREFIX + name, value)
        finally:
            kv.close()

    def ask(self, source: str = CLIENT) -> set[str]:
        response = dns.query.udp(dns.message.make_query(APP, "A"), self.coredns.host, port=self.coredns.port,
                                 timeout=1, source=source)
        return {rr.to_text() for rrset in response.answer if rrset.rdtype == dns.rdatatype.A for rr in rrset}

    def metrics(self) -> dict[str, float]:
        return self.coredns.sidecar.metrics()

    def sidecar_log(self) -> str:
        return self.coredns.sidecar.process.log_path.read_text()


@pytest.fixture(scope="module")
def live(etcd, tmp_path_factory) -> Iterator[Live]:
    kv = etcd_kv(etcd.endpoints[0])
    kv.delete_prefix(VIEWS_KEY_PREFIX)  # the session's etcd: no view of another test
    kv.close()
    workdir = tmp_path_factory.mktemp("live-corefile")
    with running_webhook(etcd, workdir, "lv", domain_filter=ZONE, name="webhook-live") as (webhook, prefix):
        coredns = regional_coredns(ZONE, etcd.endpoints, workdir / "coredns", "coredns-live",
                                   etcd_path=prefix.strip("/"), region="east")  # no GeoIP database
        try:
            coredns.start()
            found = Live(coredns, webhook, etcd.endpoints[0])
            assert webhook.client.apply({"create": [endpoint(APP, DEFAULT), endpoint(APP, REGION, "region-east")]}
                                        ).status_code == 204
            wait_for(lambda: found.ask() == {REGION}, 20, "the region's view for a client of no DNSView")
            yield found
        finally:
            coredns.stop()
            kv = etcd_kv(etcd.endpoints[0])
            kv.delete_prefix(VIEWS_KEY_PREFIX)
            kv.close()


def test_a_new_views_block_comes_with_its_zone_file_and_its_clients_never_get_an_empty_answer(live: Live) -> None:
    seen: list[frozenset[str] | str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.01):
            try:
                answer = frozenset(live.ask())
            except dns.exception.DNSException as error:
                seen.append(f"no reply: {error}")
                continue
            if not seen or seen[-1] != answer:
                seen.append(answer)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        renders = live.metrics()["fleetdns_zonefiles_corefile_renders_total"]
        live.put_view("office", json.dumps({"clientCIDRs": ["127.0.1.0/24"]}))
        # the view's own records are not there yet: its file holds the default records
        wait_for(lambda: live.ask() == {DEFAULT}, RELOADED, "the office's block, on the default records")
        assert live.coredns.corefile_views() == ["office"]
        assert live.ask("127.0.0.1") == {REGION}
        assert live.webhook.client.apply({"create": [endpoint(APP, OFFICE, "office")]}).status_code == 204
        wait_for(lambda: seen and seen[-1] == frozenset({OFFICE}), RELOADED, "the office's own answer")
    finally:
        stop.set()
        watcher.join(5)
    assert seen == [frozenset({REGION}), frozenset({DEFAULT}), frozenset({OFFICE})], seen
    log = live.sidecar_log()
    file_written = log.index('view="office"')  # "zone file replaced" for office/db.<zone>
    assert file_written < log.index('added=["office"]'), "the Corefile named the view before its file was written"
    metrics = live.metrics()
    assert metrics["fleetdns_zonefiles_corefile_renders_total"] == renders + 1
    assert metrics["fleetdns_zonefiles_views_served"] == 1

    live.put_view("office", None)  # removed: its clients fall to the catch-all, the region's view
    wait_for(lambda: live.ask() == {REGION}, RELOADED, "the office's clients back on the region's view")
    assert live.coredns.corefile_views() == []
    assert live.webhook.client.apply({"delete": [endpoint(APP, OFFICE, "office")]}).status_code == 204


def test_views_that_cannot_be_served_are_left_out_logged_and_counted_and_the_others_still_served(live: Live) -> None:
    live.put_view("office", json.dumps({"clientCIDRs": ["127.0.1.0/24"]}))
    live.put_view("overlap", json.dumps({"clientCIDRs": ["127.0.1.0/25"]}))  # after office by name: refused
    live.put_view("germany", json.dumps({"countries": ["DE"]}))  # GeoIP, and this sidecar has no --geoip-db
    live.put_view("broken", "{not json")
    try:
        wait_for(lambda: live.metrics().get('fleetdns_zonefiles_views_left_out{reason="invalid"}') == 1 and
                 live.metrics().get('fleetdns_zonefiles_views_left_out{reason="no_geoip_db"}') == 1 and
                 live.metrics().get('fleetdns_zonefiles_views_left_out{reason="overlapping_cidrs"}') == 1,
                 RELOADED, "three views left out, by reason")
        wait_for(lambda: live.ask() == {DEFAULT}, RELOADED, "office still served")
        assert live.coredns.corefile_views() == ["office"]
        log = live.sidecar_log()
        for view, reason in (("overlap", "overlapping_cidrs"), ("germany", "no_geoip_db"), ("broken", "invalid")):
            assert f'msg="DNSView left out of the Corefile" view="{view}" reason="{reason}"' in log, view
    finally:
        for name in ("office", "overlap", "germany", "broken"):
            live.put_view(name, None)
    wait_for(lambda: live.coredns.corefile_views() == [] and live.ask() == {REGION}, RELOADED, "no view again")


def test_a_corefile_coredns_refuses_leaves_the_running_configuration_answering(live: Live) -> None:
    live.put_view("office", json.dumps({"clientCIDRs": ["127.0.1.0/24"]}))
    wait_for(lambda: live.ask() == {DEFAULT}, RELOADED, "office served")
    coredns_log = live.coredns.process.log_path
    failed_before = coredns_log.read_text().count("Corefile changed but reload failed")
    # as if a bad render reached the disk: a directive CoreDNS does not know
    live.coredns.corefile_path.write_text(f"{ZONE}:{live.coredns.port} {{\n    nosuchplugin\n}}\n")
    wait_for(lambda: coredns_log.read_text().count("Corefile changed but reload failed") > failed_before,
             RELOADED, "CoreDNS refusing the file")
    holds_for(lambda: live.ask() == {DEFAULT} and live.ask("127.0.0.1") == {REGION}, 3,
              "the old configuration answering every client")
    live.put_view("office", None)  # the sidecar's next Corefile is loaded as usual
    wait_for(lambda: live.ask() == {REGION} and live.coredns.corefile_views() == [], RELOADED,
             "the sidecar's Corefile loaded again")


@pytest.mark.unit
def test_views_that_cannot_render_are_left_out_by_reason_and_the_rest_keep_block_order():
    from fleetdns.dnsview import parse_dns_view
    from serving.live_corefile import NO_GEOIP_DB, OVERLAP, choose_served

    def view(name: str, **spec: object):
        return parse_dns_view({"metadata": {"name": name}, "spec": spec})

    views = [view("b-geo", countries=["DE"]), view("a-office", clientCIDRs=["10.0.0.0/8"]),
             view("c-overlap", clientCIDRs=["10.1.0.0/16"])]
    served, left_out = choose_served(views, geoip_db="")
    assert [v.name for v in served] == ["a-office"]
    assert {name: reason for name, (reason, _) in left_out.items()} == {"b-geo": NO_GEOIP_DB, "c-overlap": OVERLAP}
    served, left_out = choose_served(views, geoip_db="/geo/City.mmdb")
    assert [v.name for v in served] == ["a-office", "b-geo"] and list(left_out) == ["c-overlap"]


@pytest.mark.unit
def test_the_sidecar_takes_either_a_views_list_or_a_corefile_to_render(tmp_path):
    from fleetdns.config import ConfigError
    from serving.zonefiles import load_settings

    base = [f"--zone={ZONE}", f"--zone-dir={tmp_path}", f"--weight-file={tmp_path / 'weights'}"]
    settings = load_settings([*base, f"--corefile={tmp_path / 'Corefile'}"], environ={})
    assert settings.corefile == tmp_path / "Corefile" and settings.views_prefix == VIEWS_KEY_PREFIX
    with pytest.raises(ConfigError, match="--views"):
        load_settings([*base, f"--corefile={tmp_path / 'Corefile'}", "--views=office"], environ={})
    with pytest.raises(ConfigError, match="--geoip-db"):
        load_settings([*base, f"--corefile={tmp_path / 'Corefile'}", f"--geoip-db={tmp_path / 'none.mmdb'}"],
                      environ={})
    with pytest.raises(ConfigError, match="--corefile"):
        load_settings([*base, f"--corefile={tmp_path / 'missing' / 'Corefile'}"], environ={})


@pytest.mark.unit
def test_the_sidecar_binds_every_block_to_the_addresses_given_and_refuses_what_is_not_an_address(tmp_path):
    from fleetdns.config import ConfigError
    from fleetdns.dnsview import parse_dns_view
    from serving.corefile import Layout, render_corefile
    from serving.zonefiles import load_settings

    base = [f"--zone={ZONE}", f"--zone-dir={tmp_path}", f"--weight-file={tmp_path / 'weights'}"]
    corefile = f"--corefile={tmp_path / 'Corefile'}"
    settings = load_settings([*base, corefile, "--dns-bind= 127.0.0.5, ::1,127.0.0.5"], environ={})
    assert settings.dns_bind == ("127.0.0.5", "::1")
    office = parse_dns_view({"metadata": {"name": "office"}, "spec": {"clientCIDRs": ["10.0.0.0/8"]}})
    text = render_corefile([office], Layout(bind=settings.dns_bind))
    assert text.count(":{$FLEETDNS_DNS_PORT} {\n    bind 127.0.0.5 ::1\n") == 2  # the view's block, the catch-all
    assert "bind" not in render_corefile([office], Layout())
    with pytest.raises(ConfigError, match=r"--dns-bind.*'ns1' is not an IP address"):
        load_settings([*base, corefile, "--dns-bind=127.0.0.5,ns1"], environ={})
    with pytest.raises(ConfigError, match="--dns-bind.*needs --corefile"):
        load_settings([*base, "--dns-bind=127.0.0.5"], environ={})


@pytest.mark.unit
def test_fleetdns_corefile_renders_bind_in_every_block_or_names_the_bad_address(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "Corefile"
    done = subprocess.run([sys.executable, "-m", "serving.corefile", "--bind=127.0.0.5", "-o", str(out)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert out.read_text().count("    bind 127.0.0.5\n") == 1  # no DNSView: the catch-all block only
    refused = subprocess.run([sys.executable, "-m", "serving.corefile", "--bind=127.0.0.5,ns1.example.com"],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "--bind" in refused.stderr and "'ns1.example.com' is not an IP address" \
        in refused.stderr, refused.stderr
