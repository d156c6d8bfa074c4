"""The operator's kubeconfig: one context per cluster the command talks to, as kubectl reads it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kubernetes import config as k8s_config

from fleetdns.kubeapi import KubeClient


class UsageError(Exception):
    """Bad usage or configuration: the message says what to fix (exit code 2)."""


@dataclass(frozen=True)
class Cluster:
    """One context's cluster: a client as the operator's identity, and how a kubeconfig made for another identity
    reaches the same server (its URL, CA and TLS settings)."""

    context: str
    client: KubeClient
    server: str
    ca_pem: bytes | None
    insecure: bool

    def __str__(self) -> str:
        return f"context {self.context} ({self.server})"


def kubeconfig_path(flag: str) -> str | None:
    """``--kubeconfig``, else ``$KUBECONFIG`` (every file of the list, merged as kubectl merges them), else
    ``~/.kube/config``; None: there is none."""
    if flag:
        if not Path(flag).is_file():
            raise UsageError(f"--kubeconfig {flag}: no such file")
        return flag
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p and Path(p).is_file()]
    if listed:
        return os.pathsep.join(listed)  # the client's loader merges a list, the first file winning, as kubectl does
    default = Path.home() / ".kube" / "config"
    return str(default) if default.is_file() else None


def load(context: str, kubeconfig: str = "") -> Cluster:
    """The cluster of ``context`` in the kubeconfig ("": its current context); a missing file or context is a
    UsageError listing the contexts there are."""
    path = kubeconfig_path(kubeconfig)
    if path is None:
        raise UsageError("no kubeconfig: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config")
    try:
        contexts, current = k8s_config.list_kube_config_contexts(config_file=path)
    except Exception as error:  # noqa: BLE001 - the loader's own message names the broken part, never a secret
        raise UsageError(f"kubeconfig {path} does not load: {error}") from None
    names = [c["name"] for c in contexts or []]
    if not context:
        if not current:
            raise UsageError(f"{path} has no current context: pass --host-context (its contexts: "
                             f"{', '.join(names) or 'none'})")
        context = current["name"]
    if context not in names:
        raise UsageError(f"no context {context!r} in {path}; its contexts: {', '.join(names) or 'none'}")
    try:
        api = k8s_config.new_client_from_config(config_file=path, context=context)
    except Exception as error:  # noqa: BLE001
        raise UsageError(f"context {context} in {path} does not load: {error}") from None
    configuration = api.configuration
    ca_pem = Path(configuration.ssl_ca_cert).read_bytes() if configuration.ssl_ca_cert else None
    return Cluster(context, KubeClient(api), configuration.host, ca_pem, not configuration.verify_ssl)
