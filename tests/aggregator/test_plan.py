"""One reconcile's decision, pure over what the reconciler read (``Observed``): the members' entries, the probers'
verdicts, the policy's answer and the records; and the Domain lookup the sources and the guard rails share."""

from __future__ import annotations

from typing import Any

import pytest

from aggregator.health.quorum import Votes
from aggregator.health.readiness import MemberView, Reachability
from aggregator.model import Domain, IntentStatus, MemberCluster, SecretKeyRef
from aggregator.plan import Member, Observed, plan, unreadable
from aggregator.registry.domains import DomainLookup
from aggregator.render.status import Outcome, build_status
from aggregator.sources.intent import InvalidIntent
from aggregator.sources.service import ServiceIntent, ServiceSource, parse_service_intent
from fleetdns.healthreport import DownEntry
from tests.support.fakes import Member as FakeMember

pytestmark = pytest.mark.unit
SOURCE = ServiceSource()
IPS = {"east": "198.18.1.1", "west": "198.18.2.1"}
GLOBAL = "web.shop.fleet.svc.example.com"
FLEET = Domain("shop", "fleet", "example.com")


def member(name: str, reachability: Reachability = Reachability.CONNECTED, serves: bool = True) -> Member:
    cluster = MemberCluster(name, name, f"{name}-1a", SecretKeyRef("fleetdns-system", name))
    objects = FakeMember(cluster)
    if serves:
        objects.serve("shop", "web", IPS[name])
    return Member(MemberView(cluster, reachability), objects)


def web(**spec: Any) -> ServiceIntent:
    return parse_service_intent({"metadata": {"namespace": "shop", "name": "web", "uid": "u1"},
                                 "spec": {"domainRef": "fleet", **spec}})


def domains(*found: Domain) -> DomainLookup:
    return DomainLookup("fleetdns-system", {(d.namespace, d.name): d for d in found})


def global_targets(desired_endpoints: list[Any]) -> tuple[str, ...]:
    return next(e.targets for e in desired_endpoints if e.dns_name == GLOBAL and e.record_type == "A")


def test_every_member_serving_the_service_answers_the_global_name() -> None:
    desired = plan(SOURCE, web(), IntentStatus(), Observed((member("east"), member("west")), domains(FLEET)))
    assert global_targets(desired.endpoints) == (IPS["east"], IPS["west"])
    assert desired.outcome.fqdn == GLOBAL and desired.outcome.published_records == len(desired.endpoints)
    selection = desired.outcome.selection
    assert selection is not None and [c.cluster for c in selection.answer.clusters] == ["east", "west"]


def test_a_member_without_the_service_is_not_listed() -> None:
    desired = plan(SOURCE, web(), IntentStatus(), Observed((member("east"), member("west", serves=False)),
                                                           domains(FLEET)))
    assert [c.cluster for c in desired.outcome.clusters] == ["east"]


def test_a_member_not_reached_since_start_up_keeps_the_entry_it_had_in_the_last_status() -> None:
    both = (member("east"), member("west"))
    first = plan(SOURCE, web(), IntentStatus(), Observed(both, domains(FLEET)))
    published = build_status(first.outcome, 1, IntentStatus(), "t")
    restarted = (member("east"), member("west", Reachability.CONNECTING))
    desired = plan(SOURCE, web(), published, Observed(restarted, domains(FLEET)))
    assert global_targets(desired.endpoints) == (IPS["east"], IPS["west"])


def test_the_policy_picks_once_for_the_intent_and_the_records_follow_it() -> None:
    failover = {"loadBalancing": {"policy": "Failover", "failoverOrder": ["west", "east"]}}
    desired = plan(SOURCE, web(**failover), IntentStatus(), Observed((member("east"), member("west")),
                                                                     domains(FLEET)))
    assert global_targets(desired.endpoints) == (IPS["west"],)
    selection = desired.outcome.selection
    assert selection is not None and [c.cluster for c in selection.answer.clusters] == ["west"]


def test_a_cluster_every_voting_region_sees_down_leaves_the_answer() -> None:
    intent = web(healthCheck={"httpGet": {"path": "/healthz", "port": 80}})
    assert intent.health_check is not None
    check = intent.health_check.resolved(GLOBAL).check_id
    down = DownEntry("ServiceDNSRecord/web", IPS["east"], check, "2025-01-01T00:00:00Z", "HTTP 500")
    votes = Votes(frozenset({"us"}), ("us",), {("us", "east"): (down,)})
    desired = plan(SOURCE, intent, IntentStatus(), Observed((member("east"), member("west")), domains(FLEET), votes))
    assert global_targets(desired.endpoints) == (IPS["west"],)
    assert [c.healthy for c in desired.outcome.clusters] == [False, True]


def test_without_its_domain_nothing_is_published_and_the_status_says_where_it_was_looked_for() -> None:
    desired = plan(SOURCE, web(), IntentStatus(), Observed((member("east"),), domains()))
    assert desired.endpoints == []
    assert (desired.outcome.problem, desired.outcome.problem_message) == (
        "DomainNotFound", "no Domain 'fleet' in namespace shop or fleetdns-system")


def test_an_unreadable_spec_keeps_what_was_published() -> None:
    published = IntentStatus("example.com", GLOBAL)
    broken = SOURCE.read_intent({"metadata": {"namespace": "shop", "name": "web"}, "spec": {}})
    assert isinstance(broken, InvalidIntent)
    outcome = unreadable(broken, published)
    assert outcome == Outcome("example.com", GLOBAL, (), 0, "InvalidSpec", f"{broken.problem}; the records "
                              "published before stay as they are until the spec is fixed")


def test_the_domain_lookup_prefers_the_intents_namespace_and_reads_only_the_referenced_domain() -> None:
    shared, own = Domain("fleetdns-system", "fleet", "shared.example"), Domain("shop", "fleet", "own.example")
    reads: list[tuple[str, str]] = []

    def read(namespace: str, name: str) -> Domain | None:
        reads.append((namespace, name))
        return {(d.namespace, d.name): d for d in (shared, own)}.get((namespace, name))

    lookup = DomainLookup.read(read, "fleetdns-system", "shop", "fleet")
    assert reads == [("shop", "fleet"), ("fleetdns-system", "fleet")]
    assert lookup.find("shop", "fleet") == own and lookup.find("other", "fleet") == shared
    assert DomainLookup.read(read, "fleetdns-system", "shop", "").find("shop", "fleet") is None


# --- member silence (aggregator/health/silence.py): the probers' proof outlives a member's silence ----------------

CHECKED = {"healthCheck": {"httpGet": {"path": "/healthz", "port": 80}}}


def votes_on_east(fresh: set[str], down_in: set[str] | None = None) -> Votes:
    """Fresh regions ``fresh``; those of ``down_in`` list east's address Down with the intent's check."""
    intent = web(**CHECKED)
    assert intent.health_check is not None
    check = intent.health_check.resolved(GLOBAL).check_id
    entry = DownEntry("ServiceDNSRecord/web", IPS["east"], check, "2025-01-01T00:00:00Z", "HTTP 500")
    down_in = down_in or set()
    return Votes(frozenset(fresh), tuple(sorted(fresh | down_in)), {(r, "east"): (entry,) for r in down_in})


def silent_east(votes: Votes, **spec: Any) -> tuple[Any, dict[str, Any]]:
    """The plan with east's API server lost past its grace period (its cache as last seen), and east's entry."""
    members = (member("east", Reachability.LOST), member("west"))
    desired = plan(SOURCE, web(**spec), IntentStatus(), Observed(members, domains(FLEET), votes))
    east = next(c for c in desired.outcome.clusters if c.cluster == "east")
    return global_targets(desired.endpoints), east.to_json()


def test_a_lost_member_stays_in_the_answer_while_a_fresh_quorum_sees_its_app_up() -> None:
    targets, east = silent_east(votes_on_east({"a", "b", "c"}, {"a"}), **CHECKED)
    assert targets == (IPS["east"], IPS["west"])
    assert east["healthy"] and east["reason"].startswith("MemberUnreachableServing: ")


def test_a_lost_member_leaves_when_the_quorum_sees_its_app_down_or_no_region_is_fresh() -> None:
    for votes in (votes_on_east({"a", "b", "c"}, {"a", "b"}), votes_on_east(set())):
        targets, east = silent_east(votes, **CHECKED)
        assert targets == (IPS["west"],)
        assert not east["healthy"] and east["reason"].startswith("MemberUnreachable: ")
        assert east["loadBalancer"]["ingress"] == [{"ip": IPS["east"]}]  # still checked by the probers


def test_a_lost_member_of_an_intent_without_a_health_check_leaves_after_the_grace_period_as_before() -> None:
    targets, east = silent_east(votes_on_east({"a", "b", "c"}))
    assert targets == (IPS["west"],)
    assert east == {"cluster": "east", "region": "east", "zone": "east-1a", "loadBalancer": {"ingress": []},
                    "healthy": False, "reason": "MemberUnreachable: API server not answering past the grace period"}


def test_a_member_that_answers_again_is_judged_by_what_it_says() -> None:
    members = (member("east", Reachability.CONNECTED, serves=False), member("west"))
    desired = plan(SOURCE, web(**CHECKED), IntentStatus(), Observed(members, domains(FLEET), votes_on_east({"a"})))
    assert global_targets(desired.endpoints) == (IPS["west"],)
    assert [c.cluster for c in desired.outcome.clusters] == ["west"]  # its Service is gone


def test_after_a_restart_a_member_never_reached_keeps_its_published_entry_while_the_quorum_proves_it() -> None:
    both = (member("east"), member("west"))
    published = build_status(plan(SOURCE, web(**CHECKED), IntentStatus(),
                                  Observed(both, domains(FLEET), votes_on_east({"a"}))).outcome, 1, IntentStatus(), "t")
    restarted = (member("east", Reachability.UNAVAILABLE, serves=False), member("west"))
    for votes, expected in ((votes_on_east({"a"}), (IPS["east"], IPS["west"])),
                            (votes_on_east({"a"}, {"a"}), (IPS["west"],))):
        desired = plan(SOURCE, web(**CHECKED), published, Observed(restarted, domains(FLEET), votes))
        assert global_targets(desired.endpoints) == expected
    without_check = plan(SOURCE, web(), published, Observed(restarted, domains(FLEET)))
    assert global_targets(without_check.endpoints) == (IPS["west"],)
