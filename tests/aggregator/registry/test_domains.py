"""A Domain's rules: names outside it are refused, and the most specific Domain's namespaceSelector decides who
may publish under it."""

from __future__ import annotations

import pytest

from aggregator.model import parse_domain
from aggregator.registry.domains import NAME_OUTSIDE_DOMAIN, NAMESPACE_NOT_ALLOWED, NamespaceLabels, judge_names
from tests.support.model import domain

pytestmark = pytest.mark.unit


# --- the Domain rules ------------------------------------------------------------------------------------


TEAM = {"matchLabels": {"team": "shop"}}
SHOP = NamespaceLabels("shop", {"team": "shop"})
OTHER = NamespaceLabels("other", {"team": "other"})


def test_names_outside_the_intents_domain_are_refused() -> None:
    home = domain("shop", "fleet", "example.com")
    refused = judge_names({"a.example.com", "example.com", "a.example.org", "badexample.com"}, SHOP, home, [[home]])
    assert sorted(refused) == ["a.example.org", "badexample.com"]
    assert {r.reason for r in refused.values()} == {NAME_OUTSIDE_DOMAIN}
    assert refused["a.example.org"].message == "a.example.org is not under Domain shop/fleet (example.com)"


def test_the_most_specific_domain_decides_who_may_publish_under_it() -> None:
    platform = [domain("fleetdns-system", "corp", "example.com", TEAM),
                domain("fleetdns-system", "apps", "apps.example.com", {})]  # delegated to everyone
    refused = judge_names({"x.example.com", "x.apps.example.com", "x.example.org"}, OTHER, None, [[], platform])
    assert sorted(refused) == ["x.example.com"]
    assert refused["x.example.com"].reason == NAMESPACE_NOT_ALLOWED
    assert refused["x.example.com"].message == (
        "x.example.com: Domain fleetdns-system/corp (example.com) admits namespaces matching team=shop; "
        "namespace other does not match")
    assert judge_names({"x.example.com"}, SHOP, None, [[], platform]) == {}


def test_a_domain_in_the_teams_own_namespace_never_widens_the_platforms() -> None:
    platform = [domain("fleetdns-system", "corp", "example.com", TEAM)]
    own = [domain("other", "mine", "mine.example.com"), domain("other", "same", "example.com")]
    refused = judge_names({"x.mine.example.com", "x.example.com"}, OTHER, None, [own, platform])
    assert sorted(refused) == ["x.example.com", "x.mine.example.com"]


def test_selectors_with_expressions_and_unknown_or_unreadable_labels() -> None:
    zones = [domain("fleetdns-system", "prod", "prod.example.com",
                    {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["prod"]},
                                          {"key": "frozen", "operator": "DoesNotExist"}]}),
             domain("fleetdns-system", "open", "open.example.com")]
    names = {"a.prod.example.com", "a.open.example.com"}
    assert judge_names(names, NamespaceLabels("p", {"tier": "prod"}), None, [zones]) == {}
    assert list(judge_names(names, NamespaceLabels("p", {"tier": "prod", "frozen": "y"}), None, [zones])) == [
        "a.prod.example.com"]
    unknown = judge_names(names, NamespaceLabels("p", None, "host namespaces cannot be listed: 403"), None, [zones])
    assert list(unknown) == ["a.prod.example.com"]  # a Domain without a selector needs no labels
    assert "labels of namespace p are unknown (host namespaces cannot be listed: 403)" in unknown[
        "a.prod.example.com"].message
    broken = parse_domain({"metadata": {"namespace": "fleetdns-system", "name": "b"},
                           "spec": {"domain": "b.example.com", "namespaceSelector": {"matchLabels": "x"}}})
    refused = judge_names({"a.b.example.com"}, SHOP, None, [[broken]])
    assert "admits no namespace: its spec.namespaceSelector cannot be read" in refused["a.b.example.com"].message
