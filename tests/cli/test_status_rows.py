"""What `fleetdns status` concludes from the host's facts (pure, a fixed clock), and how `--dns` is read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cli.contexts import UsageError
from cli.dnsquery import Server, parse_server
from cli.facts import HostFacts
from cli.status import status
from fleetdns.apipaths import SERVICE_DNS_RECORDS
from fleetdns.healthreport import DownEntry, HealthReport, ProberLease

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


def member(name: str, region: str, state: str, message: str = "") -> dict:
    return {"metadata": {"name": name}, "spec": {"region": region, "zone": f"{region}-1a"},
            "status": {"state": state, "conditions": [{"type": "Reachable", "status": str(state == "Connected"),
                                                       "message": message,
                                                       "lastTransitionTime": "2026-12-07T11:00:00Z"}]}}


def intent(name: str, **conditions: tuple[str, str]) -> tuple:
    return (SERVICE_DNS_RECORDS, {"metadata": {"namespace": "shop", "name": name}, "status": {"conditions": [
        {"type": kind, "status": state, "reason": reason, "message": f"{kind} {reason}"}
        for kind, (state, reason) in conditions.items()]}})


def facts(**changes: object) -> HostFacts:
    base = {"members": [member("east", "east", "Connected"), member("west", "west", "Connected")],
            "leases": [(ProberLease("east", "p-east", "2026-12-07T11:59:58.000000Z"), 10.0),
                       (ProberLease("west", "p-west", "2026-12-07T11:59:59.500000Z"), 10.0)],
            "reports": [], "intents": [intent("web", Ready=("True", "Published"))], "domains": []}
    return HostFacts(**{**base, **changes})  # type: ignore[arg-type]


def test_a_fleet_whose_members_connect_probers_renew_and_apps_publish_is_healthy() -> None:
    found = status(facts(), {}, NOW)
    assert found.ok
    assert [(r.region, r.voting, r.renewed_seconds_ago) for r in found.regions] == [("east", True, 2.0),
                                                                                     ("west", True, 0.5)]
    assert found.to_json()["apps"] == {"byState": {"Published": 1}, "needingAttention": []}


@pytest.mark.parametrize(("lease", "why"), [
    (ProberLease("west", "p-west", "2026-12-07T11:59:30.000000Z"), "Lease not renewed for 30 s"),
    (ProberLease("west", "", "2026-12-07T11:59:59.000000Z"), "released the Lease"),
    (ProberLease("west", "p-west", "2026-12-07T11:59:59.000000Z", reports_current=False), "rewriting its reports"),
])
def test_a_region_out_of_the_vote_says_why(lease: ProberLease, why: str) -> None:
    found = status(facts(leases=[(ProberLease("east", "p", "2026-12-07T11:59:59Z"), 10.0), (lease, 10.0)]), {}, NOW)
    west = next(r for r in found.regions if r.region == "west")
    assert not west.voting and why in west.why_not and not found.ok


def test_a_member_region_without_any_prober_is_out_of_the_vote_and_a_lone_prober_region_is_listed() -> None:
    found = status(facts(leases=[(ProberLease("north", "p-north", "2026-12-07T11:59:59Z"), 10.0)]), {}, NOW)
    assert {r.region: r.why_not for r in found.regions} == {
        "east": "no prober Lease: no prober runs for this region",
        "west": "no prober Lease: no prober runs for this region", "north": ""}


def test_unreachable_members_and_apps_failing_open_or_refused_need_attention_with_their_reason() -> None:
    found = status(facts(
        members=[member("east", "east", "Connected"), member("west", "west", "Unreachable", "connection refused")],
        intents=[intent("web", Ready=("True", "Published")),
                 intent("cart", Ready=("True", "Published"), FailOpen=("True", "NoHealthyCluster")),
                 intent("blog", Ready=("False", "NameConflict")), intent("new")],
        reports=[HealthReport("shop", "east", "west",
                              (DownEntry("ServiceDNSRecord/cart", "192.0.2.1", "h", "", ""),))]), {}, NOW)
    assert [(m.name, m.ok, m.reason) for m in found.members] == [("east", True, ""),
                                                                 ("west", False, "connection refused")]
    assert [(a.name, a.state) for a in found.apps if not a.ok] == [("blog", "NameConflict"), ("cart", "FailOpen"),
                                                                   ("new", "Pending")]
    assert next(r for r in found.regions if r.region == "east").checks_down == 1
    assert found.to_json()["apps"]["byState"] == {"FailOpen": 1, "NameConflict": 1, "Pending": 1, "Published": 1}


@pytest.mark.parametrize(("flag", "server"), [
    ("east=192.0.2.53", Server("east", "192.0.2.53", 53)),
    ("east=127.0.0.1:1053", Server("east", "127.0.0.1", 1053)),
    ("west=[2001:db8::53]:5353", Server("west", "2001:db8::53", 5353)),
    ("west=2001:db8::53", Server("west", "2001:db8::53", 53)),
])
def test_dns_servers_are_read_as_region_address_and_port(flag: str, server: Server) -> None:
    assert parse_server(flag) == server


@pytest.mark.parametrize(("flag", "message"), [
    ("east", "give REGION=ADDRESS[:PORT]"), ("east=ns1.example.com", "is not an IP address"),
    ("east=192.0.2.1:dns", "the port must be a number"), ("east=192.0.2.1:70000", "out of range"),
])
def test_a_bad_dns_server_flag_says_what_to_fix(flag: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_server(flag)
