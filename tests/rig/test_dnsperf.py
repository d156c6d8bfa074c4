"""What the load fault test counts on (rig/dnsperf.py, rig/failovers.py), against a real CoreDNS serving a zone file:
dnsperf's report read by response code with every query's latency, and the AnswerWatch telling an empty answer
(which dnsperf counts NOERROR) and a wrong one from the right one, and counting an answer that moves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rig.coredns import CoreDNS
from rig.dnsperf import Load, query_lines, run
from rig.failovers import AnswerWatch, FailoverApp
from rig.waiting import wait_for

pytestmark = pytest.mark.coredns

ZONE = "load.example.com"
SOA = f"@ IN SOA ns.{ZONE}. hostmaster.{ZONE}. {{serial}} 7200 3600 1209600 5\n@ IN NS ns.{ZONE}.\nns IN A 127.0.0.1\n"
EAST, WEST = ("198.18.1.1", "2001:db8:f:1::1"), ("198.18.2.1", "2001:db8:f:2::1")


def app(name: str) -> FailoverApp:
    return FailoverApp(f"{name}.{ZONE}", "load", name, ("east", "west"), {"east": EAST, "west": WEST})


def write_zone(path: Path, serial: int, records: str) -> None:
    path.write_text(f"$ORIGIN {ZONE}.\n$TTL 5\n" + SOA.format(serial=serial) + records)


@pytest.fixture
def zone_server(tmp_path: Path, coredns_factory: Callable[[str], CoreDNS]) -> tuple[CoreDNS, Path]:
    zone = tmp_path / "db.zone"
    write_zone(zone, 1, f"ok IN A {EAST[0]}\nok IN AAAA {EAST[1]}\n"  # both families, the first member's
                        f"nodata IN A {EAST[0]}\n"  # no AAAA: NOERROR, empty
                        f"stray IN A 192.0.2.9\nstray IN AAAA {EAST[1]}\n")  # an A that is neither member's
    server = coredns_factory(f"{ZONE}:{{port}} {{\n    bind 127.0.0.1\n    file {zone} {{\n        reload 100ms\n"
                             "    }\n}\n")
    return server, zone


def test_dnsperf_reports_every_query_by_response_code_with_its_latency(zone_server, tmp_path):
    server, _ = zone_server
    queries = tmp_path / "queries"
    queries.write_text(query_lines([f"ok.{ZONE}", f"nodata.{ZONE}", f"missing.{ZONE}"], ("A",)))
    report = run(Load(server.host, server.port, queries, 2, rate=300, buffer_kb=1024), verbose=True)
    assert report.lost == 0 and report.completed == report.sent > 0
    codes = report.rcode_counts()
    assert set(codes) == {"NOERROR", "NXDOMAIN"} and sum(codes.values()) == report.completed
    assert abs(codes["NXDOMAIN"] - report.completed / 3) <= 1  # every third query, in order
    assert len(report.latencies_ms) == report.completed
    percentiles = report.percentiles_ms()
    assert 0 < percentiles["p50"] <= percentiles["p99"] <= percentiles["max"] == pytest.approx(report.max_ms, abs=0.01)


def test_the_watch_counts_empty_and_wrong_answers_as_failed_and_sees_an_answer_move(zone_server):
    server, zone = zone_server
    steady, empty, stray = app("ok"), app("nodata"), app("stray")
    watch = AnswerWatch(server.host, server.port, [steady, empty, stray], rate=200)
    with watch.running():
        wait_for(lambda: watch.counts["empty"] and watch.counts["other"] and watch.answering([steady], False), 10,
                 "every kind of answer seen")
        write_zone(zone, 2, f"ok IN A {WEST[0]}\nok IN AAAA {WEST[1]}\n")  # the app failed over to west
        wait_for(lambda: watch.answering([steady], failed=True), 10, "the watch seeing the app failed over")
    assert watch.moves >= 2  # A and AAAA
    assert watch.failed == watch.queries - watch.counts["ok"] > 0
    assert {"empty", "other"} <= set(watch.counts)
    assert any(f"nodata.{ZONE} AAAA: empty" in failure for failure in watch.failures)
