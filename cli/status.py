"""``fleetdns status``: members, regions and apps, each with what needs attention, from the host's own facts (and,
with ``--dns``, each region's CoreDNS asked live for every zone's SOA)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cli.dnsquery import Server, ask
from cli.facts import HostFacts, age, condition
from fleetdns.conditions import FAIL_OPEN, REACHABLE, READY
from fleetdns.healthreport import ProberLease


@dataclass(frozen=True)
class MemberRow:
    name: str
    region: str
    zone: str
    state: str
    since: str  # the Reachable condition's lastTransitionTime
    reason: str  # why it is not connected ("" when it is)
    served_kinds: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state == "Connected"


@dataclass(frozen=True)
class RegionRow:
    region: str
    prober: str  # the Lease's holder ("" none)
    renewed_seconds_ago: float | None
    voting: bool
    why_not: str
    checks_down: int
    dns: str = "not checked"  # with --dns: "answering (1.2 ms)" or what failed
    dns_ok: bool = True

    @property
    def ok(self) -> bool:
        return self.voting and self.dns_ok


@dataclass(frozen=True)
class AppRow:
    namespace: str
    kind: str
    name: str
    state: str  # Published, FailOpen, or the Ready condition's reason
    message: str

    @property
    def ok(self) -> bool:
        return self.state == "Published"


@dataclass(frozen=True)
class Status:
    members: list[MemberRow]
    regions: list[RegionRow]
    apps: list[AppRow]

    @property
    def ok(self) -> bool:
        return all(row.ok for rows in (self.members, self.regions, self.apps) for row in rows)

    def to_json(self) -> dict[str, Any]:
        apps = Counter(app.state for app in self.apps)
        return {"healthy": self.ok, "members": [asdict(m) for m in self.members],
                "regions": [asdict(r) for r in self.regions], "apps": {"byState": dict(sorted(apps.items())),
                "needingAttention": [asdict(a) for a in self.apps if not a.ok]}}


def member_rows(facts: HostFacts) -> list[MemberRow]:
    rows = []
    for obj in facts.members:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        reachable = condition(obj, REACHABLE)
        state = str(status.get("state") or "Connecting")
        reason = "" if state == "Connected" else str(reachable.get("message") or reachable.get("reason") or
                                                     "not reached yet (is the aggregator running?)")
        rows.append(MemberRow(obj["metadata"]["name"], str(spec.get("region", "")), str(spec.get("zone", "")), state,
                              str(reachable.get("lastTransitionTime") or ""), reason,
                              [str(k) for k in status.get("servedKinds") or []]))
    return sorted(rows, key=lambda r: (r.region, r.name))


def region_rows(facts: HostFacts, members: list[MemberRow], dns: dict[str, Server], zones: list[str],
                now: datetime) -> list[RegionRow]:
    regions = {m.region for m in members} | {lease.region for lease, _ in facts.leases} | set(dns)
    leases = {lease.region: (lease, duration) for lease, duration in facts.leases}
    down = Counter(report.region for report in facts.reports for _ in report.down)
    rows = []
    for region in sorted(regions):
        lease, duration = leases.get(region, (None, 10.0))
        renewed = age(lease.renew_time, now) if lease else None
        why = _why_not_voting(lease, renewed, duration)
        row = RegionRow(region, lease.holder if lease else "", None if renewed is None else round(renewed, 1),
                        not why, why, down[region])
        if region in dns:
            row = _with_dns(row, dns[region], zones)
        rows.append(row)
    return rows


def _why_not_voting(lease: ProberLease | None, renewed: float | None, duration: float) -> str:
    if lease is None:
        return "no prober Lease: no prober runs for this region"
    if not lease.holder:
        return "its prober released the Lease (stopped)"
    if renewed is None or renewed > duration:
        return f"Lease not renewed for {renewed:.0f} s (prober stopped, or cut off from the host)" \
            if renewed is not None else "Lease never renewed"
    if not lease.reports_current:
        return "its prober is rewriting its reports (after a start or a cut off the host)"
    return ""


def _with_dns(row: RegionRow, server: Server, zones: list[str]) -> RegionRow:
    if not zones:
        return replace(row, dns="no Domain to ask about")
    failures, times = [], []
    for zone in zones:
        reply = ask(server, zone, "SOA")
        if not reply.answered or reply.rcode != "NOERROR" or not reply.values:
            failures.append(f"{zone}: {reply.error or reply.rcode or 'no SOA'}")
        else:
            times.append(reply.millis)
    if failures:
        return replace(row, dns=f"{server} failing: {'; '.join(failures)}", dns_ok=False)
    return replace(row, dns=f"{server} answering ({max(times):.1f} ms)")


def app_rows(facts: HostFacts) -> list[AppRow]:
    rows = []
    for resource, obj in facts.intents:
        meta = obj.get("metadata") or {}
        ready, fail_open = condition(obj, READY), condition(obj, FAIL_OPEN)
        if fail_open.get("status") == "True":
            state, message = "FailOpen", str(fail_open.get("message") or "")
        elif ready.get("status") == "True":
            state, message = "Published", ""
        elif ready:
            state, message = str(ready.get("reason") or "NotReady"), str(ready.get("message") or "")
        else:
            state, message = "Pending", "no status yet (is the aggregator running?)"
        rows.append(AppRow(str(meta.get("namespace", "")), resource.kind, str(meta.get("name", "")), state, message))
    return sorted(rows, key=lambda r: (r.ok, r.namespace, r.kind, r.name))


def status(facts: HostFacts, dns: dict[str, Server], now: datetime | None = None) -> Status:
    zones = sorted({str((d.get("spec") or {}).get("domain") or "") for d in facts.domains} - {""})
    members = member_rows(facts)
    return Status(members, region_rows(facts, members, dns, zones, now or datetime.now(UTC)), app_rows(facts))
