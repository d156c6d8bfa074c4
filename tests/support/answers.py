"""Clients asking all the time while a fault is injected: each query through a resolver, counted by what came back
(the expected answer, another one, an empty one, SERVFAIL, or no answer at all)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from rig.coredns import CoreDNS
from rig.waiting import in_background


def forwarding_resolver(upstream: tuple[str, int], workdir: Path, name: str) -> CoreDNS:
    """Stock CoreDNS as the resolver clients ask (``forward`` to one regional CoreDNS, no cache: every query reaches
    the region, and a SERVFAIL or an empty answer there reaches the client)."""
    host, port = upstream
    return CoreDNS(f".:{{port}} {{\n    bind 127.0.0.1\n    forward . {host}:{port}\n}}\n", workdir, "127.0.0.1", name)


class AnswerCount:
    """Queries ``name`` through each resolver in turn, ``rate`` times a second in all, on a thread of its own."""

    def __init__(self, resolvers: Iterable[tuple[str, int]], name: str, expected: set[str], rate: float = 40.0,
                 rdtype: str = "A") -> None:
        self.resolvers = list(resolvers)
        self.name, self.rdtype, self.expected = name, rdtype, expected
        self.interval = 1.0 / rate
        self.counts: Counter[str] = Counter()
        self.wrong: list[str] = []  # the first few unexpected answers, for the failure message
        self._stop = threading.Event()

    @property
    def queries(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        """Queries the design promises an answer to that got SERVFAIL, an empty answer or none."""
        return self.counts["servfail"] + self.counts["empty"] + self.counts["timeout"]

    def _ask(self, resolver: tuple[str, int]) -> str:
        try:
            response = dns.query.udp(dns.message.make_query(self.name, self.rdtype), resolver[0], port=resolver[1],
                                     timeout=1.0)
        except dns.exception.Timeout:
            return "timeout"
        if response.rcode() == dns.rcode.SERVFAIL:
            return "servfail"
        wanted = dns.rdatatype.from_text(self.rdtype)
        got = {rr.to_text() for rrset in response.answer if rrset.rdtype == wanted for rr in rrset}
        if not got:
            return "empty"
        if got != self.expected:
            if len(self.wrong) < 5:
                self.wrong.append(f"{sorted(got)} from {resolver}")
            return "other"
        return "expected"

    def _run(self) -> None:
        turn = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.counts[self._ask(self.resolvers[turn % len(self.resolvers)])] += 1
            turn += 1
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    @contextmanager
    def running(self) -> Iterator[AnswerCount]:
        with in_background(self._run, self._stop, "answer-count"):
            yield self
