"""The prober's check loop as its informers drive it (``Prober._apply_intent`` and ``_on_outcome`` called as the
loop calls them, on a stepped clock): what a region reports when an intent's subjects go and come back.

No process and no API server: the Prober is built but not started (nothing is written; the verdicts its
report writer would write are read from ``snapshot``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s_client

from fleetdns.kubeapi import KubeClient
from prober.checks import Outcome, Result
from prober.engine import RETAIN_SECONDS, Prober
from prober.metrics import ProberMetrics
from prober.settings import Settings
from prober.targets import SERVICE_KIND, ProbedIntent, ProbeKey, parse_intent
from prober.thresholds import State
from tests.support.clock import SteppedClock

VIP = "198.18.1.1"
REPORT = ("shop", "east")  # (namespace, cluster)
ENTRY = ("ServiceDNSRecord/web", VIP)


def intent(fqdn: str = "web.shop.example.com") -> ProbedIntent:
    raw: dict[str, Any] = {
        "metadata": {"namespace": "shop", "name": "web"},
        "spec": {"healthCheck": {"httpGet": {"port": 80, "path": "/healthz"}, "periodSeconds": 1,
                                 "failureThreshold": 3, "successThreshold": 2}},
        "status": {"fqdn": fqdn, "dns": [{"cluster": "east", "loadBalancer": {"ingress": [{"ip": VIP}]}}]}}
    if not fqdn:
        del raw["status"]  # the object as created, before the aggregator wrote its status
    return parse_intent(SERVICE_KIND, raw)


@pytest.fixture
def prober() -> Iterator[Prober]:
    settings = Settings(region="east", kubeconfig="", health_host="127.0.0.1", health_port=0, namespace="",
                        lease_namespace="fleetdns-system", identity="test", max_in_flight=16, log_level="info",
                        log_format="json")
    host = KubeClient(k8s_client.ApiClient(k8s_client.Configuration(host="http://127.0.0.1:9")))  # never called
    built = Prober(settings, host, ProberMetrics(), wall=lambda: 1_700_000_000.0)
    built.scheduler.clock = SteppedClock()
    yield built
    built.scheduler.runner.close()
    os.close(built.scheduler._wake_r)
    os.close(built.scheduler._wake_w)


def probe_key(prober: Prober) -> ProbeKey:
    (key,) = prober.index.probes
    return key


def result(prober: Prober, up: bool) -> None:
    outcome = Outcome(Result.UP, "HTTP 200", 0.01) if up else Outcome(Result.HTTP_ERROR, "HTTP 500", 0.01)
    prober._on_outcome(probe_key(prober), outcome, True)


def state(prober: Prober) -> State:
    return prober.snapshot(REPORT)[ENTRY].state


def test_a_subject_dropped_and_listed_again_keeps_its_state_and_its_thresholds(prober: Prober) -> None:
    full, created = intent(), intent(fqdn="")
    prober._apply_intent(None, full)
    result(prober, up=False)  # the first result settles it
    down = prober.snapshot(REPORT)[ENTRY]
    assert down.state is State.DOWN and down.message == "HTTP 500"

    # The intent as it was before its status, then as it is (a stale version seen between two current ones):
    # the check is gone for a moment and listed again with the same probe.
    prober._apply_intent(full, created)
    assert REPORT not in prober._verdicts
    prober._apply_intent(created, full)
    assert prober.snapshot(REPORT)[ENTRY] == down  # still Down, since when it went Down
    assert prober.subjects_down == 1
    result(prober, up=True)  # successThreshold 2: one success is not enough (an Unknown state would be Up now)
    assert state(prober) is State.DOWN
    result(prober, up=True)
    assert state(prober) is State.UP

    # Up with failureThreshold 3: two failures, dropped and listed again, one failure more makes Down.
    result(prober, up=False)
    result(prober, up=False)
    prober._apply_intent(full, created)
    prober._apply_intent(created, full)
    assert state(prober) is State.UP
    result(prober, up=False)
    assert state(prober) is State.DOWN


def test_a_subject_listed_again_after_a_long_absence_starts_unknown(prober: Prober) -> None:
    full, created = intent(), intent(fqdn="")
    prober._apply_intent(None, full)
    result(prober, up=False)
    prober._apply_intent(full, created)
    clock = prober.scheduler.clock
    assert isinstance(clock, SteppedClock)
    clock.now += RETAIN_SECONDS + 1
    prober._apply_intent(created, full)
    assert state(prober) is State.UNKNOWN and prober.subjects_down == 0
    assert prober._retired == {}
