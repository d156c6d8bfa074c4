"""The aggregator on the real-component rig: CRDs installed, members registered, the aggregator run
as a real subprocess. Shared by the tests, the benchmark and the demo (never used in production)."""

from __future__ import annotations

import base64
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from aggregator.kubeapi import KubeClient, KubeError
from aggregator.model import API_VERSION
from fleetdns.rig import KubeAPIServer, ManagedProcess
from fleetdns.rig.binaries import REPO_ROOT
from fleetdns.rig.ports import free_port

CRD_DIR = REPO_ROOT / "manifests" / "crds"
SECRET_NAMESPACE = "fleetdns-system"


def client_for(server: KubeAPIServer) -> KubeClient:
    return KubeClient(server.api_client())


def ensure(client: KubeClient, collection: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create, or leave as is when it exists (for objects shared by a test session)."""
    try:
        return client.create(collection, body)
    except KubeError as error:
        if error.status != 409:
            raise
        return {}


def ensure_namespace(client: KubeClient, name: str) -> None:
    ensure(client, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def install_crds(client: KubeClient, timeout: float = 30.0) -> None:
    """Every CRD in manifests/crds (ours and DNSEndpoint), waited for until Established."""
    import yaml

    names = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        names.append(crd["metadata"]["name"])
        ensure(client, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = client.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conditions = (crd.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not established")
            time.sleep(0.1)


def register_member(host: KubeClient, member: KubeAPIServer, region: str, zone: str,
                    name: str | None = None) -> None:
    """A kubeconfig Secret and a MemberCluster on the host, as an operator would create them."""
    name = name or member.name
    ensure_namespace(host, SECRET_NAMESPACE)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"member-{name}"},
              "data": {"kubeconfig": base64.b64encode(member.embedded_kubeconfig().encode()).decode()}}
    ensure(host, f"/api/v1/namespaces/{SECRET_NAMESPACE}/secrets", secret)
    ensure(host, f"/apis/{API_VERSION}/memberclusters", {
        "apiVersion": API_VERSION, "kind": "MemberCluster", "metadata": {"name": name},
        "spec": {"region": region, "zone": zone,
                 "kubeconfigSecretRef": {"namespace": SECRET_NAMESPACE, "name": f"member-{name}"}}})


class AggregatorProcess:
    """``python -m aggregator`` against the host of a rig, with its probes on a free loopback port."""

    def __init__(self, kubeconfig: Path, args: list[str] | None = None, workdir: Path | None = None,
                 name: str = "aggregator") -> None:
        self.name = name
        self.port = free_port()
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="fleetdns-aggregator-"))
        self.argv = [sys.executable, "-m", "aggregator", f"--kubeconfig={kubeconfig}",
                     f"--health-listen=127.0.0.1:{self.port}", f"--identity={name}", *(args or [])]
        self.process: ManagedProcess | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.proc is not None
        return self.process.proc.pid

    def start(self, timeout: float = 60.0) -> AggregatorProcess:
        self.process = ManagedProcess(self.name, self.argv, self.log_path, env={"PYTHONPATH": str(REPO_ROOT)})
        self.process.start()
        self.process.wait_until(lambda: self.readyz()[0] == 200, timeout, "ready (/readyz)")
        return self

    def readyz(self) -> tuple[int, str]:
        response = requests.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2)
        return response.status_code, response.text

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        """SIGTERM; returns the exit code."""
        if self.process is None or self.process.proc is None:
            return None
        self.process.stop(timeout=15)
        return self.process.proc.returncode

    def __enter__(self) -> AggregatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
