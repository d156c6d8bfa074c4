"""The real helm binary with settings of its own (never the user's): ``helm template`` of the chart for the rig's
wiring (rig/chartwiring.py) and ``helm install`` of a release on one of the rig's API servers."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rig.apiserver import KubeAPIServer
from rig.binaries import REPO_ROOT, binary

CHART = REPO_ROOT / "charts" / "fleetdns"
NAMESPACE = "fleetdns-system"  # the release namespace the rig installs into and renders for


def helm_env() -> dict[str, str]:
    """The environment helm runs with: its config, cache and data under the rig's own directory."""
    home = Path(tempfile.gettempdir()) / f"fleetdns-rig-helm-{os.getuid()}"
    return {**os.environ, "HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data")}


def helm(*args: str, values: Mapping[str, Any] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``helm args... [-f values]`` (not checked: the caller reads the exit code and stderr)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="fleetdns-values-") as file:
        file.write(json.dumps(dict(values or {})))
        file.flush()
        return subprocess.run([binary("helm"), *args, *(["-f", file.name] if values is not None else [])],
                              capture_output=True, text=True, env=helm_env(), timeout=timeout)


def install(server: KubeAPIServer, release: str, values: Mapping[str, Any], chart: Path = CHART,
            namespace: str = NAMESPACE) -> None:
    """``helm install`` of ``chart`` as ``release`` into ``namespace`` of ``server`` (created if missing), as an
    operator installs it; a refusal raises with helm's message."""
    run = helm("install", release, str(chart), f"--kubeconfig={server.kubeconfig}", "--namespace", namespace,
               "--create-namespace", values=values)
    if run.returncode != 0:
        raise RuntimeError(f"helm install {release} on {server.name} failed:\n{run.stderr}")
