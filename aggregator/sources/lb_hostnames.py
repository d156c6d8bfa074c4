"""Load-balancer hostnames resolved to addresses (EKS-style load balancers give a hostname, not an IP), as
KubeFed and ExternalDNS's ``--resolve-service-load-balancer-hostname`` do, but off the reconcile path.

A reconcile only reads what the cache holds (``HostnameResolver.lookup``); one background thread resolves
A and AAAA with dnspython, keeps each answer for ``min(its DNS TTL, the smallest recordTTL of the intents
using it)`` (clamped to ``MIN_LIFETIME``..``MAX_LIFETIME``), refreshes it at three quarters of that, and
re-queues the intents using a hostname when its addresses change. A refresh that fails keeps the last
addresses until that lifetime has passed since the last success, then the hostname counts as unresolved.

``HostnameCache`` is the bookkeeping (pure: the time is an argument); ``HostnameResolver`` adds the thread
and the DNS queries; ``resolve_entry`` turns a cluster's ``status.dns[]`` entry into one with addresses.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from aggregator.health.readiness import judge_resolved
from aggregator.model import ClusterStatus, IntentKey
from fleetdns.addresses import parse_ips

logger = logging.getLogger("aggregator.lb_hostnames")
MIN_LIFETIME = 2.0  # a DNS TTL of 0 or 1 does not make us query more than every 1.5 s
MAX_LIFETIME = 300.0  # the cap: a long TTL is still re-checked every few minutes
REFRESH_AT = 0.75  # of the lifetime: room for retries before the addresses expire
RETRY_MIN = 1.0  # a failed query is retried after 1 s, doubling ...
RETRY_MAX = 10.0  # ... up to 10 s (a new ELB's name takes a minute or two to appear in DNS)
QUERY_TIMEOUT = 2.0  # per record type, over every configured nameserver
EXPIRED_SUFFIX = "; last addresses expired"

Notify = Callable[[Iterable[IntentKey]], None]
Wanted = Callable[[IntentKey], bool]
Clock = Callable[[], float]
LookupObserver = Callable[[bool, float, int], None]  # resolved?, seconds, hostnames in use (for metrics)


class State(StrEnum):
    PENDING = "Pending"  # never answered yet
    RESOLVED = "Resolved"  # addresses usable (possibly while a refresh is failing, until they expire)
    FAILED = "Failed"  # no usable address: the name does not resolve, or its last addresses expired


@dataclass(frozen=True)
class Resolution:
    """What a reconcile may use for one hostname."""

    hostname: str
    state: State
    addresses: tuple[str, ...] = ()
    detail: str = ""  # the last failure, if any
    failures: int = 0  # consecutive failed queries


class HostnameLookup(Protocol):
    """What a source asks (the reconcile path): never blocks on DNS."""

    def lookup(self, user: IntentKey, hostnames: Collection[str], record_ttl: int) -> Mapping[str, Resolution]:
        """The resolutions of ``hostnames``; ``user`` now uses exactly these (it is re-queued when they change)."""
        ...


@dataclass
class _Entry:
    users: dict[IntentKey, int] = field(default_factory=dict)  # intent -> its recordTTL
    state: State = State.PENDING
    addresses: tuple[str, ...] = ()
    detail: str = ""
    dns_ttl: float = MAX_LIFETIME
    resolved_at: float = 0.0
    expires_at: float = math.inf
    due: float = 0.0
    in_flight: bool = False
    failures: int = 0

    def lifetime(self) -> float:
        shortest = min([self.dns_ttl, *self.users.values()])
        return min(max(shortest, MIN_LIFETIME), MAX_LIFETIME)

    def resolution(self, hostname: str) -> Resolution:
        return Resolution(hostname, self.state, self.addresses, self.detail, self.failures)

    def view(self) -> tuple[State, tuple[str, ...]]:
        """What the intents using it see change (a new failure text alone re-queues nothing)."""
        return self.state, self.addresses


class HostnameCache:
    """Hostnames, their addresses, their users and when each is due; not thread-safe, time passed in."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._by_user: dict[IntentKey, frozenset[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def resolution(self, hostname: str) -> Resolution | None:
        entry = self._entries.get(hostname)
        return None if entry is None else entry.resolution(hostname)

    def users(self, hostname: str) -> list[IntentKey]:
        entry = self._entries.get(hostname)
        return sorted(entry.users) if entry else []

    def use(self, user: IntentKey, hostnames: Collection[str], record_ttl: int, now: float) -> dict[str, Resolution]:
        """``user`` now uses exactly ``hostnames``; a new hostname is due at once (PENDING until answered)."""
        wanted = frozenset(hostnames)
        for gone in self._by_user.get(user, frozenset()) - wanted:
            self._drop_user(gone, user)
        for hostname in wanted:
            entry = self._entries.get(hostname)
            if entry is None:
                entry = self._entries[hostname] = _Entry(due=now)
            entry.users[user] = record_ttl
            if entry.state is State.RESOLVED:  # a shorter recordTTL shortens the current lifetime too
                entry.expires_at = min(entry.expires_at, entry.resolved_at + entry.lifetime())
                if not entry.in_flight:
                    entry.due = min(entry.due, entry.resolved_at + REFRESH_AT * entry.lifetime())
        if wanted:
            self._by_user[user] = wanted
        else:
            self._by_user.pop(user, None)
        return {hostname: self._entries[hostname].resolution(hostname) for hostname in wanted}

    def forget_users(self, hostname: str, users: Iterable[IntentKey]) -> bool:
        """Drop users that no longer exist; False when nobody uses the hostname any more (it is forgotten)."""
        for user in users:
            self._drop_user(hostname, user)
            remaining = self._by_user.get(user, frozenset()) - {hostname}
            if remaining:
                self._by_user[user] = remaining
            else:
                self._by_user.pop(user, None)
        return hostname in self._entries

    def _drop_user(self, hostname: str, user: IntentKey) -> None:
        entry = self._entries.get(hostname)
        if entry is None:
            return
        entry.users.pop(user, None)
        if not entry.users:
            del self._entries[hostname]

    def due(self, now: float) -> list[str]:
        """Hostnames to query now, marked in flight until ``succeeded`` or ``failed``."""
        found = sorted(h for h, e in self._entries.items() if not e.in_flight and e.due <= now)
        for hostname in found:
            self._entries[hostname].in_flight = True
        return found

    def next_event(self) -> float | None:
        """When something is next due or expires (None: nothing to do until a new hostname is used)."""
        times = [e.due for e in self._entries.values() if not e.in_flight]
        times += [e.expires_at for e in self._entries.values() if e.state is State.RESOLVED]
        return min(times, default=None)

    def succeeded(self, hostname: str, addresses: Sequence[str], dns_ttl: float, now: float) -> list[IntentKey]:
        """An answer with addresses; returns the users to re-queue (its addresses or state changed)."""
        entry = self._entries.get(hostname)
        if entry is None:
            return []
        if not addresses:
            return self.failed(hostname, "no A or AAAA record", now)
        before = entry.view()
        entry.state, entry.addresses, entry.detail = State.RESOLVED, parse_ips(list(addresses)), ""
        entry.dns_ttl, entry.resolved_at, entry.failures, entry.in_flight = dns_ttl, now, 0, False
        entry.expires_at = now + entry.lifetime()
        entry.due = now + REFRESH_AT * entry.lifetime()
        return sorted(entry.users) if entry.view() != before else []

    def failed(self, hostname: str, detail: str, now: float) -> list[IntentKey]:
        """A query that failed: last addresses kept until they expire, retried with a capped backoff."""
        entry = self._entries.get(hostname)
        if entry is None:
            return []
        before = entry.view()
        entry.failures += 1
        entry.in_flight = False
        entry.due = now + min(RETRY_MIN * 2 ** (entry.failures - 1), RETRY_MAX)
        if entry.state is State.RESOLVED and now < entry.expires_at:
            entry.detail = detail
            entry.due = min(entry.due, entry.expires_at)
        else:
            # One wording for "had addresses, lost them", whether expire() or this failure saw it first, and kept
            # across retries: a reason that flips between two texts would rewrite every user's status.
            lost = entry.state is State.RESOLVED or entry.detail.endswith(EXPIRED_SUFFIX)
            entry.detail = detail + EXPIRED_SUFFIX if lost else detail
            entry.state, entry.addresses, entry.expires_at = State.FAILED, (), math.inf
        return sorted(entry.users) if entry.view() != before else []

    def expire(self, now: float) -> list[str]:
        """Addresses not refreshed within their lifetime are dropped; returns those hostnames."""
        expired = []
        for hostname, entry in sorted(self._entries.items()):
            if entry.state is State.RESOLVED and entry.expires_at <= now:
                entry.state, entry.addresses, entry.expires_at = State.FAILED, (), math.inf
                entry.detail = f"{entry.detail or 'not refreshed'}{EXPIRED_SUFFIX}"
                expired.append(hostname)
        return expired


@dataclass(frozen=True)
class Answer:
    addresses: tuple[str, ...]
    ttl: float  # the smallest TTL on the way (CNAMEs included)


class ResolutionError(Exception):
    """A hostname that gave no usable answer; the message says why (shown in the intent's status)."""


Query = Callable[[str], Answer]


def dns_query(nameservers: Sequence[tuple[str, int]] = (), timeout: float = QUERY_TIMEOUT) -> Query:
    """A query function over ``nameservers`` (IP, port), or the system resolver (/etc/resolv.conf) when empty.
    Without either every hostname fails with a reason saying so: a fleet of IP load balancers still runs."""
    try:
        resolver = dns.resolver.Resolver(configure=not nameservers)
    except dns.exception.DNSException as error:
        problem = f"no DNS server configured ({type(error).__name__} reading /etc/resolv.conf): set --dns-resolver"
        logger.error("load-balancer hostnames cannot be resolved", extra={"error": problem})

        def unconfigured(hostname: str) -> Answer:
            raise ResolutionError(problem)

        return unconfigured
    if nameservers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in nameservers]
    resolver.lifetime = timeout
    resolver.timeout = timeout

    def query(hostname: str) -> Answer:
        try:
            name = dns.name.from_text(hostname)
        except dns.exception.DNSException as error:
            raise ResolutionError(f"not a DNS name ({type(error).__name__})") from None
        addresses: list[str] = []
        ttls: list[float] = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            try:
                answer = resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
            except dns.resolver.NXDOMAIN:
                raise ResolutionError("NXDOMAIN (no such name)") from None
            except dns.resolver.NoNameservers:
                raise ResolutionError("no nameserver answered (SERVFAIL or REFUSED)") from None
            except dns.exception.Timeout:
                raise ResolutionError(f"no answer within {timeout:g}s") from None
            except dns.exception.DNSException as error:
                raise ResolutionError(f"{type(error).__name__}") from None
            if answer.rrset is not None:
                addresses += [str(ipaddress.ip_address(rr.address)) for rr in answer.rrset]
                ttls.append(min(rrset.ttl for rrset in answer.response.answer))
        if not addresses:
            raise ResolutionError("no A or AAAA record")
        return Answer(tuple(addresses), float(min(ttls)))

    return query


class HostnameResolver:
    """The cache kept fresh by one background thread; ``lookup`` is what reconciles call (thread-safe)."""

    def __init__(self, query: Query, clock: Clock = time.monotonic, observe: LookupObserver | None = None) -> None:
        self._query = query
        self._clock = clock
        self._observe: LookupObserver = observe or (lambda resolved, seconds, in_use: None)
        self._cache = HostnameCache()
        self._changed = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._notify: Notify = lambda keys: None
        self._wanted: Wanted = lambda key: True

    def lookup(self, user: IntentKey, hostnames: Collection[str], record_ttl: int) -> dict[str, Resolution]:
        with self._changed:
            found = self._cache.use(user, hostnames, record_ttl, self._clock())
            if any(r.state is State.PENDING for r in found.values()):
                self._changed.notify()
            return found

    def start(self, notify: Notify, wanted: Wanted) -> HostnameResolver:
        """``notify`` re-queues intents whose hostnames changed; ``wanted`` says whether an intent still exists."""
        self._notify, self._wanted = notify, wanted
        self._thread = threading.Thread(target=self._run, name="lb-hostnames", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join(timeout=QUERY_TIMEOUT * 2 + 1)

    def _run(self) -> None:
        while True:
            with self._changed:
                if self._stopping:
                    return
                now = self._clock()
                expired = self._cache.expire(now)
                users = sorted({user for hostname in expired for user in self._cache.users(hostname)})
                due = self._cache.due(now)
                if not expired and not due:
                    wake = self._cache.next_event()
                    self._changed.wait(None if wake is None else max(wake - now, 0.0))
                    continue
            for hostname in expired:
                logger.warning("load-balancer hostname addresses expired", extra={"hostname": hostname})
            if users:
                self._notify(users)
            for hostname in due:
                if self._stopping:
                    return
                self._refresh(hostname)

    def _refresh(self, hostname: str) -> None:
        with self._changed:
            users = self._cache.users(hostname)
        gone = [user for user in users if not self._wanted(user)]  # outside the lock: reads the engine's caches
        with self._changed:
            if gone and not self._cache.forget_users(hostname, gone):
                return
        started = time.perf_counter()
        try:
            answer = self._query(hostname)
        except Exception as error:  # noqa: BLE001 - one hostname must never stop the refresh of the others
            self._observe(False, time.perf_counter() - started, len(self._cache))
            detail = str(error) if isinstance(error, ResolutionError) else type(error).__name__
            with self._changed:
                changed = self._cache.failed(hostname, detail, self._clock())
                resolution = self._cache.resolution(hostname)
            if resolution is not None and (changed or resolution.failures == 1):  # once per streak, not per retry
                logger.warning("load-balancer hostname not resolved", extra={
                    "hostname": hostname, "error": detail, "state": str(resolution.state),
                    "addresses_kept": list(resolution.addresses)})
            self._notify(changed)
            return
        self._observe(True, time.perf_counter() - started, len(self._cache))
        with self._changed:
            changed = self._cache.succeeded(hostname, answer.addresses, answer.ttl, self._clock())
        if changed:
            logger.info("load-balancer hostname resolved", extra={
                "hostname": hostname, "addresses": list(answer.addresses), "ttl": answer.ttl})
        self._notify(changed)


def hostnames_of(clusters: Iterable[ClusterStatus]) -> set[str]:
    return {a.hostname for c in clusters for a in c.addresses if a.hostname}


def resolve_entry(entry: ClusterStatus, resolutions: Mapping[str, Resolution],
                  previous: ClusterStatus | None) -> ClusterStatus:
    """The cluster's entry with its hostnames' addresses; a cluster that has no address at all then (no IP
    from its load balancer, no hostname resolved) leaves the answer (aggregator/health/readiness.py).

    While a hostname has never been answered (a restart, a new leader), the addresses the intent's status
    last published for the same hostnames stand in, so a cold cache never empties a published answer.
    """
    hostnames = sorted(a.hostname for a in entry.addresses if a.hostname)
    if not hostnames:
        return entry
    found: list[str] = []
    problems: list[str] = []
    for hostname in hostnames:
        resolution = resolutions.get(hostname) or Resolution(hostname, State.PENDING)
        if resolution.addresses:
            found += resolution.addresses
        elif resolution.state is State.PENDING and previous is not None and previous.resolved \
                and sorted(a.hostname for a in previous.addresses if a.hostname) == hostnames:
            found += previous.resolved
        elif resolution.state is State.PENDING:
            problems.append(f"{hostname}: resolving (first lookup)")
        else:
            problems.append(f"{hostname}: {resolution.detail or 'no address'}")
    return judge_resolved(replace(entry, resolved=parse_ips(found)), problems)
