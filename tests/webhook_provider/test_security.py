"""What the webhook exposes: its API only on loopback by default, and nothing of the records on the health port
(which listens on every address: the kubelet and Prometheus reach it)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from fleetdns.probes import probe_app
from tests.support.webhook import a_record, running_webhook
from webhook_provider.settings import LOOPBACK_HOSTS, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_by_default_the_api_listens_on_loopback_only():
    """Anyone who reaches the API can rewrite the zone: by default only the pod's own ExternalDNS can."""
    settings = load_settings([], environ={})
    assert settings.listen[0] in LOOPBACK_HOSTS
    assert settings.listen[0] in ("127.0.0.1", "localhost")  # IPv4: ExternalDNS is told http://127.0.0.1:8888


@pytest.mark.unit
def test_the_shipped_manifest_and_chart_keep_the_api_on_loopback():
    documents = yaml.safe_load_all((REPO_ROOT / "manifests" / "region" / "externaldns-webhook.yaml").read_text())
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    (webhook,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "webhook"]
    assert "WEBHOOK_LISTEN" not in {item["name"] for item in webhook.get("env", [])}  # the default: loopback
    assert not [arg for arg in webhook.get("args", []) if arg.startswith("--listen")]
    template = (REPO_ROOT / "charts" / "fleetdns" / "templates" / "region" / "publisher.yaml").read_text()
    listen = [line.strip() for line in template.splitlines() if line.strip().startswith("- --listen=")]
    assert listen == ["- --listen=127.0.0.1:{{ $p.webhook.port }}"]


@pytest.mark.etcd
def test_the_health_port_serves_probes_and_metrics_and_no_record(etcd, tmp_path):
    """GET every path the health server has (and the API's paths there): no name, target or label of a stored or
    refused record appears, and the API itself is not served on that port."""
    tag = uuid.uuid4().hex[:10]
    secrets = [f"s3cr3t-{tag}", f"203.0.113.{int(tag[:2], 16) % 200 + 20}", f"token-{tag}", f"hidden-{tag}",
               f"owner-{tag}", f"refused-{tag}"]
    with running_webhook(etcd, tmp_path, "sec", domain_filter="example.org") as (server, _):
        client = server.client
        records = [a_record(f"s3cr3t-{tag}.example.org", secrets[1], labels={"owner": f"owner-{tag}"}),
                   {"dnsName": f"txt-{tag}.example.org", "recordType": "TXT", "targets": [f'"token-{tag}"']},
                   {"dnsName": f"alias-{tag}.example.org", "recordType": "CNAME",
                    "targets": [f"hidden-{tag}.example.org"]},
                   a_record(f"refused-{tag}.example.org", "not-an-address")]  # skipped: the rejection is counted
        assert client.apply({"create": records}).status_code == 204
        assert client.adjust(records).status_code == 200
        listed = client.records().text
        assert all(secret in listed for secret in secrets[:5])  # the API does answer them

        health = f"http://127.0.0.1:{server.health_port}"
        served = sorted(rule.rule for rule in probe_app(lambda: (True, ""), CollectorRegistry()).url_map.iter_rules())
        assert served == ["/healthz", "/metrics", "/readyz"]
        for path in served:
            response = client.session.get(health + path, timeout=5)
            assert response.status_code == 200, path
            assert [secret for secret in secrets if secret in response.text] == [], path
        assert "fleetdns_webhook_records_rejected_total" in client.session.get(health + "/metrics", timeout=5).text
        for path in ("/", "/records", "/adjustendpoints", "/openapi.yaml", "/static/x"):
            response = client.session.get(health + path, timeout=5)
            assert response.status_code == 404, path
            assert [secret for secret in secrets if secret in response.text] == [], path
        assert client.session.post(health + "/records", json={"create": records}, timeout=5).status_code == 404
