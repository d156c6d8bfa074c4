"""Desired DNS records of an intent, as ExternalDNS endpoints, and the DNSEndpoint that carries them:
pure, deterministic, sorted. Each source (aggregator/sources/) lays out its names with these.

Hostname rule: a name gets A/AAAA records over the IP addresses of its healthy clusters: those their
load balancers give, and those their load-balancer hostnames resolved to (``loadBalancerHostnames:
Resolve``, the default; see lb_hostnames.py). In the CNAME form nothing is resolved: clusters whose load
balancer gives only a hostname count for that name only when no cluster gives an IP, and then the name is
a CNAME to one hostname (the first in cluster-name order), because a CNAME has exactly one target and
cannot share its name with A records. (Resolved, a healthy cluster always has an IP, so no CNAME arises.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from aggregator.model import LABEL_INTENT_KIND, LABEL_INTENT_NAME, ClusterStatus, IntentKey
from aggregator.ownership import owner_references
from fleetdns.apipaths import DNS_ENDPOINTS, Resource
from fleetdns.endpoint import Endpoint, RecordType


def address_records(name: str, clusters: Iterable[ClusterStatus], ttl: int) -> list[Endpoint]:
    """A/AAAA over the clusters' IPs (given or resolved), else a CNAME to the first hostname; nothing when neither."""
    ordered = sorted(clusters, key=lambda c: c.cluster)
    ips = {ipaddress.ip_address(ip) for c in ordered for ip in (*(a.ip for a in c.addresses if a.ip), *c.resolved)}
    v4 = sorted(str(ip) for ip in ips if ip.version == 4)
    v6 = sorted(str(ip) for ip in ips if ip.version == 6)
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


def sort_endpoints(records: list[Endpoint]) -> list[Endpoint]:
    return sorted(records, key=lambda e: (e.dns_name, e.record_type))


def render_dns_endpoint(key: IntentKey, name: str, owner: Resource, intent_uid: str,
                        endpoints: list[Endpoint]) -> dict[str, Any]:
    """The DNSEndpoint ``name`` for intent ``key`` (of resource ``owner``); owned by the intent
    (garbage collection on real clusters)."""
    body = DNS_ENDPOINTS.manifest(name, key.namespace, spec={"endpoints": [e.to_json() for e in endpoints]})
    body["metadata"]["labels"] = dns_endpoint_labels(key)
    body["metadata"]["ownerReferences"] = owner_references(None, key, owner, intent_uid)
    return body


def dns_endpoint_labels(key: IntentKey) -> dict[str, str]:
    return {LABEL_INTENT_KIND: str(key.kind), LABEL_INTENT_NAME: key.name}
