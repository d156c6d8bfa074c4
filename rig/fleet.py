"""A host cluster and member clusters ("east", "west"), each a real kube-apiserver with its own etcd."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from rig.apiserver import KubeAPIServer, wait_all_ready
from rig.process import stop_together

if TYPE_CHECKING:
    from rig.controllers import MemberControllers

DEFAULT_MEMBERS = ("east", "west")


class Fleet:
    """Start-ups overlap, so three API servers are ready in about the time of one. ``gateway_api``: the members that
    serve the Gateway API (its real CRDs installed at start; the others lack them, as many real clusters do).
    ``controllers``: the members that also run their real controllers and kwok's fake nodes (rig/controllers.py),
    so Deployments get ready pods and EndpointSlices are the EndpointSlice controller's; the others have none.
    ``audit``: every server logs the requests ServiceAccounts make (``KubeAPIServer.audited_requests``)."""

    def __init__(self, members: tuple[str, ...] = DEFAULT_MEMBERS, workdir: Path | None = None,
                 gateway_api: Sequence[str] = (), controllers: Sequence[str] = (), audit: bool = False) -> None:
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="fleetdns-fleet-"))
        self.host = KubeAPIServer("host", self.workdir / "host", audit=audit)
        unknown = set(controllers) - set(members)
        if unknown:
            raise ValueError(f"controllers names members the fleet does not have: {', '.join(sorted(unknown))}")
        self.controlled = tuple(controllers)
        self.controllers: dict[str, MemberControllers] = {}  # filled at start
        server_args: tuple[str, ...] = ()
        if self.controlled:
            from rig.controllers import APISERVER_ARGS as server_args
        self.members = {name: KubeAPIServer(name, self.workdir / name, audit=audit,
                                            extra_args=server_args if name in self.controlled else ())
                        for name in members}
        unknown = set(gateway_api) - set(members)
        if unknown:
            raise ValueError(f"gateway_api names members the fleet does not have: {', '.join(sorted(unknown))}")
        self.gateway_api = tuple(gateway_api)

    @property
    def servers(self) -> list[KubeAPIServer]:
        return [self.host, *self.members.values()]

    def start(self) -> Fleet:
        try:
            for server in self.servers:
                server.start(wait=False)
            wait_all_ready(self.servers)
            self.install_gateway_api(*self.gateway_api)
            if self.controlled:
                from rig.controllers import start_member_controllers

                self.controllers = start_member_controllers([self.members[name] for name in self.controlled],
                                                            self.workdir)
        except BaseException:
            self.stop()
            raise
        return self

    def install_gateway_api(self, *members: str) -> None:
        """The real Gateway API CRDs on these members (idempotent): they serve Gateways and the route kinds."""
        from rig.gatewayapi import install_gateway_api

        with ThreadPoolExecutor(max(1, len(members))) as pool:  # each API server compiles the CRDs' rules: seconds
            list(pool.map(lambda name: install_gateway_api(self.members[name].api_client()), members))

    def install_openshift_routes(self, *members: str) -> None:
        """The real OpenShift Route CRD on these members (idempotent): they serve Routes (rig/openshift.py)."""
        from rig.openshift import install_route_crd

        with ThreadPoolExecutor(max(1, len(members))) as pool:
            list(pool.map(lambda name: install_route_crd(self.members[name].api_client()), members))

    def operator_kubeconfig(self, path: Path) -> Path:
        """One kubeconfig with a context per cluster, named as the servers are (``host``, ``east``, ...), each with
        the admin identity and the CA inline: what an operator's ~/.kube/config holds (the ``fleetdns`` command's
        ``--kubeconfig``)."""
        merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": [],
                                  "current-context": self.host.name}
        for server in self.servers:
            config = yaml.safe_load(server.embedded_kubeconfig())
            for key in ("clusters", "users", "contexts"):
                merged[key].extend(config[key])
        path.write_text(yaml.safe_dump(merged))
        return path

    def stop(self) -> None:
        stop_together(controllers.stop for controllers in self.controllers.values())  # before their API servers
        stop_together(server.stop for server in self.servers)

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
