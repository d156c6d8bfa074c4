"""The aggregator's flags: defaults, environment variables, and a bad value named with its flag (exit code 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aggregator.settings import parse_settings
from fleetdns.config import ConfigError

pytestmark = pytest.mark.unit


def test_defaults() -> None:
    settings = parse_settings([])
    assert (settings.member_grace_period, settings.health_port, settings.leader_election) == (30.0, 8081, True)
    assert (settings.lease_name, settings.leader_election_namespace) == ("fleetdns-aggregator", "fleetdns-system")


def test_flags_read_their_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETDNS_AGGREGATOR_MEMBER_GRACE_PERIOD", "1m30s")
    monkeypatch.setenv("FLEETDNS_AGGREGATOR_LEADER_ELECTION", "false")
    settings = parse_settings([])
    assert settings.member_grace_period == 90.0 and not settings.leader_election


@pytest.mark.parametrize(("argv", "flag"), [
    (["--member-grace-period=soon"], "--member-grace-period"),
    (["--health-listen=8081"], "--health-listen"),
    (["--leader-election=maybe"], "--leader-election"),
    (["--lease-name=Not_Valid"], "--lease-name"),
    (["--renew-deadline=20s"], "--renew-deadline"),
    (["--workers=0"], "--workers"),
    (["--kubeconfig=/no/such/file"], "--kubeconfig"),
    (["--log-level=loud"], "--log-level"),
    (["--self-service-domain=fleet.prod"], "--self-service-domain"),  # a domainRef is a DNS label (the CRDs check)
])
def test_invalid_flags_name_the_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(argv)
    assert error.value.flag == flag


def test_invalid_flag_exits_with_code_2_and_names_flag_and_value() -> None:
    result = subprocess.run([sys.executable, "-m", "aggregator", "--member-grace-period=soon"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--member-grace-period='soon'" in result.stderr


def test_the_router_namespace_flag_defaults_to_openshift_ingress_and_must_be_a_label() -> None:
    assert parse_settings([]).openshift_router_namespace == "openshift-ingress"
    assert parse_settings(["--openshift-router-namespace=routers"]).openshift_router_namespace == "routers"
    with pytest.raises(Exception, match="--openshift-router-namespace"):
        parse_settings(["--openshift-router-namespace=Not_A_Label"])


def test_prober_flags_default_to_10s_and_fleetdns_system_and_refuse_bad_values() -> None:
    settings = parse_settings([])
    assert (settings.prober_grace_period, settings.prober_lease_namespace) == (10.0, "fleetdns-system")
    assert parse_settings(["--prober-grace-period=2s"]).prober_grace_period == 2.0
    for argv, flag in ((["--prober-grace-period=0s"], "--prober-grace-period"),
                       (["--prober-grace-period=soon"], "--prober-grace-period"),
                       (["--prober-lease-namespace=Not_A_Namespace"], "--prober-lease-namespace")):
        with pytest.raises(ConfigError) as error:
            parse_settings(argv)
        assert error.value.flag == flag


def test_dns_resolver_flag_takes_ip_and_port_lists_and_refuses_names() -> None:
    settings = parse_settings(["--dns-resolver=127.0.0.1:5353,10.96.0.10", "--dns-resolver=[2001:db8::53]:53"])
    assert settings.dns_resolvers == (("127.0.0.1", 5353), ("10.96.0.10", 53), ("2001:db8::53", 53))
    assert parse_settings([]).resolve_lb_hostnames is True and parse_settings([]).dns_resolvers == ()
    assert parse_settings(["--resolve-lb-hostnames=false"]).resolve_lb_hostnames is False
    with pytest.raises(ConfigError, match=r"--dns-resolver='dns\.example:53': expected IP or IP:PORT"):
        parse_settings(["--dns-resolver=dns.example:53"])
    with pytest.raises(ConfigError, match="--resolve-lb-hostnames='sometimes'"):
        parse_settings(["--resolve-lb-hostnames=sometimes"])
