"""The regions' probers as the host sees them, played by a test: Leases renewed while a region is alive, and
HealthReports written as a prober writes them (fleetdns/healthreport.py)."""

from __future__ import annotations

import threading

from fleetdns.apipaths import HEALTH_REPORTS, LEASES
from fleetdns.healthcheck import parse_health_check
from fleetdns.healthreport import REGION_LABEL, DownEntry, HealthReport, LatencyEntry, intent_ref, prober_lease_name
from fleetdns.kubeapi import KubeClient, KubeError
from fleetdns.leader import micro_time

RENEW = 0.4  # how often the stand-in probers renew their Leases
CHECK = {"httpGet": {"port": 80, "path": "/healthz"}}  # the health check the tests' intents carry


def down_entry(kind: str, name: str, fqdn: str, address: str, message: str = "HTTP 500") -> DownEntry:
    """The Down entry a region's prober writes when CHECK (sent with Host ``fqdn``) fails on ``address``."""
    check = parse_health_check(CHECK)
    assert check is not None
    return DownEntry(intent_ref(kind, name), address, check.resolved(fqdn).check_id, "2025-01-01T00:00:00Z", message)


class Probers:
    """The regions' probers as the host sees them: one Lease each (renewed while the region is alive) and one
    HealthReport per (region, member cluster) listing what that region sees Down."""

    def __init__(self, host: KubeClient, lease_namespace: str, namespace: str, regions: tuple[str, ...]) -> None:
        self.host, self.lease_namespace, self.namespace = host, lease_namespace, namespace
        self.regions = regions
        self.alive = set(regions)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True)

    def start(self) -> Probers:
        for region in self.regions:
            self.host.create(LEASES.path(self.lease_namespace), {
                **LEASES.manifest(prober_lease_name(region), self.lease_namespace, spec={
                    "holderIdentity": f"prober-{region}", "leaseDurationSeconds": 10, "renewTime": micro_time()}),
                "metadata": {"name": prober_lease_name(region), "namespace": self.lease_namespace,
                             "labels": {REGION_LABEL: region}}})
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(RENEW):
            for region in sorted(self.alive):
                self.host.merge_patch(LEASES.path(self.lease_namespace, prober_lease_name(region)),
                                      {"spec": {"renewTime": micro_time()}})

    def silence(self, region: str) -> None:
        """The region's prober stops renewing (crashed, or cut off from the host API)."""
        self.alive = self.alive - {region}  # a new set: the renewing thread may be iterating the old one

    def resume(self, region: str) -> None:
        """The region's prober renews again (restarted, or back in touch with the host API)."""
        self.alive = self.alive | {region}

    def report(self, region: str, cluster: str, *down: DownEntry, latency: tuple[LatencyEntry, ...] = ()) -> None:
        report = HealthReport(self.namespace, region, cluster, down, latency=latency)
        path = HEALTH_REPORTS.path(self.namespace, report.name)
        try:
            current = self.host.get(path)
        except KubeError as error:
            if error.status != 404:
                raise
            self.host.create(HEALTH_REPORTS.path(self.namespace), report.manifest())
            return
        body = report.manifest()
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        self.host.replace(path, body)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for region in self.regions:
            try:
                self.host.delete(LEASES.path(self.lease_namespace, prober_lease_name(region)))
            except KubeError as error:
                if error.status != 404:
                    raise
