"""Health checks run the way the prober runs them: concurrently, on one CheckRunner."""

from __future__ import annotations

import time

from fleetdns.healthcheck import HealthCheck
from prober.checks import CheckRunner, Outcome, check_target


def run_checks(*jobs: tuple[HealthCheck, float], address: str) -> list[Outcome]:
    """Run checks concurrently on one CheckRunner until each is done (bounded by their own timeouts)."""
    runner = CheckRunner()
    outcomes: dict[int, Outcome] = {}
    for i, (check, timeout) in enumerate(jobs):
        runner.start(check_target(address, check), timeout, lambda outcome, i=i: outcomes.__setitem__(i, outcome))
    deadline = time.monotonic() + 30
    while len(outcomes) < len(jobs) and time.monotonic() < deadline:
        runner.poll(0.05)
    runner.close()
    return [outcomes[i] for i in range(len(jobs))]
