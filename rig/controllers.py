"""A member cluster's own controllers, real, against one rig API server: kube-controller-manager and kube-scheduler
(built from the same k8s.io/kubernetes tag as kube-apiserver) and kwok playing the kubelet of fake nodes.

With them a Deployment's pods are scheduled and become ready (kwok gives each an IP from ``POD_CIDR``), and the
real EndpointSlice controller writes the slices of their Services, terminating endpoints included. Load-balancer
statuses stay hand-written (rig/workloads.py): there is no cloud controller.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rig.apiserver import KubeAPIServer
from rig.binaries import binary, installed, missing_file
from rig.ports import free_port
from rig.process import ManagedProcess, stop_together

START_TIMEOUT = 60.0
# What a member needs for Deployments behind Services: deployment and replicaset make the pods, endpointslice
# writes the slices FleetDNS reads, garbage-collector removes a deleted Deployment's ReplicaSets and pods (and a
# Service's slices), namespace empties a deleted namespace, node-lifecycle lifts the not-ready taint the API
# server puts on every new Node once kwok reports it Ready (and follows kwok's Lease heartbeats). Left out on
# purpose: taint-eviction (a node late with its heartbeat on a loaded machine must not lose its pods), the
# service-account ones (the rig's API servers run without the ServiceAccount admission plugin, and kwok runs no
# container that would mount a token), endpointslice-mirroring (nothing in the rig writes selector-less
# Endpoints), the cloud's, and the rest (each one more set of informers on 2 cores).
CONTROLLERS = ("deployment-controller", "replicaset-controller", "endpointslice-controller",
               "garbage-collector-controller", "namespace-controller", "node-lifecycle-controller")
# The API server of a member with controllers needs this: kwok watches with resourceVersion "0", which a 1.36 API
# server with WatchList on turns into a watch-list stream, refused without etcd's RequestWatchProgress (etcd
# >= 3.5.13; the rig's was 3.5.1 then, 3.5.21 since: WatchList could go back on, not yet tried); kwok then
# re-lists with a growing backoff and sees pods tens of seconds late.
APISERVER_ARGS = ("--feature-gates=WatchList=false",)
NODE_LEASE_SECONDS = 40  # kwok renews each node's Lease (kube-node-lease) as a kubelet does; kwokctl's value
POD_CIDR = "10.244.0.0/16"  # kwok's pod IPs; apart from the API servers' Service range (10.0.0.0/16)
NODE_IP = "127.0.0.1"  # the fake nodes' InternalIP, so the pods' hostIP: this machine, which they stand for
KWOK_NODE = ("kwok.x-k8s.io/node", "fake")  # the annotation of the nodes kwok manages (kwok's own convention)
STAGES_ENV = "FLEETDNS_KWOK_STAGES"
# kwok's pod-delete Stage waits this long (capped at the end of the pod's grace period) before removing a deleted
# pod; put on a pod template, the pods stay terminating for their whole grace period, as a slow-to-stop app's do.
POD_DELETE_DELAY = "pod-delete.stage.kwok.x-k8s.io/delay"


def kwok_stages_path() -> Path:
    """The kwok Stages ``make tools`` copied from sigs.k8s.io/kwok (hack/install_tools.py, KWOK_STAGES)."""
    return installed(STAGES_ENV, "kwok-stages.yaml", "kwok's Stages file", missing_file)


class MemberControllers:
    """kube-controller-manager, kube-scheduler and kwok for one API server started with ``APISERVER_ARGS``, with
    ``nodes`` fake Nodes kwok keeps ready. Every process runs with the server's admin kubeconfig and serves its
    health on a loopback port."""

    def __init__(self, server: KubeAPIServer, nodes: int = 1, workdir: Path | None = None) -> None:
        self.server = server
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"fleetdns-ctl-{server.name}-"))
        self.node_names = tuple(f"{server.name}-node-{index}" for index in range(nodes))
        self._ports = {"kube-controller-manager": free_port(), "kube-scheduler": free_port()}
        self.processes: list[ManagedProcess] = []

    def start(self, wait: bool = True) -> MemberControllers:
        stages = kwok_stages_path()  # before any process starts: a missing file fails alone
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._create_nodes()
        self.processes = [
            ManagedProcess(f"kube-controller-manager {self.server.name}", self._controller_manager_argv(),
                           self.workdir / "kube-controller-manager.log").start(),
            ManagedProcess(f"kube-scheduler {self.server.name}", self._scheduler_argv(),
                           self.workdir / "kube-scheduler.log").start(),
            ManagedProcess(f"kwok {self.server.name}", self._kwok_argv(stages), self.workdir / "kwok.log").start(),
        ]
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Both control-plane processes answer /healthz, kwok has made every node Ready and node-lifecycle has
        lifted their not-ready taints: a pod created now is scheduled."""
        manager, scheduler, kwok = self.processes
        manager.wait_until(lambda: self._healthy("kube-controller-manager"), timeout, "healthy (/healthz)")
        scheduler.wait_until(lambda: self._healthy("kube-scheduler"), timeout, "healthy (/healthz)")
        core = client.CoreV1Api(self.server.api_client())
        kwok.wait_until(lambda: all(_node_ready(core, name) for name in self.node_names), timeout,
                        f"making nodes {', '.join(self.node_names)} Ready")
        manager.wait_until(lambda: all(_schedulable(core, name) for name in self.node_names), timeout,
                           f"lifting the not-ready taint of {', '.join(self.node_names)}")

    def stop(self) -> None:
        stop_together(process.stop for process in self.processes)

    def __enter__(self) -> MemberControllers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _healthy(self, component: str) -> bool:
        # /healthz is on both components' always-allowed paths; their serving certificates are self-signed.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            response = requests.get(f"https://127.0.0.1:{self._ports[component]}/healthz", verify=False, timeout=2)
        return response.status_code == 200

    def _create_nodes(self) -> None:
        core = client.CoreV1Api(self.server.api_client())
        for name in self.node_names:
            node = client.V1Node(metadata=client.V1ObjectMeta(
                name=name, annotations={KWOK_NODE[0]: KWOK_NODE[1]},
                labels={"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"}))
            try:
                core.create_node(node)
            except ApiException as error:
                if error.status != 409:  # a restart: the node is already there
                    raise

    def _serving_flags(self, component: str) -> list[str]:
        return ["--bind-address=127.0.0.1", f"--secure-port={self._ports[component]}",
                f"--cert-dir={self.workdir / component}", f"--kubeconfig={self.server.kubeconfig}",
                f"--authentication-kubeconfig={self.server.kubeconfig}",
                f"--authorization-kubeconfig={self.server.kubeconfig}",
                "--authentication-skip-lookup=true",  # the API servers have no front-proxy CA to look up
                "--leader-elect=false", "--v=1"]

    def _controller_manager_argv(self) -> list[str]:
        return [binary("kube-controller-manager"), *self._serving_flags("kube-controller-manager"),
                f"--controllers={','.join(CONTROLLERS)}",
                "--use-service-account-credentials=false"]  # one admin identity: the rig's API servers check RBAC

    def _scheduler_argv(self) -> list[str]:
        return [binary("kube-scheduler"), *self._serving_flags("kube-scheduler")]

    def _kwok_argv(self, stages: Path) -> list[str]:
        return [binary("kwok"), f"--kubeconfig={self.server.kubeconfig}", f"--config={stages}",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE[0]}={KWOK_NODE[1]}",
                f"--cidr={POD_CIDR}", f"--node-ip={NODE_IP}", f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}"]


def _node_ready(core: client.CoreV1Api, name: str) -> bool:
    status = core.read_node_status(name).status
    conditions = (status.conditions if status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _schedulable(core: client.CoreV1Api, name: str) -> bool:
    spec = core.read_node(name).spec
    taints = (spec.taints if spec else None) or []
    return not any(taint.effect in ("NoSchedule", "NoExecute") for taint in taints)


def start_member_controllers(servers: Sequence[KubeAPIServer], workdir: Path) -> dict[str, MemberControllers]:
    """Controllers for each server, their start-ups overlapping; all stopped if one fails to start."""
    started = {server.name: MemberControllers(server, workdir=workdir / server.name / "controllers")
               for server in servers}
    try:
        for controllers in started.values():
            controllers.start(wait=False)
        for controllers in started.values():
            controllers.wait_ready()
    except BaseException:
        stop_together(controllers.stop for controllers in started.values())
        raise
    return started

