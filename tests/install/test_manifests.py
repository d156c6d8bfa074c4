"""Every shipped manifest is accepted by a real kube-apiserver (server-side dry run through kubectl)."""

from __future__ import annotations

import subprocess

import pytest

from rig.binaries import REPO_ROOT, binary
from rig.workloads import apply_crds, ensure_namespace

EXAMPLE_NAMESPACES = ("shop", "gateways")  # manifests/examples/ put their objects there
MANIFESTS = sorted(p for p in (REPO_ROOT / "manifests").rglob("*.yaml") if "crds" not in p.parts)


@pytest.mark.apiserver
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_shipped_manifest_passes_server_side_validation(fleet, manifest):
    """Host manifests against the host with our CRDs; examples of member objects (``member-*.yaml``) against a
    member serving the Gateway API and OpenShift Routes, as the app team would apply them."""
    if manifest.name.startswith("member-"):
        fleet.install_gateway_api("east")
        fleet.install_openshift_routes("east")
        server = fleet.members["east"]
    else:
        apply_crds(fleet.host.api_client())
        server = fleet.host
    api = server.api_client()
    for namespace in ("fleetdns-system", *EXAMPLE_NAMESPACES):
        ensure_namespace(api, namespace)
    run = subprocess.run(
        [binary("kubectl"), f"--kubeconfig={server.kubeconfig}", "apply", "--dry-run=server", "-f", str(manifest)],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "(server dry run)" in run.stdout


def test_the_webhook_container_has_the_body_limit_its_memory_limit_was_measured_for():
    """The shipped memory limit covers the peak of the largest body the webhook accepts (bench/webhook_body.py):
    the manifest and the chart state both, and the limit is the webhook's default: they cannot drift apart unseen."""
    import yaml

    from webhook_provider.settings import DEFAULT_MAX_REQUEST_BYTES

    documents = yaml.safe_load_all((REPO_ROOT / "manifests" / "region" / "externaldns-webhook.yaml").read_text())
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    (webhook,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "webhook"]
    env = {item["name"]: item.get("value") for item in webhook["env"]}
    assert int(env["WEBHOOK_MAX_REQUEST_BYTES"]) == DEFAULT_MAX_REQUEST_BYTES
    assert webhook["resources"]["limits"]["memory"] == "2Gi"
    assert webhook["resources"]["requests"]["memory"] == "256Mi"
    chart = yaml.safe_load((REPO_ROOT / "charts" / "fleetdns" / "values.yaml").read_text())["region"]["publisher"]
    assert chart["webhook"]["maxRequestBytes"] == DEFAULT_MAX_REQUEST_BYTES
    assert chart["webhook"]["resources"] == webhook["resources"]
