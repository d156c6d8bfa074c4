"""Fault injection counted and reported: how many times each fault is injected (a few under `make test`, the full
count under `make soak`) and what each test saw, for ``docs/reliability.md`` (docs/design/faults.md).

A fault test asks ``times(reduced, full)`` how often to inject, fills a ``Tally`` as it goes and asserts on it; the
``tally`` fixture (tests/conftest.py) hands the filled tally to pytest, which carries it from the xdist worker to the
controller, where ``--reliability-report`` renders every tally of the run into one report.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SOAK_VARIABLE = "FLEETDNS_SOAK"
PROPERTY = "reliability"
FAULT, BAD_INPUT, SECURITY = "fault", "bad input", "security"


def full_run() -> bool:
    """Whether this run injects the full counts (``make soak`` sets FLEETDNS_SOAK=full)."""
    return os.environ.get(SOAK_VARIABLE, "") == "full"


def times(reduced: int, full: int) -> int:
    """How often to inject a fault in this run: ``reduced`` under `make test`, ``full`` under `make soak`."""
    return full if full_run() else reduced


@dataclass
class Tally:
    """What one fault test injected and saw. ``lost`` counts what must be 0 in every run (records lost, half-written
    names, duplicates, orphans, wrong deletes, canaries touched); ``failed_answers`` the SERVFAIL or empty answers
    where the design promises one; ``server_errors`` the 5xx answers to bad input."""

    title: str
    family: str = FAULT
    injected: int = 0
    lost: int = 0
    failed_answers: int = 0
    queries: int = 0
    server_errors: int = 0
    worst_seconds: float | None = None  # the slowest convergence after an injection
    notes: list[str] = field(default_factory=list)

    def injection(self, converged_after: float | None = None) -> None:
        """One more injection, and how long the system took to converge after it (None: not measured)."""
        self.injected += 1
        if converged_after is not None:
            self.worst_seconds = max(self.worst_seconds or 0.0, converged_after)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def as_property(self) -> dict[str, Any]:
        return asdict(self)


def tally_from(value: dict[str, Any]) -> Tally:
    known = {f.name for f in fields(Tally)}
    return Tally(**{key: item for key, item in value.items() if key in known})


@dataclass(frozen=True)
class Row:
    """One tally of the run, with the test it came from and whether that test passed."""

    test: str
    passed: bool
    tally: Tally


def _git_commit(root: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def render_report(rows: Iterable[Row], *, root: Path, started: datetime, wall_seconds: float, exit_status: int) -> str:
    """docs/reliability.md: the run it comes from, then one table per family."""
    ordered = sorted(rows, key=lambda row: (row.tally.family, row.test, row.tally.title))
    mode = "full counts (`make soak`)" if full_run() else "reduced counts (`make test`)"
    lines = [
        "# Reliability: faults injected into the real components, and bad input",
        "",
        "Written by `make soak` (`tests/support/soak.py`; the method is docs/design/faults.md). Every number below",
        "comes from the run described here; each row is one test, which fails when what must be 0 is not.",
        "",
        f"- run: {started.astimezone(UTC):%Y-%m-%d %H:%M} UTC, {mode}, commit `{_git_commit(root)}`, "
        f"pytest exit status {exit_status}, {wall_seconds / 60:.1f} min",
        f"- machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}",
        f"- tests: {sum(row.passed for row in ordered)} of {len(ordered)} passed",
        "",
    ]
    faults = [row for row in ordered if row.tally.family == FAULT]
    if faults:
        lines += ["## Faults", "",
                  "| fault | test | injected | lost | failed answers / queries | worst convergence | passed |",
                  "|---|---|---:|---:|---:|---:|---|"]
        lines += [f"| {row.tally.title} | `{row.test}` | {row.tally.injected} | {row.tally.lost} | "
                  f"{row.tally.failed_answers} / {row.tally.queries} | {_seconds(row.tally.worst_seconds)} | "
                  f"{'yes' if row.passed else '**no**'} |" for row in faults]
        lines.append("")
    bad = [row for row in ordered if row.tally.family == BAD_INPUT]
    if bad:
        lines += ["## Bad input", "", "| family | test | tried | server errors | lost | passed |",
                  "|---|---|---:|---:|---:|---|"]
        lines += [f"| {row.tally.title} | `{row.test}` | {row.tally.injected} | {row.tally.server_errors} | "
                  f"{row.tally.lost} | {'yes' if row.passed else '**no**'} |" for row in bad]
        lines.append("")
    proofs = [row for row in ordered if row.tally.family == SECURITY]
    if proofs:
        lines += ["## Security", "", "| proof | test | asked | exceptions | passed |", "|---|---|---:|---:|---|"]
        lines += [f"| {row.tally.title} | `{row.test}` | {row.tally.injected} | {row.tally.lost} | "
                  f"{'yes' if row.passed else '**no**'} |" for row in proofs]
        lines.append("")
    noted = [row for row in ordered if row.tally.notes]
    if noted:
        lines += ["## Notes from the run", ""]
        for row in noted:
            lines += [f"- {row.tally.title}: " + "; ".join(row.tally.notes)]
        lines.append("")
    return "\n".join(lines)


class ReliabilityReport:
    """A pytest plugin: collects every tally of the run from the test reports (on the xdist controller too, since
    ``user_properties`` travel with each report) and, given a path, writes the report when the session ends."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.rows: dict[tuple[str, str], Row] = {}
        self.failed: set[str] = set()
        self.started = datetime.now(UTC)
        self.clock = time.monotonic()

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            self.failed.add(report.nodeid)
        for name, value in report.user_properties:
            if name == PROPERTY:
                tally = tally_from(value)
                self.rows[(report.nodeid, tally.title)] = Row(report.nodeid, True, tally)

    def pytest_sessionfinish(self, session: Any, exitstatus: int) -> None:
        if self.path is None or hasattr(session.config, "workerinput"):  # an xdist worker: the controller writes
            return
        rows = [Row(row.test, row.test not in self.failed, row.tally) for row in self.rows.values()]
        text = render_report(rows, root=Path(str(session.config.rootpath)), started=self.started,
                             wall_seconds=time.monotonic() - self.clock, exit_status=int(exitstatus))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(text)
