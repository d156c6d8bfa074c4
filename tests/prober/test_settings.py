"""The prober's flags: what is wrong named, and the command refusing bad configuration with exit code 2."""

from __future__ import annotations

import pytest

from fleetdns.config import ConfigError
from prober.settings import parse_settings

pytestmark = pytest.mark.unit


def test_flags_name_what_is_wrong(monkeypatch: pytest.MonkeyPatch, tmp_path):
    with pytest.raises(ConfigError, match="--region.*required"):
        parse_settings([])
    with pytest.raises(ConfigError, match="--region='East_1'.*DNS label"):
        parse_settings(["--region=East_1"])
    with pytest.raises(ConfigError, match="--kubeconfig.*no such file"):
        parse_settings(["--region=east", f"--kubeconfig={tmp_path / 'missing'}"])
    with pytest.raises(ConfigError, match="--health-listen"):
        parse_settings(["--region=east", "--health-listen=nowhere"])
    monkeypatch.setenv("FLEETDNS_PROBER_REGION", "west")
    monkeypatch.setenv("FLEETDNS_PROBER_LEASE_NAMESPACE", "probers")
    settings = parse_settings([])
    assert (settings.region, settings.lease_namespace, settings.health_port) == ("west", "probers", 8082)


def test_the_command_refuses_bad_configuration_with_exit_code_2_and_one_line(tmp_path):
    import subprocess
    import sys

    from rig.binaries import REPO_ROOT

    run = subprocess.run([sys.executable, "-m", "prober", "--region=east", "--max-in-flight=0"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip() == "error: invalid --max-in-flight='0': must be from 1 to 100000"
