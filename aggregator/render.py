"""Desired DNS records of an intent, as ExternalDNS endpoints: pure, deterministic, sorted.

Hostname rule: a name gets A/AAAA records over the IP addresses of its healthy clusters; clusters
whose load balancer gives only a hostname count for that name only when no cluster gives an IP, and
then the name is a CNAME to one hostname (the first in cluster-name order), because a CNAME has
exactly one target and cannot share its name with A records.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aggregator.model import (
    LABEL_INTENT_KIND,
    LABEL_INTENT_NAME,
    ClusterStatus,
    IngressIntent,
    IntentKey,
    ServiceIntent,
)
from aggregator.naming import ServiceNames
from fleetdns.endpoint import Endpoint, RecordType

DNSENDPOINT_API_VERSION = "externaldns.k8s.io/v1alpha1"


def address_records(name: str, clusters: Iterable[ClusterStatus], ttl: int) -> list[Endpoint]:
    """A/AAAA over the clusters' IPs, else a CNAME to the first hostname; nothing when neither."""
    ordered = sorted(clusters, key=lambda c: c.cluster)
    v4 = sorted({a.ip for c in ordered for a in c.addresses if a.ip and not a.is_ipv6})
    v6 = sorted({a.ip for c in ordered for a in c.addresses if a.is_ipv6})
    records = []
    if v4:
        records.append(Endpoint(name, RecordType.A, tuple(v4), record_ttl=ttl))
    if v6:
        records.append(Endpoint(name, RecordType.AAAA, tuple(v6), record_ttl=ttl))
    if not records:
        hostnames = [a.hostname for c in ordered for a in c.addresses if a.hostname]
        if hostnames:
            records.append(cname(name, hostnames[0], ttl))
    return records


def cname(name: str, target: str, ttl: int) -> Endpoint:
    return Endpoint(name, RecordType.CNAME, (target,), record_ttl=ttl)


def render_service_endpoints(intent: ServiceIntent, names: ServiceNames,
                             clusters: tuple[ClusterStatus, ...]) -> list[Endpoint]:
    """Global, region and zone names with KubeFed's CNAME fallbacks; empty when nothing is healthy.

    Regions and zones are those of the clusters listed in the status (where the Service exists).
    """
    healthy = [c for c in clusters if c.healthy]
    global_records = address_records(names.global_name, healthy, intent.record_ttl)
    if not global_records:
        return []
    records = list(global_records)
    for region in sorted({c.region for c in clusters}):
        region_name = names.region_name(region)
        in_region = [c for c in healthy if c.region == region]
        records += address_records(region_name, in_region, intent.record_ttl) or [
            cname(region_name, names.global_name, intent.record_ttl)]
        for zone in sorted({c.zone for c in clusters if c.region == region}):
            zone_name = names.zone_name(region, zone)
            in_zone = [c for c in in_region if c.zone == zone]
            records += address_records(zone_name, in_zone, intent.record_ttl) or [
                cname(zone_name, region_name, intent.record_ttl)]
    if intent.dns_prefix:
        records.append(cname(names.dns_prefix_name(intent.dns_prefix), names.global_name, intent.record_ttl))
    return sort_endpoints(records)


def render_ingress_endpoints(intent: IngressIntent, hosts: tuple[str, ...],
                             clusters: tuple[ClusterStatus, ...]) -> list[Endpoint]:
    healthy = [c for c in clusters if c.healthy]
    records = [record for host in hosts for record in address_records(host, healthy, intent.record_ttl)]
    return sort_endpoints(records)


def sort_endpoints(records: list[Endpoint]) -> list[Endpoint]:
    return sorted(records, key=lambda e: (e.dns_name, e.record_type))


def render_dns_endpoint(key: IntentKey, intent_uid: str, endpoints: list[Endpoint]) -> dict[str, Any]:
    """The DNSEndpoint object; owned by the intent (garbage collection on real clusters)."""
    return {
        "apiVersion": DNSENDPOINT_API_VERSION,
        "kind": "DNSEndpoint",
        "metadata": {
            "name": key.dns_endpoint_name,
            "namespace": key.namespace,
            "labels": dns_endpoint_labels(key),
            "ownerReferences": [{"apiVersion": "fleetdns.io/v1alpha1", "kind": str(key.kind), "name": key.name,
                                 "uid": intent_uid, "controller": True, "blockOwnerDeletion": False}],
        },
        "spec": {"endpoints": [e.to_json() for e in endpoints]},
    }


def dns_endpoint_labels(key: IntentKey) -> dict[str, str]:
    return {LABEL_INTENT_KIND: str(key.kind), LABEL_INTENT_NAME: key.name}
