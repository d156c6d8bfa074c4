"""docs/operator-guide.md, run as the engineer on call would: every ``sh`` block in order against a live federation
(host, members east and west, a DNS stack per region, probers in three regions), with an app published and checked.
Between the sections the test checks what each one promises."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig.aggregator import client_for
from rig.binaries import REPO_ROOT
from rig.federation import Federation
from rig.waiting import wait_for
from tests.support.federation import (
    checked_app,
    federation_namespace,
    running_federation,
)
from tests.support.guides import BLOCK, Section, Shell, guide_sections

pytestmark = [pytest.mark.apiserver, pytest.mark.externaldns, pytest.mark.coredns, pytest.mark.etcd]
GUIDE = REPO_ROOT / "docs" / "operator-guide.md"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    yield from running_federation(tmp_path_factory, "operator-guide")


def test_the_operator_guide_runs_as_written_against_a_live_federation(fed: Federation, tmp_path: Path) -> None:
    host = client_for(fed.fleet.host)
    app, vips = checked_app(fed, host, federation_namespace(fed, host, "guide"), "web",
                            loadBalancing={"policy": "Failover", "failoverOrder": ["east", "west"]})
    fed.wait_for_answers(app, {vips["east"][0]}, 60)
    dns = {}
    for name, region in fed.regions.items():
        assert region.coredns is not None
        dns[f"{name.upper()}_DNS"] = f"{region.coredns.host}:{region.coredns.port}"
    workdir = tmp_path / "oncall"
    workdir.mkdir()
    shell = Shell(workdir, [fed.fleet.operator_kubeconfig(tmp_path / "operator.kubeconfig")], {"APP": app, **dns})
    sections = {s.title.split(". ", 1)[-1]: s for s in guide_sections(GUIDE.read_text())}
    assert list(sections) == ["The fleet at a glance", '"Why did this client get that address?"',
                              "Metrics and alerts"], "a section with commands was added or renamed: give it its checks"

    # the probers take their Leases a retry period after they start: the guide's status is run on a settled fleet
    wait_for(lambda: shell.kubectl("--context", "host", "get", "leases", "-n", "fleetdns-system", "-o", "name")
             .stdout.count("fleetdns-prober-") == 3, 30, "the three probers' Leases")
    printed = wait_for(lambda: _ran(shell, sections["The fleet at a glance"]), 30, "the guide's status, healthy",
                       interval=1)
    assert "fleet healthy" in printed and "Connected" in printed
    assert json.loads((workdir / "fleet.json").read_text())["healthy"] is True

    printed = shell.run(sections['"Why did this client get that address?"'])
    assert f"NAME    {app}" in printed and "POLICY  Failover" in printed and "DIFFERS" not in printed
    assert "198.51.100.7 matches no DNSView" in printed

    printed = shell.run(sections["Metrics and alerts"])
    assert "SUCCESS" in printed
    every_block = [block for section in guide_sections(GUIDE.read_text()) for block in section.commands]
    assert shell.ran == every_block and len(BLOCK.findall(GUIDE.read_text())) == len(every_block)


def _ran(shell: Shell, section: Section) -> str | None:
    """The section's output, or None (and not counted as run) while a block fails: status exits 4 until every
    region votes."""
    before = len(shell.ran)
    try:
        return shell.run(section)
    except AssertionError:
        del shell.ran[before:]
        return None
