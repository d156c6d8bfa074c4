"""Canaries: what FleetDNS does not own, planted beside what it writes and checked byte for byte at the end of a fault
test (docs/design/faults.md §1). A fault that makes the system touch them would touch a user's records.

In a region's etcd: a foreign record under the zone, a foreign name below one of ours, a record outside the zone
(beyond the domain filter) and a key beside the prefix (outside the key space). On the host: a DNSEndpoint a team
wrote, without our labels or ownerReferences (ExternalDNS publishes it like any other; the aggregator must leave it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyetcd

from fleetdns.apipaths import DNS_ENDPOINTS
from fleetdns.kubeapi import KubeClient, KubeError
from fleetdns.skydns.encoding import name_key
from rig.federation import Federation
from tests.support.etcd import Stored, etcd_kv

FOREIGN_ADDRESS = "192.0.2.77"  # the address of the foreign record under the zone
TEAM_ADDRESS = "192.0.2.78"  # the address of the team's own DNSEndpoint


def _skydns(address: str) -> bytes:
    """A record as ExternalDNS's own coredns provider (or a person with etcdctl) writes it."""
    return json.dumps({"host": address, "ttl": 300, "targetstrip": 1}).encode()


@dataclass(frozen=True)
class EtcdCanaries:
    """Keys written straight to one region's etcd, behind the webhook's back: each must keep its bytes and its mod
    revision (a rewrite of the same bytes is a touch too)."""

    url: str
    planted: Mapping[str, Stored]
    names_in_zone: tuple[str, ...]  # names with a canary record the region serves (the webhook gives them a name key)

    @classmethod
    def plant(cls, url: str, prefix: str, zone: str, below: str = "") -> EtcdCanaries:
        """Under ``prefix`` (``/skydns/``): ``canary-foreign.<zone>`` (no ownership record claims it; served:
        ``served_name``), a record outside the zone (the domain filter), a value that is not SkyDNS JSON, and with
        ``below`` (one of our names) ``canary.<below>``; beside the prefix: a sibling sharing its root and an
        unrelated key, which no reader of the prefix may touch. Planted before the webhook starts, the in-zone
        record gets its name key from the webhook's repair pass; planted later, it is served from its record."""
        labels = "/".join(reversed(zone.split(".")))
        values = {
            name_key(prefix, f"canary-foreign.{zone}") + "/c0ffee000003": _skydns(FOREIGN_ADDRESS),
            name_key(prefix, "canary-outside.example.org") + "/c0ffee000001": _skydns("198.51.100.77"),
            name_key(prefix, f"canary-junk.{zone}"): b"not json \xff\x00 kept as it is",
            name_key(prefix.rstrip("/") + "2/", f"canary.{zone}") + "/c0ffee000002": _skydns("192.0.2.251"),
            f"/fleetdns-canary/{labels}": b"unrelated",
        }
        names = [f"canary-foreign.{zone}"]
        if below:
            values[name_key(prefix, f"canary.{below}") + "/c0ffee000004"] = _skydns("192.0.2.79")
            names.append(f"canary.{below}")
        kv = etcd_kv(url, timeout=5)
        try:
            planted = {key: Stored(value, kv.put(key, value).header.revision) for key, value in values.items()}
        finally:
            kv.close()
        return cls(url, planted, tuple(names))

    @staticmethod
    def served_name(zone: str) -> tuple[str, str]:
        """(name, address) of the foreign record under the zone, which the region's CoreDNS answers."""
        return f"canary-foreign.{zone}", FOREIGN_ADDRESS

    def touched(self, kv: pyetcd.Etcd3Client) -> list[str]:
        """The planted keys whose value or mod revision changed, or that are gone."""
        changed = []
        for key, was in self.planted.items():
            value, meta = kv.get(key)
            if value != was.value or meta is None or meta.mod_revision != was.mod_revision:
                changed.append(f"{self.url}{key}")
        return changed

    def changed(self) -> list[str]:
        """``touched``, with a client of its own."""
        kv = etcd_kv(self.url, timeout=5)
        try:
            return self.touched(kv)
        finally:
            kv.close()


def _owned_parts(obj: dict[str, Any]) -> str:
    """What the DNSEndpoint's author wrote and FleetDNS must never change, as bytes to compare: its identity,
    generation (moves with every spec change), labels, annotations, owners, finalizers and spec. ExternalDNS writes
    its status (``observedGeneration``), which is its to write."""
    metadata = obj.get("metadata") or {}
    kept = {key: metadata.get(key) for key in ("uid", "generation", "labels", "annotations", "ownerReferences",
                                                "finalizers", "deletionTimestamp")}
    return json.dumps({"metadata": kept, "spec": obj.get("spec")}, sort_keys=True)


@dataclass
class DNSEndpointCanary:
    """A team's DNSEndpoint on the host (``canary-team.<zone>``), without our labels or ownerReferences."""

    host: KubeClient
    namespace: str
    name: str
    dns_name: str
    written: str = ""

    @classmethod
    def plant(cls, host: KubeClient, namespace: str, zone: str, name: str = "team-canary") -> DNSEndpointCanary:
        dns_name = f"canary-team.{zone}"
        created = host.create(DNS_ENDPOINTS.path(namespace), DNS_ENDPOINTS.manifest(name, namespace, spec={
            "endpoints": [{"dnsName": dns_name, "recordType": "A", "targets": [TEAM_ADDRESS], "recordTTL": 300}]}))
        return cls(host, namespace, name, dns_name, _owned_parts(created))

    @property
    def address(self) -> str:
        return TEAM_ADDRESS

    def changed(self) -> list[str]:
        """``[namespace/name]`` unless the DNSEndpoint is still there exactly as its author wrote it."""
        try:
            now = self.host.get(DNS_ENDPOINTS.path(self.namespace, self.name))
        except KubeError as error:
            if error.status != 404:
                raise
            return [f"{self.namespace}/{self.name} (deleted)"]
        return [] if _owned_parts(now) == self.written else [f"{self.namespace}/{self.name}"]


Canary = EtcdCanaries | DNSEndpointCanary


def plant_in_federation(fed: Federation, host: KubeClient, ns: str, below: str, timeout: float) -> list[Canary]:
    """Canaries in every region's etcd (``below``: one of our names) and on the host (in ``ns``), served by every
    region before the faults begin."""
    planted: list[Canary] = [EtcdCanaries.plant(region.etcd.url, "/skydns/", fed.zone, below=below)
                             for region in fed.regions.values()]
    team = DNSEndpointCanary.plant(host, ns, fed.zone)
    planted.append(team)
    foreign, address = EtcdCanaries.served_name(fed.zone)
    fed.wait_for_answers(foreign, {address}, timeout)
    fed.wait_for_answers(team.dns_name, {team.address}, timeout)
    return planted


def unserved(fed: Federation, canaries: list[Canary]) -> list[str]:
    """The served canaries (the foreign record under the zone, the team's DNSEndpoint) that some region no longer
    answers as planted, as ``name in region``."""
    foreign, address = EtcdCanaries.served_name(fed.zone)
    served = [(foreign, address), *((c.dns_name, c.address) for c in canaries if isinstance(c, DNSEndpointCanary))]
    return [f"{name} in {region}" for name, want in served for region in fed.regions
            if fed.answers(region, name) != {want}]
