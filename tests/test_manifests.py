"""Every shipped manifest is accepted by a real kube-apiserver (server-side dry run through kubectl)."""

from __future__ import annotations

import subprocess

import pytest

from rig.binaries import REPO_ROOT, binary
from rig.workloads import apply_crds, ensure_namespace

MANIFESTS = sorted(p for p in (REPO_ROOT / "manifests").rglob("*.yaml") if "crds" not in p.parts)


@pytest.mark.apiserver
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_shipped_manifest_passes_server_side_validation(fleet, manifest):
    api = fleet.host.api_client()
    apply_crds(api)
    ensure_namespace(api, "fleetdns-system")
    run = subprocess.run(
        [binary("kubectl"), f"--kubeconfig={fleet.host.kubeconfig}", "apply", "--dry-run=server", "-f", str(manifest)],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "(server dry run)" in run.stdout
