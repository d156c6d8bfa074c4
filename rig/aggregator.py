"""The aggregator run as a real subprocess against the rig (tests, benchmark and demo; CRDs, workloads and
member registration are rig.workloads'), with the command, arguments and environment the chart's host role renders."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from fleetdns.kubeapi import KubeClient
from rig import KubeAPIServer, ManagedProcess
from rig.chartwiring import CHART, LocalPod, as_bool, merge, render, split_flags
from rig.ports import free_port

# A test's aggregator flags the chart has a value for (the rest go to host.aggregator.extraArgs).
_VALUES = {
    "--namespace": ("host", "aggregator", "watchNamespace"),
    "--member-grace-period": ("host", "aggregator", "memberGracePeriod"),
    "--prober-grace-period": ("host", "aggregator", "proberGracePeriod"),
    "--leader-election": ("host", "aggregator", "leaderElection", "enabled"),
    "--lease-duration": ("host", "aggregator", "leaderElection", "leaseDuration"),
    "--renew-deadline": ("host", "aggregator", "leaderElection", "renewDeadline"),
    "--retry-period": ("host", "aggregator", "leaderElection", "retryPeriod"),
    "--self-service-domain": ("host", "aggregator", "selfServiceDomain"),
    "--workers": ("host", "aggregator", "workers"),
    "--log-level": ("logLevel",),
    "--log-format": ("logFormat",),
}
_CONVERT = {"--leader-election": as_bool, "--workers": int}


def aggregator_values(health_port: int, args: Sequence[str] = (), chart_values: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
    """The host role's values for one aggregator on loopback: its health port, the test's flags as values."""
    given, extra = split_flags(list(args), _VALUES, _CONVERT)
    base = {"listenAddress": "127.0.0.1",
            "host": {"enabled": True, "crds": {"install": False},  # the rig applies manifests/crds (the same files)
                     "aggregator": {"replicas": 1, "healthPort": health_port, "extraArgs": extra}}}
    return merge(base, given, chart_values or {})


def client_for(server: KubeAPIServer) -> KubeClient:
    return KubeClient(server.api_client())


class AggregatorProcess:
    """The chart's aggregator container (Deployment fleetdns-aggregator) against the host of a rig, its probes on a
    free loopback port; ``args`` become the chart's values (or ``extraArgs``), ``name`` is the pod's name (its
    identity in the Lease) and ``kubeconfig`` its in-cluster credentials."""

    def __init__(self, kubeconfig: Path, args: list[str] | None = None, workdir: Path | None = None,
                 name: str = "aggregator", chart: Path = CHART) -> None:
        self.name = name
        self.port = free_port()
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="fleetdns-aggregator-"))
        rendered = render(aggregator_values(self.port, args or ()), chart)
        pod = LocalPod(rendered, "fleetdns-aggregator", name, self.workdir / f"{name}-pod", kubeconfig=kubeconfig)
        self.argv, self.env = pod.process("aggregator")
        self.process: ManagedProcess | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.proc is not None
        return self.process.proc.pid

    def start(self, timeout: float = 60.0) -> AggregatorProcess:
        self.process = ManagedProcess(self.name, self.argv, self.log_path, env=self.env, inherit_env=False)
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

    def leading(self) -> bool:
        """Whether this replica holds the Lease (its /readyz says ``leader``; a standby says ``standby``)."""
        return "leader" in self.readyz()[1]

    def kill(self) -> None:
        """SIGKILL: a crashed replica (its Lease is not released); ``start`` runs it again in place, under the same
        pod name (its identity in the Lease), as the kubelet restarts a crashed container."""
        if self.process is not None:
            self.process.kill()

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
