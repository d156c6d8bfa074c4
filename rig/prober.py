"""One region's prober (``python -m prober``) as a real process, inside its region's network namespace.

``ip netns exec`` starts it there (and execs: the pid is the prober's, so ``ManagedProcess`` signals and
reaps it as any other component). Its health port listens on the namespace's own loopback; the rig
reaches ``/readyz`` and ``/metrics`` through a reverse relay on the root namespace's loopback. Without a
namespace it runs on the root namespace's loopback like the other components.
"""

from __future__ import annotations

import sys
from pathlib import Path

import requests

from rig.binaries import REPO_ROOT
from rig.netns import Endpoint, NetworkNamespace, Relay
from rig.ports import free_port
from rig.process import ManagedProcess


class ProberProcess:
    """``python -m prober --region=R --kubeconfig=K --health-listen=127.0.0.1:P [args]`` in ``netns``."""

    def __init__(self, region: str, kubeconfig: Path, workdir: Path, *, netns: NetworkNamespace | None = None,
                 args: list[str] | None = None, name: str | None = None, env: dict[str, str] | None = None) -> None:
        self.region = region
        self.name = name or f"prober-{region}"
        self.netns = netns
        self.workdir = workdir
        self.health_port = free_port()  # free in the root namespace; a fresh namespace has every port free
        argv = [sys.executable, "-m", "prober", f"--region={region}", f"--kubeconfig={kubeconfig}",
                f"--health-listen=127.0.0.1:{self.health_port}", f"--identity={self.name}", *(args or [])]
        if netns is not None:
            argv = netns.exec_argv(argv)
        self.process = ManagedProcess(self.name, argv, workdir / f"{self.name}.log",
                                      env={"PYTHONPATH": str(REPO_ROOT), **(env or {})})
        self._relay: Relay | None = None
        self.url = f"http://127.0.0.1:{self.health_port}"  # where the rig reaches /readyz and /metrics

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    def start(self, timeout: float = 60.0, wait_ready: bool = True) -> ProberProcess:
        """Start; with ``wait_ready``, wait until /readyz answers 200 (after its first full round)."""
        if self.netns is not None and self._relay is None:
            port = free_port()
            self._relay = Relay(Endpoint(None, "127.0.0.1", port),
                                Endpoint(self.netns.name, "127.0.0.1", self.health_port), name=self.name).start()
            self.url = f"http://127.0.0.1:{port}"
        self.process.start()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.process.wait_until(lambda: self.readyz()[0] == 200, timeout, "ready (/readyz)")

    def readyz(self) -> tuple[int, str]:
        response = requests.get(f"{self.url}/readyz", timeout=2)
        return response.status_code, response.text

    def healthz(self) -> int:
        return requests.get(f"{self.url}/healthz", timeout=2).status_code

    def metrics(self) -> str:
        return requests.get(f"{self.url}/metrics", timeout=5).text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: a crashed prober (its Lease is not released)."""
        self.process.kill()

    def stop(self) -> int | None:
        """SIGTERM (the prober releases its Lease); returns the exit code."""
        self.process.stop(timeout=15)
        if self._relay is not None:
            self._relay.stop()
            self._relay = None
        return self.process.proc.returncode if self.process.proc is not None else None

    def __enter__(self) -> ProberProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
