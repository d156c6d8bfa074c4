"""Label selectors: every label and expression must hold, an empty one selects everything, a bad one names the
field."""

from __future__ import annotations

from typing import Any

import pytest

from fleetdns.labelselector import SelectorError, parse_label_selector

pytestmark = pytest.mark.unit


# --- label selectors ---------------------------------------------------------------------------------------------

def test_a_selector_needs_every_label_and_expression_to_hold() -> None:
    selector = parse_label_selector({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["front", "edge"]},
        {"key": "internal", "operator": "DoesNotExist"},
        {"key": "env", "operator": "NotIn", "values": ["dev"]}]}, "spec.selector")
    assert selector.matches({"app": "web", "tier": "edge"})
    assert selector.matches({"app": "web", "tier": "front", "env": "prod"})
    assert not selector.matches({"app": "web", "tier": "back"})
    assert not selector.matches({"app": "web", "tier": "edge", "internal": "yes"})
    assert not selector.matches({"app": "web", "tier": "edge", "env": "dev"})
    assert not selector.matches({"tier": "edge"})
    assert str(selector) == "app=web,tier in (edge,front),!internal,env notin (dev)"


def test_an_absent_or_empty_selector_selects_everything_and_exists_needs_the_key() -> None:
    assert parse_label_selector(None, "x").matches({})
    assert parse_label_selector({}, "x").matches({"any": "thing"})
    exists = parse_label_selector({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, "x")
    assert exists.matches({"team": ""}) and not exists.matches({})


@pytest.mark.parametrize(("raw", "message"), [
    ("app=web", "spec.selector must be an object"),
    ({"matchLabels": {"app": 1}}, "spec.selector.matchLabels['app'] must be a string"),
    ({"matchExpressions": [{"key": "a", "operator": "Like", "values": ["x"]}]},
     "spec.selector.matchExpressions[0].operator must be one of In, NotIn, Exists, DoesNotExist"),
    ({"matchExpressions": [{"key": "a", "operator": "In"}]}, "values must not be empty for operator In"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}, "values must be empty"),
    ({"matchExpressions": [{"operator": "Exists"}]}, "spec.selector.matchExpressions[0].key is required"),
])
def test_a_bad_selector_names_the_field(raw: Any, message: str) -> None:
    with pytest.raises(SelectorError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_label_selector(raw, "spec.selector")
