"""Real etcd: one member, or a three-member cluster as the chart installs it, on loopback; members can be killed
(SIGKILL) and restarted on their data, and the leader found, for the fault tests."""

from __future__ import annotations

import base64
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests

from rig.binaries import binary
from rig.ports import free_port
from rig.process import ManagedProcess
from rig.waiting import wait_for

START_TIMEOUT = 30.0
# What charts/fleetdns/templates/region/etcd.yaml gives every member beyond names, URLs and TLS (region.etcd's
# defaults: 3 replicas, maxTxnOps 128); elections keep etcd's defaults there, and so here.
CHART_REPLICAS = 3
CHART_MAX_TXN_OPS = 128
CHART_FLAGS = ("--auto-compaction-mode=periodic", "--auto-compaction-retention=1h")


@dataclass(frozen=True)
class MemberStatus:
    """What one member says of itself (etcd's Status call): its raft identity, the leader it follows, its revision."""

    member_id: int
    leader_id: int
    revision: int
    raft_term: int

    @property
    def is_leader(self) -> bool:
        return self.member_id == self.leader_id


class _Member:
    def __init__(self, name: str, workdir: Path, host: str) -> None:
        self.name = name
        self.host = host
        self.client_port = free_port(host)
        self.peer_port = free_port(host)
        self.data_dir = workdir / f"{name}.data"
        self.log_path = workdir / f"{name}.log"
        self.process: ManagedProcess | None = None

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def argv(self, initial_cluster: str, max_txn_ops: int, extra: tuple[str, ...] = ()) -> list[str]:
        return [
            binary("etcd"),
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={initial_cluster}",
            "--initial-cluster-state=new",
            "--initial-cluster-token=fleetdns-rig",
            f"--max-txn-ops={max_txn_ops}",
            "--unsafe-no-fsync",  # test data only: keeps a 2-core machine responsive
            "--log-level=warn",
            *extra,
        ]

    def healthy(self) -> bool:
        response = requests.get(f"{self.client_url}/health", timeout=1)
        return response.status_code == 200 and response.json().get("health") == "true"

    def status(self, timeout: float = 1.0) -> MemberStatus:
        """etcd's Status call through its JSON gateway (``etcdctl endpoint status``); raises while it is down."""
        response = requests.post(f"{self.client_url}/v3/maintenance/status", json={}, timeout=timeout)
        response.raise_for_status()
        body = response.json()
        header = body["header"]
        return MemberStatus(int(header["member_id"]), int(body.get("leader", 0)), int(header["revision"]),
                            int(body.get("raftTerm", 0)))


class EtcdCluster:
    """One or more etcd members forming a cluster; ``endpoints`` are the client URLs."""

    def __init__(self, size: int = 1, workdir: Path | None = None, host: str = "127.0.0.1",
                 max_txn_ops: int = 128, extra_args: tuple[str, ...] = ()) -> None:
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="fleetdns-etcd-"))
        self.members = [_Member(f"etcd{i}", self.workdir, host) for i in range(size)]
        self.max_txn_ops = max_txn_ops
        self.extra_args = tuple(extra_args)

    @classmethod
    def as_chart_installs(cls, workdir: Path | None = None, host: str = "127.0.0.1") -> EtcdCluster:
        """The region's etcd with the chart's defaults (three members, its transaction limit and compaction), all
        started together as its StatefulSet's Parallel policy does; plain HTTP and no fsync, as every rig etcd."""
        return cls(CHART_REPLICAS, workdir, host, CHART_MAX_TXN_OPS, CHART_FLAGS)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def url(self) -> str:
        return self.endpoints[0]

    def start(self, timeout: float = START_TIMEOUT) -> EtcdCluster:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for member in self.members:
            member.process = ManagedProcess(f"etcd {member.name}",
                                            member.argv(initial, self.max_txn_ops, self.extra_args),
                                            member.log_path).start()
        for member in self.members:
            assert member.process is not None
            member.process.wait_until(member.healthy, timeout, "healthy")
        return self

    def stop_member(self, index: int) -> None:
        process = self.members[index].process
        if process is not None:
            process.stop()

    def start_member(self, index: int, timeout: float = START_TIMEOUT) -> None:
        """Restart a stopped member with its data dir (rejoins the existing cluster)."""
        member = self.members[index]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        argv = [a for a in member.argv(initial, self.max_txn_ops, self.extra_args)
                if not a.startswith("--initial-cluster-state")]
        member.process = ManagedProcess(f"etcd {member.name}", [*argv, "--initial-cluster-state=existing"],
                                        member.log_path).start()
        member.process.wait_until(member.healthy, timeout, "healthy")

    def kill_member(self, index: int) -> None:
        """SIGKILL one member, as a crash or an OOM kill would: no shutdown, its data dir as the kill left it."""
        process = self.members[index].process
        if process is not None:
            process.kill()

    def running(self, index: int) -> bool:
        process = self.members[index].process
        return process is not None and process.running

    def statuses(self) -> dict[int, MemberStatus]:
        """Each running member's own status, by index; members that do not answer are left out."""
        found = {}
        for index, member in enumerate(self.members):
            if not self.running(index):
                continue
            try:
                found[index] = member.status()
            except (requests.RequestException, KeyError, ValueError):
                continue
        return found

    def leader(self) -> int | None:
        """The index of the member the running members agree leads (None while they do not agree, or have none)."""
        statuses = self.statuses()
        leaders = {status.leader_id for status in statuses.values()}
        if len(leaders) != 1 or 0 in leaders:
            return None
        (leader_id,) = leaders
        return next((index for index, status in statuses.items() if status.member_id == leader_id), None)

    def wait_for_leader(self, timeout: float = START_TIMEOUT) -> int:
        """The leader's index once the running members agree on one (an election takes about a second)."""
        found = wait_for(lambda: (leader := self.leader()) is not None and [leader], timeout,
                         "the etcd members agreeing on a leader")
        return int(found[0])

    def stop(self) -> None:
        for member in self.members:
            if member.process is not None:
                member.process.stop()

    def restart_empty(self, timeout: float = START_TIMEOUT) -> None:
        """Stop every member, delete its data and start a new, empty cluster on the same ports: what a
        restore from an older backup or a wiped etcd looks like to clients (the revision starts again)."""
        self.stop()
        for member in self.members:
            shutil.rmtree(member.data_dir, ignore_errors=True)
        self.start(timeout)

    def advance_revision(self, count: int, key: str = "/rig/revision") -> int:
        """Write ``key`` ``count`` times (etcd's JSON gateway) so the revision moves on as a longer-lived
        cluster's would; returns the new revision."""
        encoded = base64.b64encode(key.encode()).decode()
        revision = 0
        with requests.Session() as session:
            for index in range(count):
                response = session.post(f"{self.url}/v3/kv/put", timeout=5, json={
                    "key": encoded, "value": base64.b64encode(str(index).encode()).decode()})
                response.raise_for_status()
                revision = int(response.json()["header"]["revision"])
        return revision

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EtcdServer(EtcdCluster):
    """A single-member etcd."""

    def __init__(self, workdir: Path | None = None, host: str = "127.0.0.1", max_txn_ops: int = 128) -> None:
        super().__init__(1, workdir, host, max_txn_ops)
