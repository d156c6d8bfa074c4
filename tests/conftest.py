"""Fixtures that start the real components; a skipped test fails the run (a missing binary is a broken setup)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rig import CoreDNS, EtcdServer, Fleet
from rig.binaries import binary
from tests.support.soak import FAULT, PROPERTY, ReliabilityReport, Tally


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reliability-report", metavar="PATH", default=None,
                     help="write every fault test's tally of this run to PATH (make soak: docs/reliability.md)")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(ReliabilityReport(config.getoption("reliability_report")), "fleetdns-reliability")


def pytest_sessionstart(session: pytest.Session) -> None:
    if session.config.getoption("collectonly") or session.config.getoption("markexpr") == "unit":
        return  # `make test-unit` needs no real component
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "coredns",
                 "external-dns", "kubectl", "helm", "dnsperf", "promtool", "prometheus", "unbound"):
        binary(name)  # raises MissingBinaryError naming `make tools`


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The whole-chain files first: each takes minutes, so started last one of them would run alone on one
    worker while the other sits idle (xdist --dist loadfile hands out files in this order)."""
    items.sort(key=lambda item: "/e2e/" not in item.path.as_posix())  # stable: the order within each part stays


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and exitstatus == 0:
        reporter.write_line(f"FAILED: {skipped} test(s) skipped; every test must run (see README)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    leftovers = _component_children()
    if leftovers:
        reporter.write_line(f"FAILED: processes left running after the suite: {leftovers}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _component_children() -> list[str]:
    """Real components and FleetDNS processes this pytest started and did not stop (there must be none)."""
    # comm is cut at 15 characters: kube-controller-manager is "kube-controller"
    names = {"etcd", "kube-apiserver", "coredns", "external-dns", "kube-controller", "kube-scheduler",
             "kwok", "prometheus", "unbound"}
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            comm = fields[0].split("(", 1)[1]
            state, ppid = fields[1].split()[:2]
        except (OSError, IndexError):
            continue
        if int(ppid) != os.getpid() or state == "Z":
            continue
        try:
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = b"-m" in argv and bool({b"aggregator", b"webhook_provider", b"serving.zonefiles",
                                       b"prober", b"rig.ingress", b"rig.delay"} & set(argv))
        if comm in names or ours:
            found.append(f"{comm}[{stat.parent.name}]")
    return found


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Callable[..., Tally]]:
    """``tally(title, family=FAULT)``: a Tally this test fills; each goes to the reliability report at teardown,
    whether the test passed or not (tests/support/soak.py)."""
    made: list[Tally] = []

    def make(title: str, family: str = FAULT) -> Tally:
        made.append(Tally(title, family))
        return made[-1]

    yield make
    for one in made:
        request.node.user_properties.append((PROPERTY, one.as_property()))


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """One real etcd shared by the session; tests use distinct key prefixes."""
    with EtcdServer(tmp_path_factory.mktemp("etcd"), max_txn_ops=1024) as server:
        yield server


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Real host, east and west kube-apiservers, each with its own etcd."""
    with Fleet(workdir=tmp_path_factory.mktemp("fleet")) as started:
        yield started


@pytest.fixture(scope="session")
def controlled_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Real host, east and west kube-apiservers, east also running its real controllers (kube-controller-manager,
    kube-scheduler, kwok's fake node: rig/controllers.py): Deployments there get ready pods and controller-written
    EndpointSlices; west's are written by hand. Apart from ``fleet``, whose members run no controllers."""
    with Fleet(workdir=tmp_path_factory.mktemp("controlled-fleet"), controllers=("east",)) as started:
        yield started


@pytest.fixture
def coredns_factory(tmp_path: Path) -> Iterator[callable]:
    """Start CoreDNS servers from Corefile text; all are stopped after the test."""
    started: list[CoreDNS] = []

    def start(corefile: str) -> CoreDNS:
        server = CoreDNS(corefile, tmp_path / f"coredns{len(started)}").start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
