"""Records grouped into endpoints by name, type and set identifier."""

from __future__ import annotations

import pytest

from fleetdns.endpoint import Endpoint
from fleetdns.skydns.records import Record, endpoints_of

pytestmark = pytest.mark.unit


def test_endpoints_of_groups_by_name_type_and_set_identifier():
    records = [Record("a.example.org", "A", "192.0.2.1", "eu"), Record("a.example.org", "A", "192.0.2.2", "us"),
               Record("a.example.org", "A", "192.0.2.3", "eu")]
    assert [(e.set_identifier, e.targets) for e in endpoints_of(records)] == [
        ("eu", ("192.0.2.1", "192.0.2.3")), ("us", ("192.0.2.2",))]
    assert isinstance(endpoints_of(records)[0], Endpoint)
