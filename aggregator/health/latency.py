"""The probers' round-trip times, LowestLatency's input: per (region, cluster address) the median RTT the
region's prober reported most recently (docs/design/views.md §3).

Reports are per (namespace, region, cluster), so one address may be listed in several of a region's reports;
the entry with the newest ``measured`` wins (one prober, one clock). The prober drops an address whose samples
went stale; the engine adds the quorum's rule on top: only a region whose prober votes (fresh Lease) counts.
Thread-safe; a report change returns the (region, address) pairs whose value changed, so the engine queues
only the intents that can move.
"""

from __future__ import annotations

import ipaddress
import threading

from fleetdns.healthreport import HealthReport, LatencyEntry

ReportId = tuple[str, str, str]  # (namespace, region, cluster)
Pair = tuple[str, str]  # (region, address)


class LatencyIndex:
    def __init__(self) -> None:
        self._by_region: dict[str, dict[str, dict[ReportId, LatencyEntry]]] = {}  # region -> address -> report
        self._lock = threading.Lock()

    def apply(self, old: HealthReport | None, new: HealthReport | None) -> set[Pair]:
        """Record one report change; returns the (region, address) pairs whose RTT changed."""
        before, after = _entries(old), _entries(new)
        current = new or old
        if current is None or before == after:
            return set()
        report: ReportId = (current.namespace, current.region, current.cluster)
        changed = set()
        with self._lock:
            addresses = self._by_region.setdefault(current.region, {})
            for address in set(before) | set(after):
                was = _freshest(addresses.get(address, {}))
                listed = addresses.setdefault(address, {})
                if address in after:
                    listed[report] = after[address]
                else:
                    listed.pop(report, None)
                    if not listed:
                        del addresses[address]
                if _freshest(addresses.get(address, {})) != was:
                    changed.add((current.region, address))
            if not addresses:
                del self._by_region[current.region]
        return changed

    def region(self, region: str) -> dict[str, int]:
        """Address -> RTT in µs as the region last reported it."""
        with self._lock:
            return {address: rtt for address, reports in self._by_region.get(region, {}).items()
                    if (rtt := _freshest(reports)) is not None}


def _entries(report: HealthReport | None) -> dict[str, LatencyEntry]:
    if report is None:
        return {}
    entries: dict[str, LatencyEntry] = {}
    for entry in report.latency:
        try:
            address = str(ipaddress.ip_address(entry.address))  # as the aggregator writes addresses
        except ValueError:
            continue
        known = entries.get(address)
        if known is None or entry.measured > known.measured:
            entries[address] = entry
    return entries


def _freshest(reports: dict[ReportId, LatencyEntry]) -> int | None:
    """The RTT of the newest measurement (ties: the lower RTT, so the result does not depend on dict order)."""
    if not reports:
        return None
    return max(reports.values(), key=lambda e: (e.measured, -e.rtt_micros)).rtt_micros
