"""The whole data path, as `make demo` runs it: intent -> aggregator -> DNSEndpoint -> ExternalDNS ->
webhook -> etcd -> CoreDNS answer, in two regions, with failover and a member outage."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from rig.binaries import REPO_ROOT

pytestmark = [pytest.mark.apiserver, pytest.mark.externaldns, pytest.mark.coredns, pytest.mark.etcd]


def answered(output: str, label: str) -> tuple[list[str], int]:
    """The addresses every region answered after ``label`` and how many milliseconds that took."""
    match = re.search(rf"{re.escape(label)}: every region answers \[([^\]]*)\] after (\d+) ms", output)
    assert match, f"no line for {label!r} in demo output:\n{output[-4000:]}"
    return sorted(a.strip(" '") for a in match.group(1).split(",")), int(match.group(2))


@pytest.mark.timeout(420)
def test_demo_publishes_fails_over_and_recovers_in_every_region(tmp_path):
    run = subprocess.run([sys.executable, "-m", "hack.demo", "--workdir", str(tmp_path)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=400)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]

    both, east_only_left = ["127.0.10.1", "127.0.20.1"], ["127.0.20.1"]
    assert answered(output, "published")[0] == both
    addresses, failover_ms = answered(output, "east removed")
    assert addresses == east_only_left
    # ExternalDNS's event path alone would take 5 s; the whole chain must stay near one second.
    assert failover_ms < 3000, f"failover took {failover_ms} ms"
    assert answered(output, "east removed after the grace period")[0] == east_only_left
    assert output.count("east back: every region answers ['127.0.10.1', '127.0.20.1']") == 2
    assert "ClusterLeft" in output and "MemberUnreachable" in output
