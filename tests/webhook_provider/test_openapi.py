"""The webhook's OpenAPI description (webhook_provider/openapi.yaml) says what its two servers really serve."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
import yaml
from prometheus_client import CollectorRegistry

from fleetdns.probes import probe_app
from tests.support.webhook import running_webhook
from webhook_provider.api import create_api, openapi_description
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.metrics import Metrics
from webhook_provider.provider import Provider

DESCRIPTION = Path(__file__).resolve().parents[2] / "webhook_provider" / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _routes(app) -> set[tuple[str, str]]:  # noqa: ANN001 - a Flask app
    """(path, method) of every route a Flask app has, without the HEAD and OPTIONS Flask adds to each."""
    return {(rule.rule, method.lower()) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def _described(document: dict, on_health_port: bool) -> set[tuple[str, str]]:
    """(path, method) of every operation the description puts on the API port (or the health port: its own servers)."""
    return {(path, method) for path, item in document["paths"].items() for method in item
            if method in HTTP_METHODS and ("servers" in item) == on_health_port}


@pytest.mark.unit
def test_the_description_lists_exactly_the_routes_of_the_api_and_health_servers():
    document = yaml.safe_load(DESCRIPTION.read_text())
    metrics = Metrics.create()
    # No I/O happens until a request arrives: the provider's store is never called here.
    provider = Provider(None, "/skydns/", DomainFilter(), metrics, 128, 1 << 20)  # type: ignore[arg-type]
    assert _routes(create_api(provider, metrics, 1 << 20)) == _described(document, on_health_port=False)
    assert _routes(probe_app(lambda: (True, ""), CollectorRegistry())) == _described(document, on_health_port=True)


@pytest.mark.unit
def test_the_description_is_openapi_3_1_that_schemathesis_can_generate_requests_from():
    schema = schemathesis.openapi.from_path(str(DESCRIPTION))
    operations = {(op.path, op.method) for op in (result.ok() for result in schema.get_all_operations())}
    document = yaml.safe_load(openapi_description())  # as the installed package reads it
    assert document["openapi"] == "3.1.0"
    assert operations == _described(document, on_health_port=False) | _described(document, on_health_port=True)


@pytest.mark.etcd
def test_the_api_serves_its_description_byte_for_byte(etcd, tmp_path):
    with running_webhook(etcd, tmp_path, "oa", domain_filter="example.org") as (server, _):
        response = server.client.session.get(server.url + "/openapi.yaml", timeout=5)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/yaml")
        assert response.content == DESCRIPTION.read_bytes()
        assert server.client.session.get(f"http://127.0.0.1:{server.health_port}/openapi.yaml",
                                         timeout=5).status_code == 404
