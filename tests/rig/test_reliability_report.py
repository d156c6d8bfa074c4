"""The reliability report (`make soak` -> docs/reliability.md): each fault test's tally reaches the report from
xdist workers, a failed test is marked as such, and the run it comes from heads it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.soak import BAD_INPUT, SECURITY, SOAK_VARIABLE, times

ROOT = Path(__file__).resolve().parents[2]

CONFTEST = '''
import pytest
from tests.support.soak import PROPERTY, ReliabilityReport, Tally

def pytest_addoption(parser):
    parser.addoption("--reliability-report", default=None)

def pytest_configure(config):
    config.pluginmanager.register(ReliabilityReport(config.getoption("reliability_report")), "fleetdns-reliability")

@pytest.fixture
def tally(request):
    made = []
    def make(title, family="fault"):
        made.append(Tally(title, family))
        return made[-1]
    yield make
    for one in made:
        request.node.user_properties.append((PROPERTY, one.as_property()))
'''

TESTS = '''
from tests.support.soak import times

def test_etcd_killed(tally):
    t = tally("etcd SIGKILLed during an apply")
    for seconds in (1.25, 3.5):
        t.injection(seconds)

def test_canary_touched(tally):
    t = tally("webhook SIGKILLed during churn")
    t.injection(0.5)
    t.lost += 1
    assert t.lost == 0

def test_fuzzed(tally):
    t = tally("generated webhook requests", family="bad input")
    t.injected = times(3, 10_000)

def test_access_reviewed(tally):
    t = tally("RBAC: each identity's table", family="security")
    t.injected = 540
'''


@pytest.mark.unit
def test_tallies_from_xdist_workers_reach_the_report_and_a_failure_shows(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_faults.py").write_text(TESTS)
    report = tmp_path / "reliability.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT), SOAK_VARIABLE: "full"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "-c",
                          os.devnull, "--rootdir", str(tmp_path), f"--reliability-report={report}", str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr  # the canary test fails
    text = report.read_text()
    assert "full counts (`make soak`)" in text and "tests: 3 of 4 passed" in text
    assert "| etcd SIGKILLed during an apply | `test_faults.py::test_etcd_killed` | 2 | 0 | 0 / 0 | 3.5 s | yes |" \
        in text
    assert "| webhook SIGKILLed during churn | `test_faults.py::test_canary_touched` | 1 | 1 |" in text
    assert "**no**" in text.split("webhook SIGKILLed during churn")[1].splitlines()[0]
    assert "| generated webhook requests | `test_faults.py::test_fuzzed` | 10000 | 0 | 0 | yes |" in text
    assert "## Security" in text
    assert "| RBAC: each identity's table | `test_faults.py::test_access_reviewed` | 540 | 0 | yes |" in text


@pytest.mark.unit
def test_make_test_runs_the_reduced_count_and_make_soak_the_full_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SOAK_VARIABLE, raising=False)
    assert times(2, 20) == 2
    monkeypatch.setenv(SOAK_VARIABLE, "full")
    assert times(2, 20) == 20
    assert (BAD_INPUT, SECURITY) == ("bad input", "security")
