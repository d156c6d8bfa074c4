"""`make rig` as a user runs it: the federation comes up, the `fleetdns status` line it prints works as printed
(every member connected, every region voting and answering), and Ctrl-C leaves nothing running."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rig.binaries import REPO_ROOT
from rig.waiting import wait_for
from tests.support.processes import processes_under

pytestmark = [pytest.mark.apiserver, pytest.mark.externaldns, pytest.mark.coredns, pytest.mark.etcd]


@pytest.mark.timeout(300)
def test_make_rig_prints_a_fleetdns_status_command_that_shows_the_running_fleet_healthy(tmp_path: Path) -> None:
    log = tmp_path / "rig.out"
    with log.open("w") as out:
        rig = subprocess.Popen([sys.executable, "-m", "rig", "--workdir", str(tmp_path / "rig")], cwd=REPO_ROOT,
                               stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "FleetDNS rig is up" in log.read_text() or rig.poll() is not None, 180,
                 "make rig saying it is up", interval=0.5)
        printed = log.read_text()
        assert rig.poll() is None, printed
        (command,) = [line.strip() for line in printed.splitlines() if " status --host-context=host" in line]
        def voting(stdout: str) -> set[str]:
            rows = stdout.split("REGIONS")[1].split("APPS")[0].splitlines() if "REGIONS" in stdout else []
            return {line.split()[0] for line in rows if " yes " in line}

        # healthy with all three probers voting (north, a region without a member, shows once its Lease exists)
        done = wait_for(lambda: d if (d := subprocess.run(shlex.split(command), capture_output=True, text=True,
                                                            timeout=60)).returncode == 0
                        and voting(d.stdout) == {"east", "west", "north"} else None,
                        60, "the printed fleetdns status: a healthy fleet, every region voting", interval=1)
        assert "fleet healthy" in done.stdout
    finally:
        rig.send_signal(signal.SIGINT)
        rig.wait(60)
    assert rig.returncode == 0, log.read_text()[-3000:]
    assert processes_under(tmp_path) == [], "make rig leaves nothing running after Ctrl-C"
