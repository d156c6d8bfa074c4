"""The location policies, per client view: which of the healthy clusters are nearest to a view
(GeoProximity) or fastest from its region (LowestLatency). Pure; the Selector (loadbalancing.py) asks once
per view after health and quorum, so health always wins over distance and latency.

- GeoProximity: great-circle distance from the view's location to each cluster's ``spec.location``; the
  clusters within 50 km of the nearest count as equally near and all answer.
- LowestLatency: a cluster's RTT from the view's ``latencyFrom`` region is the lowest median its fresh prober
  reported for the cluster's published addresses; the clusters within 20 % + 2 ms of the fastest answer. The
  view's current answer (the intent's last status) is kept while each of its clusters stays healthy and within
  50 % + 5 ms of the fastest (hysteresis: near-equal paths do not flap).

Either returns None when it cannot rank the view; the Selector then falls back (docs/design/views.md §2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aggregator.health.quorum import checked_addresses
from aggregator.model import ClusterStatus, MemberCluster
from fleetdns.dnsview import DNSView, Location, accept_views, region_view_name

EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)
EQUAL_DISTANCE_KM = 50.0  # clusters this much farther than the nearest count as equally near
LATENCY_BAND = (0.20, 2000)  # (relative, absolute µs): within 20 % + 2 ms of the fastest answer
KEEP_BAND = (0.50, 5000)  # the current answer stays while within 50 % + 5 ms of the fastest
NO_LOCATION = "NoLocation"
NO_LATENCY_DATA = "NoLatencyData"
Rtts = Mapping[str, Mapping[str, int]]  # region -> cluster address -> median RTT in µs (fresh regions only)


@dataclass(frozen=True)
class View:
    """A client view as the policies see it: a DNSView, or a region's own view."""

    name: str
    location: Location | None = None
    latency_from: str = ""  # region whose probes stand for these clients


@dataclass(frozen=True)
class Locality:
    """What the location policies rank by, for one reconcile: the views, the clusters' locations and the
    fresh RTTs."""

    views: tuple[View, ...] = ()
    locations: Mapping[str, Location] = field(default_factory=dict)  # MemberCluster -> spec.location
    rtts: Rtts = field(default_factory=dict)

    @classmethod
    def of(cls, views: tuple[View, ...], clusters: Iterable[MemberCluster], rtts: Rtts) -> Locality:
        """The views with the clusters' locations and the RTTs read from the views' ``latencyFrom`` regions."""
        return cls(views, {c.name: c.location for c in clusters if c.location is not None}, rtts)


@dataclass(frozen=True)
class Ranked:
    """A view's answer under a location policy, and why."""

    clusters: tuple[ClusterStatus, ...]
    reason: str


def distance_km(a: Location, b: Location) -> float:
    """Great-circle distance (haversine on a sphere of the Earth's mean radius)."""
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat, dlon = lat2 - lat1, math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def mean_location(points: Iterable[Location]) -> Location | None:
    """The centre of a few points (mean of unit vectors, so a region across the antimeridian stays in place)."""
    vectors = [(math.cos(math.radians(p.latitude)) * math.cos(math.radians(p.longitude)),
                math.cos(math.radians(p.latitude)) * math.sin(math.radians(p.longitude)),
                math.sin(math.radians(p.latitude))) for p in points]
    if not vectors:
        return None
    x, y, z = (sum(v[i] for v in vectors) / len(vectors) for i in range(3))
    if math.hypot(x, y, z) < 1e-9:  # antipodal points: no meaningful centre, take the first
        x, y, z = vectors[0]
    return Location(round(math.degrees(math.atan2(z, math.hypot(x, y))), 6), round(math.degrees(math.atan2(y, x)), 6))


def views_of(dns_views: Sequence[DNSView], regions: Mapping[str, Sequence[Location]]) -> tuple[View, ...]:
    """The served views: the accepted DNSViews, then ``region-<region>`` for every region (its clusters'
    mean location, latency from that region)."""
    own = tuple(View(region_view_name(region), mean_location(locations), region)
                for region, locations in sorted(regions.items()))
    return tuple(View(v.name, v.location, v.latency_from) for v in dns_views) + own


def client_views(clusters: Iterable[MemberCluster], dns_views: Iterable[DNSView]) -> tuple[View, ...]:
    """The client views: the accepted DNSViews, then one per region of the MemberClusters, at its clusters' mean
    location (``latency_from`` names the regions whose RTTs the location policies need)."""
    regions: dict[str, list[Location]] = {}
    for cluster in clusters:
        regions.setdefault(cluster.region, []).extend([cluster.location] if cluster.location else [])
    accepted, _ = accept_views(dns_views)
    return views_of(accepted, regions)


def nearest(view: View, eligible: Sequence[ClusterStatus], candidates: Sequence[ClusterStatus],
            locations: Mapping[str, Location]) -> Ranked | None:
    """The eligible clusters nearest to the view; None when the view or every eligible cluster has no location."""
    if view.location is None:
        return None
    distances = {c.cluster: distance_km(view.location, locations[c.cluster])
                 for c in candidates if c.cluster in locations}
    ranked = sorted((c for c in eligible if c.cluster in distances), key=lambda c: (distances[c.cluster], c.cluster))
    if not ranked:
        return None
    best = distances[ranked[0].cluster]
    chosen = tuple(c for c in ranked if distances[c.cluster] <= best + EQUAL_DISTANCE_KM)
    listed = ", ".join(f"{c.cluster} {distances[c.cluster]:,.0f} km" for c in chosen)
    band = f" (within {EQUAL_DISTANCE_KM:.0f} km)" if len(chosen) > 1 else ""
    passed = _passed_over(candidates, eligible, lambda c: c.cluster in distances and distances[c.cluster] < best)
    head = f"failed over from {passed}; nearest healthy" if passed else "nearest"
    return Ranked(_by_name(chosen), f"{head}: {listed}{band}")


def fastest(view: View, eligible: Sequence[ClusterStatus], candidates: Sequence[ClusterStatus], rtts: Rtts,
            current: frozenset[str] = frozenset()) -> Ranked | None:
    """The eligible clusters with the lowest RTT from the view's region, with hysteresis around ``current``
    (the clusters answering the view now); None when no eligible cluster has a fresh RTT from there."""
    measured = rtts.get(view.latency_from, {}) if view.latency_from else {}
    rtt = {c.cluster: value for c in candidates if (value := cluster_rtt(c, measured)) is not None}
    ranked = sorted((c for c in eligible if c.cluster in rtt), key=lambda c: (rtt[c.cluster], c.cluster))
    if not ranked:
        return None
    best = rtt[ranked[0].cluster]
    passed = _passed_over(candidates, eligible, lambda c: c.cluster in rtt and rtt[c.cluster] < best)
    prefix = f"failed over from {passed}; " if passed else ""
    names = {c.cluster for c in eligible}
    if current and current <= names and all(c in rtt and rtt[c] <= within(best, KEEP_BAND) for c in current):
        kept = tuple(c for c in ranked if c.cluster in current)
        if {c.cluster for c in kept} != {ranked[0].cluster}:
            listed = ", ".join(f"{c.cluster} {_ms(rtt[c.cluster])}" for c in kept)
            return Ranked(_by_name(kept), f"{prefix}kept from {view.latency_from}: {listed} (within "
                                          f"{_band(KEEP_BAND)} of the fastest, {ranked[0].cluster} {_ms(best)})")
        chosen = kept
    else:
        chosen = tuple(c for c in ranked if rtt[c.cluster] <= within(best, LATENCY_BAND))
    listed = ", ".join(f"{c.cluster} {_ms(rtt[c.cluster])}" for c in chosen)
    band = f" (within {_band(LATENCY_BAND)})" if len(chosen) > 1 else ""
    return Ranked(_by_name(chosen), f"{prefix}fastest from {view.latency_from}: {listed}{band}")


def cluster_rtt(cluster: ClusterStatus, measured: Mapping[str, int]) -> int | None:
    """The lowest RTT measured to any of the cluster's published addresses (None: none measured)."""
    withdrawn = set(cluster.withdrawn)
    values = [measured[a] for a in checked_addresses(cluster) if a in measured and a not in withdrawn]
    return min(values) if values else None


def within(best: int, band: tuple[float, int]) -> float:
    return best * (1 + band[0]) + band[1]


def _passed_over(candidates: Sequence[ClusterStatus], eligible: Sequence[ClusterStatus],
                 better: Callable[[ClusterStatus], bool]) -> str:
    """The candidates that would rank before the answer but are not eligible (not healthy), with their reason."""
    names = {c.cluster for c in eligible}
    return "; ".join(f"{c.cluster} ({c.reason})" for c in sorted(candidates, key=lambda c: c.cluster)
                     if c.cluster not in names and better(c))


def _by_name(clusters: Iterable[ClusterStatus]) -> tuple[ClusterStatus, ...]:
    return tuple(sorted(clusters, key=lambda c: c.cluster))


def _ms(micros: float) -> str:
    return f"{micros / 1000:.1f} ms"


def _band(band: tuple[float, int]) -> str:
    return f"{band[0]:.0%} + {band[1] // 1000} ms".replace("%", " %")
