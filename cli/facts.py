"""What the host holds, as the other components wrote it: MemberClusters and their status, the probers' Leases
and HealthReports, the intents and their status, Domains. Read-only; parsed just enough to show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleetdns.apipaths import DOMAINS, HEALTH_REPORTS, INTENT_RESOURCES, LEASES, MEMBER_CLUSTERS, Resource
from fleetdns.healthreport import REGION_LABEL, HealthReport, ProberLease, parse_health_report, parse_prober_lease
from fleetdns.kubeapi import KubeClient, KubeError

DEFAULT_LEASE_NAMESPACE = "fleetdns-system"  # the probers' --lease-namespace default


def items(client: KubeClient, resource: Resource, namespace: str = "",
          label_selector: str = "") -> list[dict[str, Any]]:
    """Every object of ``resource``; none when the host does not serve the kind (its CRD is not installed)."""
    query = {"labelSelector": label_selector} if label_selector else None
    try:
        return list(client.get(resource.path(namespace), query).get("items") or [])
    except KubeError as error:
        if error.status == 404:
            return []
        raise


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The status condition of type ``kind`` ({} when there is none)."""
    for found in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(found, dict) and found.get("type") == kind:
            return found
    return {}


def parse_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def age(value: str, now: datetime | None = None) -> float | None:
    """Seconds since an RFC 3339 time (this machine's clock against the writer's: skew shows here)."""
    when = parse_time(value)
    return None if when is None else ((now or datetime.now(UTC)) - when).total_seconds()


@dataclass(frozen=True)
class HostFacts:
    members: list[dict[str, Any]]
    leases: list[tuple[ProberLease, float]]  # with leaseDurationSeconds
    reports: list[HealthReport]
    intents: list[tuple[Resource, dict[str, Any]]]
    domains: list[dict[str, Any]]


def read_host(client: KubeClient, lease_namespace: str = DEFAULT_LEASE_NAMESPACE) -> HostFacts:
    leases = []
    for obj in items(client, LEASES, lease_namespace, REGION_LABEL):
        try:
            leases.append((parse_prober_lease(obj), float((obj.get("spec") or {}).get("leaseDurationSeconds") or 10)))
        except ValueError:
            continue  # not a prober's Lease
    reports = []
    for obj in items(client, HEALTH_REPORTS):
        try:
            reports.append(parse_health_report(obj))
        except ValueError:
            continue
    intents = [(resource, obj) for resource in INTENT_RESOURCES for obj in items(client, resource)]
    return HostFacts(items(client, MEMBER_CLUSTERS), leases, reports, intents, items(client, DOMAINS))
