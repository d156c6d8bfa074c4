"""What a region's prober tells the host cluster, and how the aggregator reads it back.

One ``HealthReport`` per (namespace, region, member cluster) lists only the checks that region sees
**Down** (a check not listed is Up), so a report is written when a check's thresholded state flips, not
every period. A region is a voter while its Lease ``fleetdns-prober-<region>`` is renewed (every 2 s) by a prober
whose reports on the host are up to date: a renewal annotated ``fleetdns.io/reports-current: "false"`` (reports not
yet rewritten since the prober took the Lease, or a write waiting for a retry) does not count.
The same report carries the region's round-trip time to each cluster address it checks (``latency``),
rewritten only when a median moves noticeably. See docs/design/policies.md §1 and §3, docs/design/views.md §3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetdns.apipaths import HEALTH_REPORTS

REGION_LABEL = "fleetdns.io/region"  # on reports and on the prober Leases
CLUSTER_LABEL = "fleetdns.io/cluster"
PROBER_LEASE_PREFIX = "fleetdns-prober-"
# On a prober Lease: "false" while the holder's reports on the host may be behind its verdicts (absent: current).
REPORTS_CURRENT_ANNOTATION = "fleetdns.io/reports-current"


def report_name(region: str, cluster: str) -> str:
    return f"{region}.{cluster}"


def prober_lease_name(region: str) -> str:
    return f"{PROBER_LEASE_PREFIX}{region}"


def region_of_lease(name: str) -> str | None:
    """The region a prober Lease stands for (None: not a prober Lease)."""
    return name[len(PROBER_LEASE_PREFIX):] or None if name.startswith(PROBER_LEASE_PREFIX) else None


def intent_ref(kind: str, name: str) -> str:
    """How a report names an intent of its namespace: ``ServiceDNSRecord/web``."""
    return f"{kind}/{name}"


@dataclass(frozen=True)
class DownEntry:
    """One check this region sees Down: which intent, which load-balancer address, since when and why."""

    intent: str  # intent_ref()
    address: str  # the IP checked (a cluster's load-balancer address)
    check: str  # HealthCheck.check_id of the definition that failed
    since: str  # RFC 3339, the prober's clock (for people; never compared across regions)
    message: str  # "HTTP 500", "connect timeout after 1s", ...

    def to_json(self) -> dict[str, str]:
        return {"intent": self.intent, "address": self.address, "check": self.check, "since": self.since,
                "message": self.message}


@dataclass(frozen=True)
class LatencyEntry:
    """The region's median connect time to one cluster address over its last checks (LowestLatency's input)."""

    address: str
    rtt_micros: int
    measured: str  # RFC 3339 of when the written figure was taken (the prober's clock; kept while the median holds)

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "rttMicros": self.rtt_micros, "measured": self.measured}


@dataclass(frozen=True)
class HealthReport:
    namespace: str
    region: str
    cluster: str
    down: tuple[DownEntry, ...] = ()
    resource_version: str = ""
    latency: tuple[LatencyEntry, ...] = ()

    @property
    def name(self) -> str:
        return report_name(self.region, self.cluster)

    def manifest(self) -> dict[str, Any]:
        """The object as written (create or replace; no status subresource: one write per change)."""
        obj = HEALTH_REPORTS.manifest(self.name, self.namespace,
                                      spec={"region": self.region, "cluster": self.cluster},
                                      status={"down": [entry.to_json() for entry in self.down],
                                              "latency": [entry.to_json() for entry in self.latency]})
        obj["metadata"]["labels"] = {REGION_LABEL: self.region, CLUSTER_LABEL: self.cluster}
        if self.resource_version:
            obj["metadata"]["resourceVersion"] = self.resource_version
        return obj


def parse_health_report(obj: dict[str, Any]) -> HealthReport:
    """A HealthReport from the API's JSON; entries missing a field are dropped (they cannot vote)."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    region, cluster = str(spec.get("region") or ""), str(spec.get("cluster") or "")
    if not region or not cluster:
        raise ValueError(f"HealthReport {meta.get('name')!r}: spec.region and spec.cluster are required")
    down = []
    for raw in (obj.get("status") or {}).get("down") or []:
        if isinstance(raw, dict) and all(isinstance(raw.get(k), str) and raw[k] for k in ("intent", "address",
                                                                                             "check")):
            down.append(DownEntry(raw["intent"], raw["address"], raw["check"], str(raw.get("since") or ""),
                                  str(raw.get("message") or "")))
    latency = []
    for raw in (obj.get("status") or {}).get("latency") or []:
        if isinstance(raw, dict) and isinstance(raw.get("address"), str) and raw["address"] \
                and isinstance(raw.get("rttMicros"), int) and raw["rttMicros"] >= 0:
            latency.append(LatencyEntry(raw["address"], raw["rttMicros"], str(raw.get("measured") or "")))
    return HealthReport(str(meta.get("namespace") or ""), region, cluster, tuple(down),
                        str(meta.get("resourceVersion") or ""), tuple(latency))


@dataclass(frozen=True)
class ProberLease:
    """A region's prober Lease (``fleetdns-prober-<region>``, label ``fleetdns.io/region``): while its holder
    renews it saying its reports are current, the region votes (aggregator/health/quorum.py)."""

    region: str
    holder: str
    renew_time: str
    reports_current: bool = True  # annotation fleetdns.io/reports-current; absent (an older prober): current


def parse_prober_lease(obj: dict[str, Any]) -> ProberLease:
    meta, spec = _object(obj.get("metadata")), _object(obj.get("spec"))
    labels, annotations = _object(meta.get("labels")), _object(meta.get("annotations"))
    region = str(labels.get(REGION_LABEL) or region_of_lease(str(meta.get("name") or "")) or "")
    if not region:
        raise ValueError(f"Lease {meta.get('name')!r}: no {REGION_LABEL} label")
    current = annotations.get(REPORTS_CURRENT_ANNOTATION) != "false"
    return ProberLease(region, str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or ""), current)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
