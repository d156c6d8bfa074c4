"""Real ExternalDNS run with the flags a test gives, its metrics scraped from its own HTTP port."""

from __future__ import annotations

import tempfile
from pathlib import Path

import requests

from rig.binaries import binary
from rig.chartwiring import LocalPod
from rig.ports import free_port
from rig.process import ManagedProcess
from rig.scrape import scrape

START_TIMEOUT = 30.0


class ExternalDNS:
    """ExternalDNS watching the API server of ``kubeconfig``; extra ``args`` choose source, provider, registry."""

    def __init__(self, kubeconfig: Path, args: list[str], workdir: Path | None = None,
                 env: dict[str, str] | None = None, name: str = "external-dns") -> None:
        self.name = name
        self.metrics_port = free_port()
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="fleetdns-externaldns-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.argv = [
            binary("external-dns"),
            f"--kubeconfig={kubeconfig}",
            f"--metrics-address=127.0.0.1:{self.metrics_port}",
            *args,
        ]
        self.env = env
        self.inherit_env = True
        self.process: ManagedProcess | None = None

    @classmethod
    def of_pod(cls, pod: LocalPod, metrics_port: int, workdir: Path, name: str) -> ExternalDNS:
        """The chart's ``external-dns`` container of the publisher ``pod`` (its metrics port ``metrics_port``, from
        the values): its arguments, and its relay kubeconfig from the chart's ConfigMap."""
        server = cls.__new__(cls)
        server.name = name
        server.metrics_port = metrics_port
        server.workdir = Path(workdir)
        server.argv, server.env = pod.process("external-dns")
        server.inherit_env = False
        server.process = None
        return server

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, timeout: float = START_TIMEOUT) -> ExternalDNS:
        self.process = ManagedProcess(self.name, self.argv, self.log_path, env=self.env,
                                      inherit_env=self.inherit_env).start()
        self.process.wait_until(self._healthy, timeout, "serving /healthz")
        return self

    def _healthy(self) -> bool:
        return requests.get(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=1).status_code == 200

    def metrics(self) -> dict[str, float]:
        return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: a crashed ExternalDNS; ``start`` runs it again in place, with the same flags."""
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> ExternalDNS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
