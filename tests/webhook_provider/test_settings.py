"""The webhook's settings: flags and environment variables, and a bad value named with its flag."""

from __future__ import annotations

import pytest

from fleetdns.config import ConfigError
from webhook_provider.settings import load_settings

pytestmark = pytest.mark.unit


def test_settings_read_flags_and_the_issue_s_environment_variables(monkeypatch):
    env = {"ETCD_URLS": "http://10.0.0.1:2379,http://10.0.0.2:2379", "WEBHOOK_PREFIX": "/gslb",
           "DOMAIN_FILTER": "example.org,example.net"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings([], env)
    assert [e.url for e in settings.etcd.endpoints] == ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    assert settings.prefix == "/gslb/" and settings.domain_filter.include == ("example.net", "example.org")
    assert settings.listen == ("127.0.0.1", 8888) and settings.health_listen == ("0.0.0.0", 8080)


@pytest.mark.parametrize(("argv", "env", "flag"), [
    (["--etcd-endpoints=ftp://x:1"], {}, "--etcd-endpoints"),
    (["--listen=nope"], {}, "--listen"),
    (["--prefix=skydns"], {}, "--prefix"),
    (["--domain-filter=example.org", "--regex-domain-filter=x"], {}, "--regex-domain-filter"),
    (["--regex-domain-filter=("], {}, "--regex-domain-filter"),
    (["--max-request-bytes=0"], {}, "--max-request-bytes"),
    (["--etcd-endpoints=https://127.0.0.1:2379"], {"ETCD_TLS_INSECURE": "true"}, "ETCD_TLS_INSECURE"),
    ([], {"ETCD_USERNAME": "root"}, "ETCD_USERNAME"),
    (["--etcd-endpoints=https://127.0.0.1:2379"], {"ETCD_CA_FILE": "/no/such/ca.pem"}, "ETCD_CA_FILE"),
])
def test_invalid_configuration_names_the_flag_and_the_value(argv, env, flag):
    with pytest.raises(ConfigError) as error:
        load_settings(argv, env)
    assert error.value.flag == flag


def test_the_relay_listens_on_loopback_only(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(ConfigError, match="loopback"):
        load_settings([f"--host-kubeconfig={kubeconfig}", "--host-relay-listen=0.0.0.0:8889"], {})
    settings = load_settings([f"--host-kubeconfig={kubeconfig}", "--region=east"], {})
    assert settings.host is not None and settings.host.relay_listen == ("127.0.0.1", 8889)
    assert load_settings([], {}).host is None
    with pytest.raises(ConfigError, match="--host-kubeconfig"):
        load_settings([f"--host-kubeconfig={tmp_path / 'missing'}"], {})
