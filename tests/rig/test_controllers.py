"""A member API server with its real controllers (kube-controller-manager, kube-scheduler, kwok's fake node): what
a user sees of a Deployment behind a Service is what a real cluster shows, EndpointSlices written by the real
EndpointSlice controller, terminating endpoints included."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

import pytest
from kubernetes import client

from rig import Fleet, KubeAPIServer
from rig.controllers import APISERVER_ARGS, POD_CIDR, POD_DELETE_DELAY
from rig.waiting import wait_for
from rig.workloads import (
    ENDPOINTSLICE_CONTROLLER,
    MANAGED_BY,
    deploy_app,
    endpoint_slices,
    endpoints,
    kubectl,
    ready_addresses,
)

pytestmark = pytest.mark.apiserver


@pytest.fixture(scope="module")
def member(controlled_fleet: Fleet) -> KubeAPIServer:
    """East of the session's controlled fleet: its API server runs with ``APISERVER_ARGS`` and its controllers."""
    server = controlled_fleet.members["east"]
    assert APISERVER_ARGS[0] in server.extra_args and "east" in controlled_fleet.controllers
    return server


def new_namespace(server: KubeAPIServer) -> str:
    name = f"ctl-{uuid.uuid4().hex[:6]}"
    kubectl(server, "create", "namespace", name)
    return name


def test_deployment_pods_become_ready_endpoints_in_a_controller_written_slice(member):
    namespace = new_namespace(member)
    deploy_app(member, namespace, "web", replicas=2)

    ready = wait_for(lambda: (found := ready_addresses(member, namespace, "web")) and len(found) == 2 and found,
                     timeout=60, what="2 ready endpoints of web")

    pieces = endpoint_slices(member, namespace, "web")
    assert {piece.metadata.labels.get(MANAGED_BY) for piece in pieces} == {ENDPOINTSLICE_CONTROLLER}
    assert all(piece.ports[0].port == 8080 for piece in pieces)  # the Service's targetPort
    pods = client.CoreV1Api(member.api_client()).list_namespaced_pod(namespace, label_selector="app=web").items
    assert ready == {pod.status.pod_ip for pod in pods}
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(POD_CIDR) for ip in ready)
    assert {endpoint.target_ref.name for endpoint in endpoints(member, namespace, "web")} == \
        {pod.metadata.name for pod in pods}
    assert "2/2" in kubectl(member, "get", "deployment", "web", "-n", namespace)


def test_scaled_to_zero_a_deployment_leaves_no_ready_endpoint(member):
    namespace = new_namespace(member)
    deploy_app(member, namespace, "web", replicas=2)
    wait_for(lambda: len(ready_addresses(member, namespace, "web")) == 2, timeout=60, what="2 ready endpoints")

    kubectl(member, "scale", "deployment/web", "--replicas=0", "-n", namespace)

    wait_for(lambda: not ready_addresses(member, namespace, "web"), timeout=30, what="no ready endpoint of web")
    assert "0/0" in kubectl(member, "get", "deployment", "web", "-n", namespace)


def test_a_pod_deleted_with_a_grace_period_is_a_terminating_endpoint_until_it_is_gone(member):
    namespace = new_namespace(member)
    # kwok removes these pods only when their grace period ends, as a slow-to-stop app's are.
    deploy_app(member, namespace, "web", replicas=1, pod_annotations={POD_DELETE_DELAY: "1h"})
    (first,) = wait_for(lambda: ready_addresses(member, namespace, "web"), timeout=60, what="a ready endpoint")
    pod = client.CoreV1Api(member.api_client()).list_namespaced_pod(namespace, label_selector="app=web").items[0]

    kubectl(member, "delete", "pod", pod.metadata.name, "-n", namespace, "--grace-period=8", "--wait=false")

    def terminating() -> Any:
        return next((e for e in endpoints(member, namespace, "web") if e.conditions.terminating), None)

    endpoint = wait_for(terminating, timeout=8, what="a terminating endpoint")
    assert endpoint.addresses == [first] and endpoint.target_ref.name == pod.metadata.name
    assert endpoint.conditions.ready is False and endpoint.conditions.serving is True
    wait_for(lambda: ready_addresses(member, namespace, "web") - {first}, timeout=30,
             what="the replacement pod's ready endpoint")
    wait_for(lambda: not any(first in e.addresses for e in endpoints(member, namespace, "web")), timeout=30,
             what="the terminated pod's endpoint gone")
