"""The aggregator run as a real subprocess against the rig (tests, benchmark and demo; CRDs, workloads and
member registration are rig.workloads')."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import requests

from fleetdns.kubeapi import KubeClient
from rig import KubeAPIServer, ManagedProcess
from rig.binaries import REPO_ROOT
from rig.ports import free_port


def client_for(server: KubeAPIServer) -> KubeClient:
    return KubeClient(server.api_client())


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
