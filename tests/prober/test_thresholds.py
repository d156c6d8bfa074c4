"""The prober's pure stages: thresholds on a stepped clock, targets from intents, the schedule's phases,
what a report should hold, the wire form of a check, and its flags."""

from __future__ import annotations

import pytest

from fleetdns.config import ConfigError
from fleetdns.healthcheck import HealthCheck, HttpGet, Scheme, TcpSocket
from fleetdns.healthreport import DownEntry
from prober.checks import CheckError, Outcome, Result, check_target
from prober.reports import Verdict, desired_down
from prober.schedule import first_due, following_due, phase
from prober.settings import parse_settings
from prober.targets import ProbeKey, TargetIndex, parse_intent, subjects_of
from prober.thresholds import State, Threshold, judge
from rig.waiting import wait_for

pytestmark = pytest.mark.unit


# --- thresholds: a stepped clock, one result per period -------------------------------------------

def feed(threshold: Threshold, results: str, period: float = 1.0, start: float = 0.0) -> list[State]:
    """'+' success, '-' failure, one per period; the state after each."""
    states = []
    for i, mark in enumerate(results):
        threshold.observe(mark == "+", "ok" if mark == "+" else "HTTP 500", start + i * period)
        states.append(threshold.state)
    return states


def test_the_first_result_settles_an_unknown_check_either_way():
    assert feed(Threshold(3, 2, 1.0), "-") == [State.DOWN]
    assert feed(Threshold(3, 2, 1.0), "+") == [State.UP]


def test_down_only_after_failure_threshold_consecutive_failures_and_a_success_resets_the_count():
    threshold = Threshold(3, 1, 1.0)
    assert feed(threshold, "+--+--") == [State.UP] * 6
    assert feed(threshold, "-", start=6) == [State.DOWN]
    assert threshold.message == "HTTP 500"
    assert threshold.changed_at == 6


def test_up_again_only_after_success_threshold_consecutive_successes_separately_from_failures():
    threshold = Threshold(failure_threshold=1, success_threshold=3, period=1.0)
    assert feed(threshold, "+-") == [State.UP, State.DOWN]
    assert feed(threshold, "++-++", start=2) == [State.DOWN] * 5  # a failure resets the successes
    assert feed(threshold, "+", start=7) == [State.UP]


def test_observe_reports_exactly_the_flips():
    threshold = Threshold(2, 2, 1.0)
    flips = [threshold.observe(mark == "+", "", float(i)) for i, mark in enumerate("++--+-++")]
    assert flips == [True, False, False, True, False, False, False, True]


def test_an_intent_with_a_longer_period_counts_one_result_of_a_shared_check_per_own_period():
    threshold = Threshold(2, 1, period=10.0)  # this intent: every 10 s; the shared check runs every 5 s
    counted = []
    for second in range(0, 41, 5):
        if threshold.counts(float(second), probe_period=5.0):
            threshold.observe(False, "HTTP 500", float(second))
            counted.append(second)
    assert counted == [0, 10, 20, 30, 40]
    same_period = Threshold(2, 1, period=5.0)
    same_period.observe(True, "", 0.0)
    assert same_period.counts(4.0, probe_period=5.0)  # an equal period counts every result, late or early


def test_a_result_slower_than_an_intents_own_timeout_is_a_failure_for_that_intent():
    late = Outcome(Result.UP, "HTTP 200", elapsed=1.5, connected=0.2)
    assert judge(late, 2.0) == (True, "HTTP 200")
    assert judge(late, 1.0) == (False, "response timeout after 1s")
    assert judge(Outcome(Result.TIMEOUT, "connect timeout after 3s", 3.0), 1.0) == (False, "connect timeout after 1s")


# --- targets ----------------------------------------------------------------------------------------

def intent(kind: str = "ServiceDNSRecord", name: str = "web", namespace: str = "shop", health: dict | None = None,
           dns: list | None = None, fqdn: str = "web.shop.example.com", hosts: list | None = None) -> dict:
    spec: dict = {"healthCheck": health if health is not None else {"httpGet": {"port": 80, "path": "/healthz"}}}
    if hosts is not None:
        spec["hosts"] = hosts
    return {"metadata": {"namespace": namespace, "name": name}, "spec": spec,
            "status": {"fqdn": fqdn, "dns": dns if dns is not None else [
                {"cluster": "east", "loadBalancer": {"ingress": [{"ip": "198.18.1.1"}, {"hostname": "lb.aws"}]},
                 "resolvedAddresses": ["198.18.1.9"]},
                {"cluster": "west", "loadBalancer": {"ingress": [{"ip": "2001:db8:f::1"}]}},
            ]}}


def test_every_address_of_every_cluster_in_the_status_is_a_target_with_the_fqdn_as_host():
    parsed = parse_intent("ServiceDNSRecord", intent())
    assert parsed.check is not None and parsed.check.http_get is not None
    assert parsed.check.http_get.host == "web.shop.example.com"
    assert [(c.cluster, c.addresses) for c in parsed.clusters] == [
        ("east", ("198.18.1.1", "198.18.1.9")), ("west", ("2001:db8:f::1",))]
    keys = [(s.key.cluster, s.key.address, s.key.intent) for s in subjects_of(parsed)]
    assert keys == [("east", "198.18.1.1", "ServiceDNSRecord/web"), ("east", "198.18.1.9", "ServiceDNSRecord/web"),
                    ("west", "2001:db8:f::1", "ServiceDNSRecord/web")]


def test_an_ingress_intent_checks_its_first_host_and_an_explicit_host_wins():
    parsed = parse_intent("IngressDNSRecord", intent("IngressDNSRecord", hosts=["Shop.Example.com", "b.example.com"]))
    assert parsed.check is not None and parsed.check.http_get is not None
    assert parsed.check.http_get.host == "shop.example.com"
    explicit = parse_intent("ServiceDNSRecord", intent(health={"httpGet": {"port": 80, "host": "probe.example"}}))
    assert explicit.check is not None and explicit.check.http_get is not None
    assert explicit.check.http_get.host == "probe.example"


def test_intents_without_a_runnable_check_have_no_targets_and_say_why():
    assert subjects_of(parse_intent("ServiceDNSRecord", intent(health={}))) == ()  # {} is no healthCheck
    bad = parse_intent("ServiceDNSRecord", intent(health={"httpGet": {"port": 0}}))
    assert subjects_of(bad) == () and "port" in bad.problem
    no_host = parse_intent("ServiceDNSRecord", intent(fqdn=""))  # the aggregator has not written its status yet
    assert subjects_of(no_host) == () and no_host.waiting and not no_host.problem
    header = parse_intent("ServiceDNSRecord", intent(health={"httpGet": {"port": 80, "httpHeaders": [
        {"name": "X-A", "value": "1\r\nX-Injected: 1"}]}}))
    assert subjects_of(header) == () and "X-A" in header.problem
    tcp_no_fqdn = parse_intent("ServiceDNSRecord", intent(fqdn="", health={"tcpSocket": {"port": 443}}))
    assert len(subjects_of(tcp_no_fqdn)) == 3  # a TCP check needs no Host


def test_identical_checks_of_two_intents_share_one_probe_at_the_shorter_period_and_longer_timeout():
    index = TargetIndex()
    a = parse_intent("ServiceDNSRecord", intent(name="a", health={
        "httpGet": {"port": 80, "host": "shared.example"}, "periodSeconds": 10, "timeoutSeconds": 1}))
    b = parse_intent("ServiceDNSRecord", intent(name="b", health={
        "httpGet": {"port": 80, "host": "shared.example"}, "periodSeconds": 5, "timeoutSeconds": 3}))
    first = index.update(a.ident, subjects_of(a))
    assert len(first.added_probes) == 3 and len(first.added_subjects) == 3
    second = index.update(b.ident, subjects_of(b))
    assert second.added_probes == [] and len(second.added_subjects) == 3
    assert len(second.retimed_probes) == 3
    probe = index.probes[ProbeKey("198.18.1.1", a.check.check_id)]  # type: ignore[union-attr]
    assert (probe.period, probe.timeout, len(probe.subjects)) == (5.0, 3.0, 2)
    gone = index.update(b.ident, ())
    assert gone.removed_probes == [] and len(gone.removed_subjects) == 3 and len(gone.retimed_probes) == 3
    assert index.update(a.ident, ()).removed_probes and index.probes == {}


def test_a_changed_status_moves_only_the_addresses_that_changed():
    index = TargetIndex()
    before = parse_intent("ServiceDNSRecord", intent())
    index.update(before.ident, subjects_of(before))
    after = parse_intent("ServiceDNSRecord", intent(dns=[
        {"cluster": "east", "loadBalancer": {"ingress": [{"ip": "198.18.1.1"}]}}]))
    changes = index.update(after.ident, subjects_of(after))
    assert sorted(s.key.address for s in changes.removed_subjects) == ["198.18.1.9", "2001:db8:f::1"]
    assert changes.added_subjects == [] and len(changes.removed_probes) == 2


# --- schedule -------------------------------------------------------------------------------------

def test_phases_spread_probes_over_the_period_and_differ_between_regions():
    keys = [ProbeKey(f"198.18.0.{i}", "abc") for i in range(1000)]
    east = [phase("east", key, 5.0) for key in keys]
    assert all(0 <= p < 5.0 for p in east)
    per_second = [sum(1 for p in east if s <= p < s + 1) for s in range(5)]
    assert min(per_second) > 150  # about 200 each: no second carries the whole load
    west = [phase("west", key, 5.0) for key in keys]
    assert sum(1 for e, w in zip(east, west, strict=True) if abs(e - w) < 0.05) < 50


def test_due_times_keep_their_phase_and_skip_missed_runs():
    due = first_due(offset=1.5, period=5.0, now=100.0, wall=1_000_002.0)  # wall 2.0 into the period: 4.5 to go
    assert due == pytest.approx(104.5)
    assert following_due(104.5, 5.0, now=104.6) == pytest.approx(109.5)
    assert following_due(104.5, 5.0, now=121.0) == pytest.approx(124.5)  # behind: runs in between are skipped


# --- what a report holds ----------------------------------------------------------------------------

def test_desired_down_keeps_standing_entries_drops_gone_and_up_ones_and_adds_new_downs():
    standing = DownEntry("ServiceDNSRecord/a", "198.18.1.1", "c1", "2026-01-01T00:00:00Z", "HTTP 500")
    recovered = DownEntry("ServiceDNSRecord/b", "198.18.1.1", "c1", "2026-01-01T00:00:00Z", "HTTP 500")
    gone = DownEntry("ServiceDNSRecord/deleted", "198.18.1.1", "c1", "2026-01-01T00:00:00Z", "HTTP 500")
    unchecked = DownEntry("ServiceDNSRecord/c", "198.18.1.1", "c1", "2026-01-01T00:00:00Z", "HTTP 503")
    redefined = DownEntry("ServiceDNSRecord/d", "198.18.1.1", "old", "2026-01-01T00:00:00Z", "HTTP 500")
    verdicts = {
        ("ServiceDNSRecord/a", "198.18.1.1"): Verdict(State.DOWN, "c1", "2026-02-02T00:00:00Z", "HTTP 502"),
        ("ServiceDNSRecord/b", "198.18.1.1"): Verdict(State.UP, "c1"),
        ("ServiceDNSRecord/c", "198.18.1.1"): Verdict(State.UNKNOWN, "c1"),
        ("ServiceDNSRecord/d", "198.18.1.1"): Verdict(State.UNKNOWN, "new"),
        ("ServiceDNSRecord/e", "198.18.1.1"): Verdict(State.DOWN, "c1", "2026-02-02T00:00:00Z", "connection refused"),
    }
    down = desired_down([standing, recovered, gone, unchecked, redefined], verdicts)
    assert down == (standing, unchecked,
                    DownEntry("ServiceDNSRecord/e", "198.18.1.1", "c1", "2026-02-02T00:00:00Z", "connection refused"))


# --- the wire form of a check ------------------------------------------------------------------------

def test_the_request_is_one_get_with_host_headers_and_connection_close():
    check = HealthCheck(http_get=HttpGet(8443, "/ready z?x=1", Scheme.HTTPS, "web.example.com",
                                         (("X-Probe", "fleetdns"), ("Connection", "keep-alive"))))
    target = check_target("198.18.1.1", check)
    lines = target.request.decode().split("\r\n")
    assert lines[0] == "GET /ready%20z?x=1 HTTP/1.1"
    assert "Host: web.example.com" in lines and "X-Probe: fleetdns" in lines
    assert "Connection: close" in lines and "Connection: keep-alive" not in lines
    assert target.request.endswith(b"\r\n\r\n") and target.sni == "web.example.com"
    assert check_target("198.18.1.1", HealthCheck(http_get=HttpGet(80, host="web.example.com"))).sni is None
    assert check_target("2001:db8::1", HealthCheck(tcp_socket=TcpSocket(443))).request == b""
    with pytest.raises(CheckError, match="not an IP"):
        check_target("lb.example.com", HealthCheck(tcp_socket=TcpSocket(443)))


# --- flags ----------------------------------------------------------------------------------------------

def test_flags_name_what_is_wrong(monkeypatch: pytest.MonkeyPatch, tmp_path):
    with pytest.raises(ConfigError, match="--region.*required"):
        parse_settings([])
    with pytest.raises(ConfigError, match="--region='East_1'.*DNS label"):
        parse_settings(["--region=East_1"])
    with pytest.raises(ConfigError, match="--kubeconfig.*no such file"):
        parse_settings(["--region=east", f"--kubeconfig={tmp_path / 'missing'}"])
    with pytest.raises(ConfigError, match="--health-listen"):
        parse_settings(["--region=east", "--health-listen=nowhere"])
    monkeypatch.setenv("FLEETDNS_PROBER_REGION", "west")
    monkeypatch.setenv("FLEETDNS_PROBER_LEASE_NAMESPACE", "probers")
    settings = parse_settings([])
    assert (settings.region, settings.lease_namespace, settings.health_port) == ("west", "probers", 8082)


# --- keeping up (the Lease is renewed only while it does) ------------------------------------------

def test_a_scheduler_that_falls_more_than_a_period_behind_is_not_keeping_up_until_it_catches_up():
    from prober.schedule import OVERDUE_HOLD, Scheduler
    from rig.ports import free_port

    now = [100.0]
    outcomes: list[Outcome] = []
    scheduler = Scheduler("east", lambda key, outcome, corroborated: outcomes.append(outcome), max_in_flight=10,
                          clock=lambda: now[0], wall=lambda: 1_000_000.0, max_poll=0.01)
    target = check_target("127.0.0.1", HealthCheck(tcp_socket=TcpSocket(free_port())))  # closed: refused at once
    scheduler.add(ProbeKey("127.0.0.1", "tcp"), target, period=1.0, timeout=1.0)

    def turn(step: float) -> None:
        now[0] += step
        scheduler.run_once()

    for _ in range(20):
        turn(0.1)
    assert scheduler.keeping_up() == (True, "keeping up") and outcomes
    now[0] += 5.0  # the loop did not turn for five periods (a stall, a stopped process)
    assert scheduler.keeping_up()[0] is False and "stalled" in scheduler.keeping_up()[1]
    turn(0.0)  # the check due 4 s ago starts now: more than a period late
    assert scheduler.keeping_up() == (False, "checks started more than a period late")
    for _ in range(int(OVERDUE_HOLD / 0.1) + 2):
        turn(0.1)  # on time again, for longer than the hold
    assert scheduler.keeping_up() == (True, "keeping up")
    assert scheduler.configured_rate == 1.0 and scheduler.achieved_rate() > 0


def test_the_command_refuses_bad_configuration_with_exit_code_2_and_one_line(tmp_path):
    import subprocess
    import sys

    from rig.binaries import REPO_ROOT

    run = subprocess.run([sys.executable, "-m", "prober", "--region=east", "--max-in-flight=0"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip() == "error: invalid --max-in-flight='0': must be from 1 to 100000"


def test_a_loop_with_a_full_batch_of_io_waiting_starts_only_a_few_due_checks_per_turn():
    from prober.schedule import BUSY_STARTS, Scheduler
    from rig.ports import free_port

    now = [100.0]
    scheduler = Scheduler("east", lambda key, outcome, corroborated: None, max_in_flight=1000,
                          clock=lambda: now[0], wall=lambda: 1_000_000.0, max_poll=0.0)
    port = free_port()
    for i in range(40):
        scheduler.add(ProbeKey(f"127.0.0.{i + 1}", "tcp"),
                      check_target(f"127.0.0.{i + 1}", HealthCheck(tcp_socket=TcpSocket(port))), 5.0, 1.0)
    now[0] += 5.0  # every probe is due
    scheduler._busy = True  # the previous turn handled a whole batch of ready I/O
    scheduler.run_once()
    assert scheduler.started == BUSY_STARTS
    scheduler.run_once()  # that turn found no I/O waiting: the rest start (32 = MIN_STARTS, the least a turn may)
    assert scheduler.started == 40


def test_a_loop_that_fell_behind_catches_up_at_twice_the_configured_rate_instead_of_starting_every_check_at_once():
    """After a stall every probe is overdue; opening all of them in one turn (thousands of TLS handshakes on one
    thread) made each miss its timeout, round after round (docs/benchmarks-prober.md). The overdue checks start
    over the next turns, at most CATCH_UP × the configured rate, and every one of them runs."""
    from prober.schedule import CATCH_UP, CATCH_UP_WINDOW, Scheduler
    from rig.ports import free_port

    now = [100.0]
    ran: set[ProbeKey] = set()
    scheduler = Scheduler("east", lambda key, outcome, corroborated: ran.add(key), max_in_flight=1000,
                          clock=lambda: now[0], wall=lambda: 1_000_000.0, max_poll=0.0)
    target = check_target("127.0.0.1", HealthCheck(tcp_socket=TcpSocket(free_port())))  # closed: refused at once
    keys = [ProbeKey("127.0.0.1", f"check-{i}") for i in range(600)]
    for key in keys:
        scheduler.add(key, target, period=1.0, timeout=1.0)  # 600 checks a second
    now[0] += 5.0  # the loop did not turn for five periods: every probe is overdue
    starts = []
    for _ in range(40):  # two seconds of 50 ms turns
        before = scheduler.started
        scheduler.run_once()
        starts.append(scheduler.started - before)
        now[0] += 0.05
    assert starts[0] <= 600 * CATCH_UP * CATCH_UP_WINDOW  # the stall earned no burst
    assert max(starts[1:]) <= 600 * CATCH_UP * 0.05 + 1
    assert wait_for(lambda: scheduler.run_once() or ran == set(keys), what="every overdue probe checked")
