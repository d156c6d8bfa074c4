"""Apps on members that run their real controllers (rig/controllers.py), handled as a user handles them: manifests
applied, scaled and deleted with the rig's kubectl; and what the EndpointSlice controller then wrote."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml
from kubernetes import client

from rig import KubeAPIServer
from rig.binaries import binary

MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
ENDPOINTSLICE_CONTROLLER = "endpointslice-controller.k8s.io"  # the real controller's value of MANAGED_BY


def kubectl(server: KubeAPIServer, *args: str, stdin: str | None = None) -> str:
    """The rig's kubectl against ``server``; fails the test with kubectl's own message."""
    done = subprocess.run([binary("kubectl"), f"--kubeconfig={server.kubeconfig}", *args], input=stdin,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def deploy_app(server: KubeAPIServer, namespace: str, name: str, replicas: int, service_type: str = "ClusterIP",
               pod_annotations: dict[str, str] | None = None) -> None:
    """A Deployment and a Service selecting its pods (port 80 to the pods' 8080), applied with kubectl."""
    labels = {"app": name}
    kubectl(server, "apply", "-f", "-", stdin=yaml.safe_dump_all([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels, "annotations": pod_annotations or {}},
             "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10",
                                      "ports": [{"containerPort": 8080}]}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
         "spec": {"type": service_type, "selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
    ]))


def endpoint_slices(server: KubeAPIServer, namespace: str, service: str) -> list[Any]:
    return client.DiscoveryV1Api(server.api_client()).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}").items


def endpoints(server: KubeAPIServer, namespace: str, service: str) -> list[Any]:
    """Every endpoint of the Service's slices (``V1Endpoint``)."""
    return [endpoint for piece in endpoint_slices(server, namespace, service) for endpoint in piece.endpoints or []]


def ready_addresses(server: KubeAPIServer, namespace: str, service: str) -> set[str]:
    return {address for endpoint in endpoints(server, namespace, service) if endpoint.conditions.ready
            for address in endpoint.addresses}
