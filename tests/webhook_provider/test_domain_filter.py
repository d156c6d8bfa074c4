"""The domain filter: ExternalDNS's matching rules, the regex form and its negotiation JSON."""

from __future__ import annotations

import pytest

from webhook_provider.domain_filter import DomainFilter

pytestmark = pytest.mark.unit


def test_domain_filter_follows_externaldns_matching_rules():
    f = DomainFilter.from_lists(["example.org", ".sub.example.net", "xn--bcher-kva.example"], ["bad.example.org"])
    assert f.match("example.org") and f.match("a.example.org") and f.match("A.Example.org.")
    assert not f.match("badexample.org") and not f.match("bad.example.org") and not f.match("x.bad.example.org")
    assert f.match("x.sub.example.net") and not f.match("sub.example.net")
    assert f.match("shop.bücher.example") and f.match("shop.xn--bcher-kva.example")
    assert f.to_json() == {"include": [".sub.example.net", "bücher.example", "example.org"],
                           "exclude": ["bad.example.org"]}
    assert DomainFilter().match("anything.at.all") and DomainFilter().to_json() == {}


def test_regex_domain_filter_and_its_negotiation_json():
    f = DomainFilter.from_regex(r"\.example\.org$", r"^internal\.")
    assert f.match("a.example.org") and not f.match("internal.example.org") and not f.match("a.example.net")
    assert f.to_json() == {"regexInclude": r"\.example\.org$", "regexExclude": r"^internal\."}
