"""Where the rig finds each real binary: an environment variable, else ``./bin`` from ``make tools``."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_VARS = {
    "etcd": "FLEETDNS_ETCD",
    "kube-apiserver": "FLEETDNS_KUBE_APISERVER",
    "kube-controller-manager": "FLEETDNS_KUBE_CONTROLLER_MANAGER",  # members with controllers (rig/controllers.py)
    "kube-scheduler": "FLEETDNS_KUBE_SCHEDULER",
    "kwok": "FLEETDNS_KWOK",
    "coredns": "FLEETDNS_COREDNS",
    "external-dns": "FLEETDNS_EXTERNAL_DNS",
    "kubectl": "FLEETDNS_KUBECTL",
    "helm": "FLEETDNS_HELM",  # the chart tests (tests/install/test_chart.py)
    "dnsperf": "FLEETDNS_DNSPERF",  # benchmarks only (make bench-serving)
}


class MissingBinaryError(RuntimeError):
    """A required binary is absent: the setup is broken, never a reason to skip."""


def binary(name: str) -> str:
    """Absolute path of a tool; raises with the command that fixes it."""
    env_var = ENV_VARS[name]
    override = os.environ.get(env_var)
    candidate = Path(override) if override else REPO_ROOT / "bin" / name
    if not os.access(candidate, os.X_OK):
        source = f"{env_var}={override}" if override else f"{candidate}"
        raise MissingBinaryError(f"{name} not found or not executable at {source}; run `make tools` (or set {env_var})")
    return str(candidate.resolve())
