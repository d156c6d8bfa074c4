"""The whole data path, as `make demo` runs it: intent -> aggregator -> DNSEndpoint -> ExternalDNS ->
webhook -> etcd -> CoreDNS answer, in two regions, with a Deployment on members running their real controllers
failed over by `kubectl scale --replicas=0` (EndpointSlices written by the EndpointSlice controller) and back, and
a member outage; then apps behind the members' VIPs checked over HTTP by probers in three regions (one app fails
over alone, ordered failover, weighted first answers). Clients ask real resolvers (Unbound) that follow the zone's
delegation from its parent: after every step, what a client gets through them is recorded too.

The demo writes what it saw to ``--summary-json``; the test reads that, never the human output."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from typing import Any

import pytest

from rig.binaries import REPO_ROOT
from rig.controllers import POD_CIDR
from rig.dataplane import member_vips
from rig.workloads import ENDPOINTSLICE_CONTROLLER
from tests.support.processes import processes_under

pytestmark = [pytest.mark.apiserver, pytest.mark.externaldns, pytest.mark.coredns, pytest.mark.etcd]
BOTH, WEST_ONLY = ["127.0.10.1", "127.0.20.1"], ["127.0.20.1"]
GRACE_SECONDS = 5.0  # hack/demo.py's GRACE
# Generous sanity bound only (bench/ measures failover: about 0.7 s p50). Well under ExternalDNS's
# default 1-minute interval, so a data path that waits for a full resync still fails here.
FAILOVER_SANITY_SECONDS = 10.0
RECORD_TTL = 5.0  # hack/demo.py's: a resolver hands out its cached answer at most that much longer than the regions


def every_region_answered(step: dict[str, Any], expected: list[str]) -> None:
    assert step["answers"] and all(answer == expected for answer in step["answers"].values()), step


@pytest.mark.timeout(600)
def test_demo_publishes_fails_over_and_recovers_in_every_region(tmp_path):
    summary_path = tmp_path / "summary.json"
    run = subprocess.run([sys.executable, "-m", "hack.demo", "--workdir", str(tmp_path),
                          "--summary-json", str(summary_path)], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=580)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert processes_under(tmp_path) == [], "make demo leaves nothing running"
    summary = json.loads(summary_path.read_text())
    assert summary["completed"] and not summary["error"], summary

    # the operator's command, run by the demo as a person would: explain finds every region serving what the failed-
    # over app's intent says (exit 0: no region differs), status a healthy fleet at the end
    assert summary["commands"] == {"explain pay failed over": 0, "status": 0}, output[-4000:]
    assert "POLICY  Failover" in output and "DIFFERS" not in output and "fleet healthy" in output
    steps = summary["steps"]
    assert [s["label"] for s in steps] == ["published", "east scaled to 0", "east scaled back to 2",
                                          "east removed after the grace period", "east back",
                                          "shop published", "blog published", "shop failing in east",
                                          "blog unchanged", "shop healthy in east again",
                                          "pay published (east first)", "pay failing in east", "pay back in east",
                                          "media published", "cart published by annotations", "cart withdrawn",
                                          "maps for the Paris office (view by network)",
                                          "maps for clients in the US (view by country)", "api by latency",
                                          "api: east's own path slowed"]
    published, failover, recovered, outage, returned = steps[:5]
    assert set(published["answers"]) == {"east", "west"}
    every_region_answered(published, BOTH)
    every_region_answered(failover, WEST_ONLY)
    assert failover["seconds"] < FAILOVER_SANITY_SECONDS, failover
    every_region_answered(recovered, BOTH)
    # what each member's EndpointSlice controller wrote: the pods' addresses, ready, then none in east, then new pods
    slices = {(seen["label"], seen["member"]): seen for seen in summary["endpoint_slices"]}
    assert list(slices) == [("deployed", "east"), ("deployed", "west"), ("east scaled to 0", "east"),
                            ("east scaled back to 2", "east")], summary["endpoint_slices"]
    assert all(seen["managed_by"] == [ENDPOINTSLICE_CONTROLLER] for seen in slices.values()), slices
    deployed, scaled_back = slices[("deployed", "east")]["ready"], slices[("east scaled back to 2", "east")]["ready"]
    assert len(deployed) == 2 and len(slices[("deployed", "west")]["ready"]) == 2, slices
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(POD_CIDR) for ip in deployed + scaled_back)
    assert slices[("east scaled to 0", "east")]["ready"] == []
    assert len(scaled_back) == 2, slices
    every_region_answered(outage, WEST_ONLY)
    # The aggregator cannot notice the outage before the API server is told to stop: a removal
    # sooner than the grace period after that would mean the grace period was not honoured.
    assert outage["seconds_since_action_started"] >= GRACE_SECONDS, outage
    every_region_answered(returned, BOTH)

    checked = {s["label"]: s for s in steps[5:]}
    vips = [member_vips(0)[0], member_vips(1)[0]]  # east, west: the data plane's IPv4 VIPs
    for label in ("shop published", "blog published", "blog unchanged", "shop healthy in east again",
                  "media published"):
        every_region_answered(checked[label], vips)
    every_region_answered(checked["shop failing in east"], vips[1:])  # one app fails over, the other stays
    every_region_answered(checked["pay published (east first)"], vips[:1])
    every_region_answered(checked["pay failing in east"], vips[1:])
    every_region_answered(checked["pay back in east"], vips[:1])
    assert checked["shop failing in east"]["seconds"] < FAILOVER_SANITY_SECONDS
    # self-service: the members' annotations alone publish the name, and withdraw it
    every_region_answered(checked["cart published by annotations"], ["127.0.10.7", "127.0.20.7"])
    every_region_answered(checked["cart withdrawn"], [])
    # two client populations, two answers under GeoProximity: the Paris office (its resolver's network) gets east,
    # US clients (their EDNS client subnet) get west, in every region; LowestLatency follows a slowed path
    every_region_answered(checked["maps for the Paris office (view by network)"], vips[:1])
    every_region_answered(checked["maps for clients in the US (view by country)"], vips[1:])
    assert checked["api by latency"]["answers"] == {"east": vips[:1], "west": vips[1:]}
    every_region_answered(checked["api: east's own path slowed"], vips[1:])
    # every client behind a resolver (the clients', the Paris office's, the public one passing the US subnet) got what
    # every region answered, at most the record's TTL after them (the cached answer expiring)
    through_resolvers = [s for s in steps if s["client"] is not None]
    assert [s["label"] for s in steps if s["client"] is None] == ["blog unchanged", "api by latency"]
    for seen in through_resolvers:
        assert seen["client"] == seen["expected"], seen
        assert seen["seconds"] <= seen["client_seconds"] <= seen["seconds"] + RECORD_TTL + 1.5, seen
    assert any(s["client_seconds"] - s["seconds"] > 1 for s in through_resolvers), "no cached answer outlived a change"
    firsts = summary["first_answers"]
    assert sum(firsts.values()) == 1000 and abs(firsts[vips[0]] / 10 - 80) <= 5, firsts

    left = [e for e in summary["events"] if e["reason"] == "ClusterLeft"]
    assert any("MemberUnreachable" in e["message"] and "east" in e["message"] for e in left), summary["events"]
    assert all(e["type"] == "Warning" for e in left)
    assert any(e["reason"] == "ClusterJoined" for e in summary["events"]), summary["events"]
