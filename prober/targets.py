"""Intents → the checks to run: parsed at the edge, then pure bookkeeping (no I/O here).

Targets come from each intent's own status, as the aggregator published it: for every ``status.dns[]``
entry (one member cluster), every ``loadBalancer.ingress[].ip`` and ``resolvedAddresses`` entry is checked
with the intent's ``spec.healthCheck`` (its Host, when the check names none: ``spec.hosts[0]`` when the intent
lists hosts, else ``status.fqdn``, the first name the aggregator published; every intent kind alike). So the
prober needs no member credentials and checks exactly what DNS serves.

A **subject** is one thresholded state: (namespace, intent, cluster, address). A **probe** is one check on
the wire: (address, check_id). Identical checks of many intents (same address, port, scheme, Host, path,
headers) are one probe, run once per period and fanned out to every subject that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleetdns.addresses import parse_ips
from fleetdns.healthcheck import HealthCheck, HealthCheckError, parse_health_check
from fleetdns.healthreport import intent_ref
from prober.checks import CheckError, check_target

SERVICE_KIND, INGRESS_KIND = "ServiceDNSRecord", "IngressDNSRecord"


@dataclass(frozen=True)
class ClusterAddresses:
    cluster: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class ProbedIntent:
    """What the prober reads of an intent: its check (Host resolved) and each cluster's addresses."""

    kind: str
    namespace: str
    name: str
    check: HealthCheck | None = None
    clusters: tuple[ClusterAddresses, ...] = ()
    problem: str = ""  # why a healthCheck present in the spec is not run (logged, counted)
    waiting: bool = False  # an HTTP check without a Host until the aggregator writes status.fqdn (normal)

    @property
    def ident(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def ref(self) -> str:
        return intent_ref(self.kind, self.name)


def parse_intent(kind: str, obj: dict[str, Any]) -> ProbedIntent:
    """An intent of any kind → ProbedIntent; a bad healthCheck becomes ``problem``."""
    meta, spec, status = _dict(obj.get("metadata")), _dict(obj.get("spec")), _dict(obj.get("status"))
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    try:
        check = parse_health_check(spec.get("healthCheck"))
    except HealthCheckError as error:
        return ProbedIntent(kind, namespace, name, problem=str(error))
    if check is None:
        return ProbedIntent(kind, namespace, name)
    hosts = spec.get("hosts")  # the aggregator's rule too (each source's check_host)
    default_host = str(hosts[0]) if isinstance(hosts, list) and hosts else str(status.get("fqdn") or "")
    check = check.resolved(default_host)
    if check.http_get is not None and not check.http_get.host:
        return ProbedIntent(kind, namespace, name, waiting=True)  # a new intent: the aggregator has not written it
    try:
        check_target("127.0.0.1", check)  # a header that cannot be sent fails here, once per intent
    except CheckError as error:
        return ProbedIntent(kind, namespace, name, problem=f"spec.healthCheck.{error}")
    clusters = []
    for entry in _list(status.get("dns")):
        entry = _dict(entry)
        cluster = str(entry.get("cluster") or "")
        ips = [_dict(i).get("ip") for i in _list(_dict(entry.get("loadBalancer")).get("ingress"))]
        addresses = parse_ips([*ips, *_list(entry.get("resolvedAddresses"))])
        if cluster and addresses:
            clusters.append(ClusterAddresses(cluster, addresses))
    return ProbedIntent(kind, namespace, name, check, tuple(sorted(clusters, key=lambda c: c.cluster)))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []



@dataclass(frozen=True, order=True)
class ProbeKey:
    """One check on the wire: which address, which check definition (HealthCheck.check_id)."""

    address: str
    check_id: str


@dataclass(frozen=True, order=True)
class SubjectKey:
    """One thresholded state; it is reported in HealthReport ``<region>.<cluster>`` of ``namespace``."""

    namespace: str
    intent: str  # intent_ref(): "ServiceDNSRecord/web"
    cluster: str
    address: str

    @property
    def report(self) -> tuple[str, str]:
        return (self.namespace, self.cluster)

    @property
    def entry(self) -> tuple[str, str]:
        return (self.intent, self.address)


@dataclass(frozen=True)
class Subject:
    key: SubjectKey
    probe: ProbeKey
    check: HealthCheck  # the intent's own periodSeconds, timeoutSeconds and thresholds


def subjects_of(intent: ProbedIntent) -> tuple[Subject, ...]:
    if intent.check is None:
        return ()
    check_id = intent.check.check_id
    return tuple(Subject(SubjectKey(intent.namespace, intent.ref, c.cluster, address), ProbeKey(address, check_id),
                         intent.check)
                 for c in intent.clusters for address in c.addresses)


@dataclass
class Probe:
    """A shared check: run every ``period`` (the shortest of its subjects) with ``timeout`` (the longest)."""

    key: ProbeKey
    check: HealthCheck  # any subject's: the part on the wire is the same for all
    subjects: dict[SubjectKey, Subject] = field(default_factory=dict)

    @property
    def period(self) -> float:
        return float(min(s.check.period_seconds for s in self.subjects.values()))

    @property
    def timeout(self) -> float:
        return float(max(s.check.timeout_seconds for s in self.subjects.values()))


@dataclass
class Changes:
    """What one intent's update did to the probes and subjects."""

    added_probes: list[ProbeKey] = field(default_factory=list)
    removed_probes: list[ProbeKey] = field(default_factory=list)
    retimed_probes: list[ProbeKey] = field(default_factory=list)  # period or timeout changed
    added_subjects: list[Subject] = field(default_factory=list)
    removed_subjects: list[Subject] = field(default_factory=list)


class TargetIndex:
    """Intents → subjects → probes, updated one intent at a time (a status write touches one intent)."""

    def __init__(self) -> None:
        self.by_intent: dict[tuple[str, str, str], tuple[Subject, ...]] = {}
        self.probes: dict[ProbeKey, Probe] = {}

    def update(self, ident: tuple[str, str, str], subjects: tuple[Subject, ...]) -> Changes:
        """Replace the subjects of intent ``ident`` (empty: the intent is gone or checks nothing)."""
        changes = Changes()
        old = {s.key: s for s in self.by_intent.get(ident, ())}
        new = {s.key: s for s in subjects}
        if subjects:
            self.by_intent[ident] = subjects
        else:
            self.by_intent.pop(ident, None)
        touched: dict[ProbeKey, tuple[float, float] | None] = {}
        for key, subject in old.items():
            if new.get(key) == subject:
                continue
            probe = self.probes[subject.probe]
            touched.setdefault(probe.key, (probe.period, probe.timeout))
            del probe.subjects[key]
            changes.removed_subjects.append(subject)
        for key, subject in new.items():
            if old.get(key) == subject:
                continue
            existing = self.probes.get(subject.probe)
            if existing is None:
                existing = self.probes[subject.probe] = Probe(subject.probe, subject.check)
                touched[existing.key] = None
            else:
                touched.setdefault(existing.key, (existing.period, existing.timeout))
            existing.subjects[key] = subject
            changes.added_subjects.append(subject)
        for probe_key, before in touched.items():
            probe = self.probes[probe_key]
            if not probe.subjects:
                del self.probes[probe_key]
                if before is not None:
                    changes.removed_probes.append(probe_key)
            elif before is None:
                changes.added_probes.append(probe_key)
            elif before != (probe.period, probe.timeout):
                changes.retimed_probes.append(probe_key)
        return changes
