"""dnsperf, the load the benchmarks and the load fault test put on a CoreDNS: its command line, one run to its end
or in the background, and its report read once into a typed summary (totals, response codes, per-query latencies)."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rig.binaries import binary

PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99, "p99.9": 0.999}


@dataclass(frozen=True)
class Load:
    """What dnsperf sends: ``queries`` (a file of ``name type`` lines, repeated in order) to ``host:port`` for
    ``seconds``; ``rate`` caps the queries a second (None: as fast as answers come back, ``outstanding`` in
    flight); ``source`` is the address it sends from; ``buffer_kb`` its socket buffers (None: the kernel's default,
    whose ~200 replies a stall of dnsperf longer than 200 / ``rate`` s overflows, and counts them lost); ``extra``
    more flags (``-E`` for an EDNS option)."""

    host: str
    port: int
    queries: Path
    seconds: int
    rate: int | None = None
    clients: int = 1
    threads: int = 1
    outstanding: int = 100
    source: str | None = None
    buffer_kb: int | None = None
    extra: tuple[str, ...] = ()

    def argv(self, verbose: bool = False) -> list[str]:
        argv = [binary("dnsperf"), "-s", self.host, "-p", str(self.port), "-d", str(self.queries),
                "-l", str(self.seconds), "-c", str(self.clients), "-T", str(self.threads), "-q", str(self.outstanding)]
        if self.source:
            argv += ["-a", self.source]
        if self.rate:
            argv += ["-Q", str(self.rate)]
        if self.buffer_kb:
            argv += ["-b", str(self.buffer_kb)]
        if verbose:
            argv.append("-v")
        return [*argv, *self.extra]


@dataclass(frozen=True)
class Report:
    """dnsperf's statistics; ``latencies_ms`` holds every answered query's latency when it ran with ``-v``."""

    qps: float
    seconds: float
    sent: int
    completed: int
    lost: int  # no reply within dnsperf's timeout (5 s)
    avg_ms: float
    min_ms: float
    max_ms: float
    stddev_ms: float
    rcodes: str  # as dnsperf prints them: "NOERROR 1998 (99.90%), SERVFAIL 2 (0.10%)"
    latencies_ms: tuple[float, ...] = field(default=(), repr=False)
    interrupted: int = 0  # still awaiting a reply when ``Dnsperf.interrupt`` ended the run: neither answered nor lost

    def rcode_counts(self) -> dict[str, int]:
        """Responses by code (``{"NOERROR": 1998, "SERVFAIL": 2}``)."""
        return {code: int(count) for code, count in re.findall(r"([A-Z]+) (\d+) \(", self.rcodes)}

    def percentiles_ms(self) -> dict[str, float]:
        """p50/p95/p99/p99.9 and max of the per-query latencies; needs a ``-v`` run."""
        if not self.latencies_ms:
            raise ValueError("no per-query latencies: run dnsperf with verbose=True")
        return percentiles_ms(self.latencies_ms)


def percentiles_ms(latencies: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/p99.9 (nearest rank) and max of per-query latencies (of one run or several pooled)."""
    ordered = sorted(latencies)
    ranks = {name: ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
             for name, fraction in PERCENTILES.items()}
    return {**ranks, "max": ordered[-1]}


def parse_report(text: str) -> Report:
    """The statistics dnsperf prints at its end, and the per-query lines of ``-v`` if there are any."""
    def number(pattern: str) -> float:
        match = re.search(pattern, text)
        if not match:
            raise RuntimeError(f"dnsperf output lacks {pattern!r}:\n{text[-1500:]}")
        return float(match.group(1))

    latency = re.search(r"Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)", text)
    if not latency:
        raise RuntimeError(f"dnsperf output lacks the latency line:\n{text[-1500:]}")
    rcodes = re.search(r"Response codes:\s+(.*)", text)
    interrupted = re.search(r"Queries interrupted:\s+(\d+)", text)
    return Report(
        qps=number(r"Queries per second:\s+([\d.]+)"),
        seconds=number(r"Run time \(s\):\s+([\d.]+)"),
        sent=int(number(r"Queries sent:\s+(\d+)")),
        completed=int(number(r"Queries completed:\s+(\d+)")),
        lost=int(number(r"Queries lost:\s+(\d+)")),
        avg_ms=float(latency.group(1)) * 1000, min_ms=float(latency.group(2)) * 1000,
        max_ms=float(latency.group(3)) * 1000,
        stddev_ms=number(r"Latency StdDev \(s\):\s+([\d.]+)") * 1000,
        rcodes=rcodes.group(1).strip() if rcodes else "?",
        latencies_ms=tuple(latencies_ms(text)),
        interrupted=int(interrupted.group(1)) if interrupted else 0,
    )


def latencies_ms(verbose: str) -> list[float]:
    """Per-query latencies from ``dnsperf -v`` lines (``> NOERROR name type 0.000123``); timeouts (``> T``)
    and interruptions (``> I``) excluded: they are the report's lost and interrupted queries."""
    return [float(line.rsplit(" ", 1)[1]) * 1000 for line in verbose.splitlines()
            if line.startswith("> ") and not line.startswith(("> T ", "> I "))]


def run(load: Load, verbose: bool = False) -> Report:
    """One dnsperf run to its end."""
    return Dnsperf(load, verbose).start().wait()


class Dnsperf:
    """One dnsperf in the background, its output in a file (``-v`` writes a line per query) or a pipe."""

    def __init__(self, load: Load, verbose: bool = False, output: Path | None = None) -> None:
        self.load, self.verbose = load, verbose
        self.output = output or (load.queries.with_name(f"{load.queries.name}.dnsperf-{load.port}.out")
                                 if verbose else None)
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> Dnsperf:
        argv = self.load.argv(self.verbose)
        if self.output is None:
            self._process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        else:
            with open(self.output, "w") as out:  # the child keeps its own copy open
                self._process = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, text=True)
        return self

    def wait(self) -> Report:
        """Wait for the end of the run (``seconds`` and at most a minute more) and read its report."""
        assert self._process is not None, "start() first"
        out, err = self._process.communicate(timeout=self.load.seconds + 60)
        if self._process.returncode != 0:
            raise RuntimeError(f"dnsperf failed ({self._process.returncode}): {err[-2000:]}")
        if self.output:
            out = self.output.read_text()
            self.output.unlink()
        return parse_report(out)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def interrupt(self) -> None:
        """End the run now, as Ctrl-C does: dnsperf stops sending and reports (queries still awaiting a reply are
        counted ``interrupted``); ``wait()`` reads the report."""
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGINT)

    def stop(self) -> None:
        """End a run early (a test that failed meanwhile)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.communicate()


def dnsperf_version() -> str:
    done = subprocess.run([binary("dnsperf"), "-h"], capture_output=True, text=True, timeout=10, check=False)
    match = re.search(r"Version ([\d.]+)", done.stdout + done.stderr)
    return match.group(1) if match else "?"


def query_lines(names: Sequence[str], rdtypes: Sequence[str] = ("A", "AAAA")) -> str:
    """A dnsperf query file asking each name for each type, in that order."""
    return "".join(f"{name} {rdtype}\n" for name in names for rdtype in rdtypes)


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped at the UDP sockets bound to ``port`` (/proc/net/udp's ``drops``): queries lost
    because the server's receive buffer was full, i.e. it was not scheduled in time, before it could see them."""
    suffix = f":{port:04X}"
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as lines:
            next(lines)
            drops += sum(int(fields[-1]) for fields in map(str.split, lines) if fields[1].endswith(suffix))
    return drops
