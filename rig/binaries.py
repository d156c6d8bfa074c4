"""Where the rig finds each real binary: an environment variable, else ``./bin`` from ``make tools``."""

from __future__ import annotations

import os
from collections.abc import Callable
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
    "dnsperf": "FLEETDNS_DNSPERF",  # the benchmarks and the load fault test (rig/dnsperf.py)
    "unbound": "FLEETDNS_UNBOUND",  # the recursive resolver the rig's clients ask (rig/unbound.py)
    "prometheus": "FLEETDNS_PROMETHEUS",  # scrapes the rig and fires the chart's alerts (rig/prometheus.py)
    "promtool": "FLEETDNS_PROMTOOL",  # checks the chart's alerting rules (tests/install/test_observability.py)
}


class MissingBinaryError(RuntimeError):
    """A required binary is absent: the setup is broken, never a reason to skip."""


def installed(env_var: str, name: str, what: str, problem: Callable[[Path], str], hint: str = "") -> Path:
    """What ``make tools`` put at ``./bin/<name>``, or what ``env_var`` names instead; ``problem`` says what is wrong
    with it ("" if nothing), and the error names the path and both fixes."""
    override = os.environ.get(env_var)
    path = Path(override) if override else REPO_ROOT / "bin" / name
    trouble = problem(path)
    if trouble:
        source = f"{env_var}={override}" if override else str(path)
        raise MissingBinaryError(f"{what} {trouble} at {source}; run `make tools` (or set {env_var}{hint})")
    return path


def missing_file(path: Path) -> str:
    return "" if path.is_file() else "is missing"


def binary(name: str) -> str:
    """Absolute path of a tool; raises with the command that fixes it."""
    path = installed(ENV_VARS[name], name, name,
                     lambda p: "" if os.access(p, os.X_OK) else "not found or not executable")
    return str(path.resolve())
