"""Lease election against a real kube-apiserver, one round at a time (``tick``) on stepped clocks:
acquire, renew, a standby that takes over only after seeing the lease unrenewed for a lease duration,
a leader that stops writing past its renew deadline, and release on stop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fleetdns.apipaths import LEASES
from fleetdns.kubeapi import KubeClient
from fleetdns.leader import LeaseElector
from rig import Fleet
from tests.support.aggregator import prepare_fleet, unique
from tests.support.clock import SteppedClock

pytestmark = pytest.mark.apiserver
NAMESPACE = "fleetdns-system"
DURATION, DEADLINE, RETRY = 15.0, 10.0, 2.0


class Replica:
    """One elector with its own clock and a record of its leadership changes."""

    def __init__(self, host: KubeClient, lease: str, identity: str) -> None:
        self.clock = SteppedClock(100.0)
        self.changes: list[bool] = []
        self.elector = LeaseElector(host, NAMESPACE, lease, identity, DURATION, DEADLINE, RETRY,
                                    self.changes.append, clock=self.clock)

    def tick(self, advance: float = 0.0) -> bool:
        self.clock.now += advance
        return self.elector.tick()


@pytest.fixture
def lease(fleet: Fleet) -> Iterator[tuple[KubeClient, str]]:
    host = prepare_fleet(fleet)
    name = unique("lease")
    yield host, name
    host.delete(LEASES.path(NAMESPACE, name))


def spec(host: KubeClient, name: str) -> dict:
    return host.get(LEASES.path(NAMESPACE, name))["spec"]


def test_the_first_replica_acquires_the_lease_and_renews_it(lease: tuple[KubeClient, str]) -> None:
    host, name = lease
    a = Replica(host, name, "replica-a")
    assert a.tick() and a.changes == [True]
    first = spec(host, name)
    assert first["holderIdentity"] == "replica-a" and first["leaseDurationSeconds"] == DURATION
    assert first["leaseTransitions"] == 0

    assert a.tick(RETRY) and a.changes == [True]
    renewed = spec(host, name)
    assert renewed["holderIdentity"] == "replica-a" and renewed["renewTime"] != first["renewTime"]
    assert renewed["acquireTime"] == first["acquireTime"] and renewed["leaseTransitions"] == 0


def test_a_standby_takes_over_only_after_seeing_the_lease_unrenewed_for_a_lease_duration(
        lease: tuple[KubeClient, str]) -> None:
    host, name = lease
    a, b = Replica(host, name, "replica-a"), Replica(host, name, "replica-b")
    assert a.tick()
    assert not b.tick()  # b starts watching the lease now, on its own clock
    for _ in range(3):  # a keeps renewing: every renewal starts b's wait again, however long it runs
        assert not b.tick(DURATION - 1)
        assert a.tick(RETRY)
    assert not b.tick(DURATION - 1)  # a renewed since b last looked: b's wait starts again here
    assert not b.tick(DURATION - 1)  # a stopped renewing (crashed): not yet a full lease duration
    assert b.tick(1) and b.changes == [True]
    taken = spec(host, name)
    assert taken["holderIdentity"] == "replica-b" and taken["leaseTransitions"] == 1


def test_a_leader_that_cannot_renew_stops_writing_at_its_renew_deadline(lease: tuple[KubeClient, str]) -> None:
    host, name = lease
    a, b = Replica(host, name, "replica-a"), Replica(host, name, "replica-b")
    assert a.tick() and a.elector.holds_fresh_lease()
    a.clock.now += DEADLINE  # frozen (GC pause, SIGSTOP): no renewal for the renew deadline
    assert not a.elector.holds_fresh_lease()  # writes are fenced before the election loop even runs

    assert not b.tick() and b.tick(DURATION)  # meanwhile b saw the lease unrenewed for a lease duration
    assert not a.tick() and a.changes == [True, False]  # a resumes, cannot renew, stands down
    assert spec(host, name)["holderIdentity"] == "replica-b"


def test_stopping_releases_the_lease_so_a_standby_takes_over_at_once(lease: tuple[KubeClient, str]) -> None:
    host, name = lease
    a, b = Replica(host, name, "replica-a"), Replica(host, name, "replica-b")
    assert a.tick()
    assert not b.tick()
    a.elector.stop()
    assert a.changes == [True, False]
    assert spec(host, name)["holderIdentity"] == ""
    assert b.tick()  # no lease duration to wait out: the holder is empty
    assert spec(host, name)["holderIdentity"] == "replica-b"
