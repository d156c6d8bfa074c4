"""EndpointSlices as the sources count them: the ready endpoints of a Service."""

from __future__ import annotations

import pytest

from aggregator.sources.endpoint_slices import parse_endpoint_slice

pytestmark = pytest.mark.unit


def test_endpoint_slice_counts_ready_true_and_absent_as_ready() -> None:
    parsed = parse_endpoint_slice({
        "metadata": {"namespace": "shop", "name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                      {"addresses": ["10.0.0.2"], "conditions": {}},
                      {"addresses": ["10.0.0.3"]},
                      {"addresses": ["10.0.0.4"], "conditions": {"ready": False}}]})
    assert (parsed.service_name, parsed.ready_endpoints) == ("web", 3)
