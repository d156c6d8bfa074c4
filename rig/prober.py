"""One region's prober as a real process, inside its region's network namespace, with the command, arguments and
environment of the chart's prober container (Deployment fleetdns-prober of the region role).

``ip netns exec`` starts it there (and execs: the pid is the prober's, so ``ManagedProcess`` signals and
reaps it as any other component). Its health port listens on the namespace's own loopback; the rig
reaches ``/readyz`` and ``/metrics`` through a reverse relay on the root namespace's loopback. Without a
namespace it runs on the root namespace's loopback like the other components.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from rig.chartwiring import CHART, LocalPod, merge, render, split_flags
from rig.netns import Endpoint, NetworkNamespace, Relay
from rig.ports import free_port
from rig.process import ManagedProcess

PROBER_SECRET = "fleetdns-host-prober"  # region.hostAccess.proberSecret's default
RIG_ZONE = "gslb.example.com"  # the region role needs a zone; the prober does not read it

# A test's prober flags the chart has a value for (the rest go to region.prober.extraArgs).
_VALUES = {
    "--lease-namespace": ("region", "hostAccess", "namespace"),
    "--max-in-flight": ("region", "prober", "maxInFlight"),
    "--log-level": ("logLevel",),
    "--log-format": ("logFormat",),
}


def prober_values(region: str, health_port: int, args: Sequence[str] = (), env: dict[str, str] | None = None
                  ) -> dict[str, Any]:
    """The region role's values for one prober on loopback: the region, its health port, the test's flags and
    variables as values (``extraArgs``, ``extraEnv`` for the rest)."""
    given, extra = split_flags(list(args), _VALUES, {"--max-in-flight": int})
    base = {"listenAddress": "127.0.0.1",
            "region": {"enabled": True, "name": region, "zone": RIG_ZONE,
                       "prober": {"replicas": 1, "healthPort": health_port, "extraArgs": extra,
                                  "extraEnv": [{"name": k, "value": v} for k, v in sorted((env or {}).items())]}}}
    return merge(base, given)


class ProberProcess:
    """The chart's prober container for region ``region`` in ``netns``: ``kubeconfig`` is its host Secret's
    (fleetdns-host-prober), ``name`` the pod's name (its identity in the Lease), ``args`` and ``env`` chart values
    (or ``extraArgs``, ``extraEnv``)."""

    def __init__(self, region: str, kubeconfig: Path, workdir: Path, *, netns: NetworkNamespace | None = None,
                 args: list[str] | None = None, name: str | None = None, env: dict[str, str] | None = None,
                 chart: Path = CHART) -> None:
        self.region = region
        self.name = name or f"prober-{region}"
        self.netns = netns
        self.workdir = workdir
        self.health_port = free_port()  # free in the root namespace; a fresh namespace has every port free
        rendered = render(prober_values(region, self.health_port, args or (), env), chart)
        pod = LocalPod(rendered, "fleetdns-prober", self.name, workdir / f"{self.name}-pod",
                       secrets={PROBER_SECRET: {"kubeconfig": Path(kubeconfig)}})
        argv, environment = pod.process("prober")
        if netns is not None:
            argv = netns.exec_argv(argv)
        self.process = ManagedProcess(self.name, argv, workdir / f"{self.name}.log", env=environment,
                                      inherit_env=False)
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
        """SIGKILL: a crashed prober (its Lease is not released); ``start`` runs it again in place."""
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
