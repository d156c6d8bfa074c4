"""dnsperf at a sustained rate against one regional CoreDNS while every app fails over and back (issue 17,
docs/design/faults.md §3): every query answered, none SERVFAIL, none empty, and the latency percentiles reported.

One federation (host and members east and west, a DNS stack in each region, probers in east, west and north). APPS
Failover apps with HTTP checks (rig/failovers.py) are answered by their first member. dnsperf asks east's CoreDNS
for every app's A and AAAA at rig.failovers.RATE queries a second, for LOAD_SECONDS and until every app has failed
over and back once; meanwhile every app's first member answers 500, then 200 again, wave after wave, each wave done
once every app's answer has moved in east's CoreDNS (the whole chain wrote it: prober, aggregator, DNSEndpoint,
ExternalDNS, webhook, etcd, zone-file sidecar, CoreDNS reloading its zone). dnsperf counts replies by response
code, so a NOERROR without a record (the NODATA of a half-moved dual-stack answer) would pass it: an AnswerWatch
asks the same CoreDNS for every app beside it and counts those too. The latency percentiles go to the tally's notes
(docs/reliability.md); docs/benchmarks-load-failover.md sets them beside the same load with the apps steady.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rig.failovers import RATE, run_load, start_apps
from rig.federation import Federation
from tests.support.federation import running_federation
from tests.support.soak import Tally, times

pytestmark = [pytest.mark.fault, pytest.mark.apiserver, pytest.mark.externaldns, pytest.mark.coredns,
              pytest.mark.etcd]

APPS = times(10, 100)
LOAD_SECONDS = times(10, 30)
REGION = "east"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    yield from running_federation(tmp_path_factory, "load-faults")


def test_every_query_of_a_sustained_load_is_answered_while_every_app_fails_over_and_back(
        fed: Federation, tmp_path: Path, tally: Callable[..., Tally]) -> None:
    record = tally(f"dnsperf at {RATE:,} QPS for ≥ {LOAD_SECONDS} s on one regional CoreDNS while {APPS} apps fail "
                   "over and back")
    apps = start_apps(fed, f"load-{uuid.uuid4().hex[:6]}", APPS)
    run = run_load(fed, apps, REGION, LOAD_SECONDS, tmp_path, churn=True, until_cycles=1)
    report = run.report

    not_noerror = {code: count for code, count in report.rcode_counts().items() if code != "NOERROR"}
    watched = sum(run.answers.values())
    record.queries = report.sent + watched
    record.failed_answers = report.lost + sum(not_noerror.values()) + run.failed_answers
    record.injected = run.cycles * APPS  # one app failed over and back
    record.worst_seconds = max(run.waves, default=None)
    latency = report.percentiles_ms()
    record.note(f"dnsperf for {report.seconds:.1f} s, {report.qps:,.0f} QPS achieved of {RATE:,} offered, "
                f"{report.sent:,} sent, {report.lost} lost ({run.socket_drops} dropped by the kernel at CoreDNS's "
                f"socket), {report.interrupted} awaiting a reply at the end, {report.rcodes}; latency "
                f"p50 {latency['p50']:.2f} ms, p95 {latency['p95']:.2f} ms, p99 {latency['p99']:.2f} ms, max "
                f"{latency['max']:.1f} ms")
    record.note(f"{run.cycles} cycles of every app over and back ({len(run.waves)} waves, the slowest "
                f"{max(run.waves, default=0):.1f} s until {REGION}'s CoreDNS answered every app's new address); "
                f"beside dnsperf {watched:,} queries saw {run.moves:,} answers move: {dict(run.answers)}"
                + (f"; stalled: {run.stalled}" if run.stalled else ""))

    assert report.lost == 0 and run.socket_drops == 0, (
        f"dnsperf lost {report.lost} of {report.sent} queries, {run.socket_drops} dropped at CoreDNS's socket; "
        f"latency max {report.max_ms:.0f} ms")
    assert not not_noerror, f"dnsperf: response codes {report.rcodes}"
    assert run.failed_answers == 0, (f"{run.failed_answers} of {watched} answers failed: {dict(run.answers)}, "
                                     f"first {run.failures}")
    assert report.qps >= 0.9 * RATE, f"dnsperf sustained {report.qps:,.0f} QPS of {RATE:,} offered"
    assert not run.stalled, f"the failovers stalled under load: {run.stalled}; waves before {run.waves}"
    assert run.cycles >= 1, f"no app failed over and back during the {LOAD_SECONDS} s of load: waves {run.waves}"
    assert run.moves >= run.cycles * 2 * 2 * APPS, f"{run.moves} answers seen moving in {run.cycles} cycles"
