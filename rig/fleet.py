"""A host cluster and member clusters ("east", "west"), each a real kube-apiserver with its own etcd."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rig.apiserver import KubeAPIServer, wait_all_ready

DEFAULT_MEMBERS = ("east", "west")


class Fleet:
    """Start-ups overlap, so three API servers are ready in about the time of one."""

    def __init__(self, members: tuple[str, ...] = DEFAULT_MEMBERS, workdir: Path | None = None) -> None:
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="fleetdns-fleet-"))
        self.host = KubeAPIServer("host", self.workdir / "host")
        self.members = {name: KubeAPIServer(name, self.workdir / name) for name in members}

    @property
    def servers(self) -> list[KubeAPIServer]:
        return [self.host, *self.members.values()]

    def start(self) -> Fleet:
        try:
            for server in self.servers:
                server.start(wait=False)
            wait_all_ready(self.servers)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
