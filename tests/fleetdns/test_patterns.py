"""Every pattern that decides whether input is valid refuses a trailing newline and non-ASCII digits.

``re.match`` with ``$`` also matches just before a trailing ``\\n``, so ``app\\n.example.org`` was stored and served
as ``app\\010``; ``str.isdigit`` accepts ``²``, which ``int()`` then refuses with a ValueError that failed a whole
batch with 500. One test per pattern (issue 14).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fleetdns.config import ConfigError, parse_duration, parse_host_port
from fleetdns.dnsname import (
    InvalidDNSNameError,
    check_publishable,
    is_dns_label,
    is_dns_subdomain,
    normalize_name,
    normalize_stored_name,
)
from fleetdns.dnsview import DNSViewError, check_served_view_name, check_view_name, parse_dns_view
from fleetdns.skydns.settings import parse_prefix
from fleetdns.skydns.targets import InvalidTargetError, canonical_target
from fleetdns.weights import WeightsFormatError, parse_weights
from serving.corefile import _layout, build_parser


@pytest.mark.parametrize("name", ["app\n.example.org", "app.example\n.org", "app\r.example.org", "ap\np.example.org"])
def test_a_dns_name_with_a_newline_in_a_label_is_refused(name: str) -> None:
    with pytest.raises(InvalidDNSNameError, match="may hold only"):
        normalize_name(name)
    with pytest.raises(InvalidDNSNameError):
        check_publishable(name)


def test_a_name_an_older_version_stored_with_a_newline_label_is_still_found_for_its_delete() -> None:
    assert normalize_stored_name("App\n.example.org") == "app\n.example.org"
    for never_stored in ("a\n\n.example.org", "a\nb.example.org", "a-*.example.org", "-a\n.example.org"):
        with pytest.raises(InvalidDNSNameError):
            normalize_stored_name(never_stored)


def test_surrounding_blanks_of_a_whole_name_are_still_folded_away() -> None:
    assert normalize_name(" App.Example.org.\n") == "app.example.org"


@pytest.mark.parametrize(("check", "value"), [
    (is_dns_label, "east\n"),
    (is_dns_subdomain, "member-1.example\n"),
])
def test_kubernetes_name_patterns_refuse_a_trailing_newline(check: Callable[[str], bool], value: str) -> None:
    assert check(value.rstrip("\n"))
    assert not check(value)


@pytest.mark.parametrize(("check", "value"), [
    (check_view_name, "office\n"),
    (check_served_view_name, "office\n"),
    (check_served_view_name, "region-east\n"),
])
def test_a_view_name_with_a_trailing_newline_is_refused(check: Callable[[str], None], value: str) -> None:
    check(value.rstrip("\n"))
    with pytest.raises(DNSViewError):
        check(value)


@pytest.mark.parametrize(("spec", "field"), [
    ({"countries": ["DE\n"]}, "spec.countries[0]"),
    ({"clientCIDRs": ["10.0.0.0/8"], "latencyFrom": "east\n"}, "spec.latencyFrom"),
])
def test_a_dnsview_spec_with_a_trailing_newline_is_refused(spec: dict, field: str) -> None:
    with pytest.raises(DNSViewError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_dns_view({"metadata": {"name": "office"}, "spec": spec})


def test_a_corefile_region_with_a_newline_is_refused() -> None:
    with pytest.raises(ConfigError, match="--region"):
        _layout(build_parser().parse_args(["--region=ea\nst"]))


@pytest.mark.parametrize(("parse", "value"), [
    (lambda v: parse_duration("--etcd-timeout", v), "5s\n1s"),
    (lambda v: parse_host_port("--listen", v), "127.0.0.1:8888\n1"),
    (parse_prefix, "/skydns\n/"),
])
def test_configuration_patterns_refuse_an_embedded_newline(parse: Callable[[str], object], value: str) -> None:
    with pytest.raises(ConfigError):
        parse(value)


@pytest.mark.parametrize("target", ["1 ² 80 sip.example.org.", "1 5 ８０ sip.example.org.",
                                    "1 5 80 sip\n.example.org."])
def test_an_srv_target_with_non_ascii_digits_or_a_newline_is_an_invalid_target(target: str) -> None:
    with pytest.raises(InvalidTargetError):
        canonical_target("SRV", target)


def test_an_mx_preference_in_superscript_digits_is_an_invalid_target() -> None:
    with pytest.raises(InvalidTargetError):
        canonical_target("MX", "¹ mail.example.org")


@pytest.mark.parametrize("value", ["198.18.1.1=²", "198.18.1.1=٥"])
def test_a_weight_in_non_ascii_digits_is_unusable(value: str) -> None:
    with pytest.raises(WeightsFormatError, match="is not <ip>=<weight>"):
        parse_weights(value)
