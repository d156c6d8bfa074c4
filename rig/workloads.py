"""The objects on the rig's API servers: what users apply, and what a real cluster's controllers would write, done
by hand where the rig runs none.

By default a member runs no kube-controller-manager, cloud controller or ingress controller: these helpers create
the EndpointSlices and load-balancer statuses those controllers would write. A member can also run its real
controllers (rig/controllers.py): there an app is a Deployment and a Service applied with kubectl (``deploy_app``)
and its EndpointSlices are the EndpointSlice controller's (``endpoints``, ``ready_addresses``); no cloud controller
ever runs, so load-balancer statuses are always written here.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fleetdns.apipaths import MEMBER_CLUSTERS
from rig.apiserver import KubeAPIServer
from rig.binaries import REPO_ROOT, binary
from rig.process import RigError

CRD_DIR = Path(__file__).resolve().parents[1] / "manifests" / "crds"


def apply_crds(api: client.ApiClient, directory: Path = CRD_DIR, timeout: float = 30,
               files: Sequence[Path] | None = None) -> list[str]:
    """Create or replace every CRD in ``directory`` (or in ``files``) and wait until all are established."""
    extensions = client.ApiextensionsV1Api(api)
    names = []
    for path in files if files is not None else sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            names.append(name)
            try:
                extensions.create_custom_resource_definition(doc)
            except ApiException as error:
                if error.status != 409:
                    raise
                current = extensions.read_custom_resource_definition(name).to_dict()
                doc["metadata"]["resourceVersion"] = current["metadata"]["resource_version"]
                extensions.replace_custom_resource_definition(name, doc)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            conditions = (extensions.read_custom_resource_definition(name).to_dict().get("status") or {}).get(
                "conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not established after {timeout}s")
            time.sleep(0.1)
    return names


def ensure_namespace(api: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as error:
        if error.status != 409:
            raise


def create_load_balancer_service(api: client.ApiClient, namespace: str, name: str, port: int = 80) -> None:
    ensure_namespace(api, namespace)
    client.CoreV1Api(api).create_namespaced_service(namespace, client.V1Service(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ServiceSpec(type="LoadBalancer", selector={"app": name},
                                  ports=[client.V1ServicePort(port=port, target_port=port, protocol="TCP")]),
    ))


def set_load_balancer_status(api: client.ApiClient, namespace: str, name: str, ips: Sequence[str] = (),
                             hostnames: Sequence[str] = (), kind: str = "service") -> None:
    """Publish load-balancer addresses as a cloud controller (Service) or ingress controller (Ingress) would."""
    ingress = [{"ip": ip} for ip in ips] + [{"hostname": h} for h in hostnames]
    body = {"status": {"loadBalancer": {"ingress": ingress}}}
    if kind == "service":
        client.CoreV1Api(api).patch_namespaced_service_status(name, namespace, body)
    else:
        client.NetworkingV1Api(api).patch_namespaced_ingress_status(name, namespace, body)


def set_endpoints(api: client.ApiClient, namespace: str, service: str, addresses: list[str], ready: bool,
                  port: int = 80) -> None:
    """Create or replace the Service's one EndpointSlice, all endpoints ready or all not ready."""
    discovery = client.DiscoveryV1Api(api)
    name = f"{service}-rig"
    metadata = client.V1ObjectMeta(name=name, labels={"kubernetes.io/service-name": service})
    body = client.V1EndpointSlice(
        metadata=metadata,
        address_type="IPv4",
        endpoints=[client.V1Endpoint(addresses=[address], conditions=client.V1EndpointConditions(ready=ready))
                   for address in addresses],
        ports=[client.DiscoveryV1EndpointPort(port=port, protocol="TCP")],
    )
    try:
        current = discovery.read_namespaced_endpoint_slice(name, namespace).to_dict()
    except ApiException as error:
        if error.status != 404:
            raise
        discovery.create_namespaced_endpoint_slice(namespace, body)
        return
    metadata.resource_version = current["metadata"]["resource_version"]
    discovery.replace_namespaced_endpoint_slice(name, namespace, body)


def register_member(host: client.ApiClient, name: str, region: str, zone: str, kubeconfig: str,
                    namespace: str = "fleetdns-system", location: tuple[float, float] | None = None) -> None:
    """Store a member's kubeconfig in a Secret on the host and create its MemberCluster."""
    ensure_namespace(host, namespace)
    secret_name = f"member-{name}"
    core = client.CoreV1Api(host)
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name=secret_name), string_data={"kubeconfig": kubeconfig})
    try:
        core.create_namespaced_secret(namespace, secret)
    except ApiException as error:
        if error.status != 409:
            raise
        core.replace_namespaced_secret(secret_name, namespace, secret)
    spec: dict = {"region": region, "zone": zone,
                  "kubeconfigSecretRef": {"namespace": namespace, "name": secret_name, "key": "kubeconfig"}}
    if location:
        spec["location"] = {"latitude": location[0], "longitude": location[1]}
    member = MEMBER_CLUSTERS.manifest(name, spec=spec)
    client.CustomObjectsApi(host).create_cluster_custom_object(MEMBER_CLUSTERS.group, MEMBER_CLUSTERS.version,
                                                               MEMBER_CLUSTERS.plural, member)


# --- apps on a member running its real controllers (rig/controllers.py), handled as a user handles them ----------

MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
ENDPOINTSLICE_CONTROLLER = "endpointslice-controller.k8s.io"  # the real controller's value of MANAGED_BY


def kubectl_argv(server: KubeAPIServer, *args: str) -> list[str]:
    """The rig's kubectl (``make tools``) against ``server``'s admin kubeconfig."""
    return [binary("kubectl"), f"--kubeconfig={server.kubeconfig}", *args]


def shown(argv: Sequence[str]) -> str:
    """A command line as a user types it in the repository: a tool ``make tools`` linked into ./bin by that link."""
    tool = Path(argv[0])
    link = REPO_ROOT / "bin" / tool.name
    first = f"./bin/{tool.name}" if link.exists() and link.resolve() == tool.resolve() else argv[0]
    return shlex.join([first, *argv[1:]])


def kubectl(server: KubeAPIServer, *args: str, stdin: str | None = None, timeout: float = 30) -> str:
    """Run the rig's kubectl against ``server``; its output, or RigError with kubectl's own message."""
    argv = kubectl_argv(server, *args)
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RigError(f"{shown(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def deploy_app(server: KubeAPIServer, namespace: str, name: str, replicas: int, service_type: str = "ClusterIP",
               pod_annotations: dict[str, str] | None = None, readiness_probe: dict[str, Any] | None = None,
               service_labels: dict[str, str] | None = None) -> None:
    """A Deployment and a Service selecting its pods (port 80 to the pods' container port ``http``, 8080), applied
    with kubectl as one manifest; the member's controllers make the pods and their EndpointSlices."""
    labels = {"app": name}
    container: dict[str, Any] = {"name": "web", "image": "registry.k8s.io/pause:3.10",
                                 "ports": [{"name": "http", "containerPort": 8080}]}
    if readiness_probe is not None:
        container["readinessProbe"] = readiness_probe
    kubectl(server, "apply", "-f", "-", stdin=yaml.safe_dump_all([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels, "annotations": pod_annotations or {}},
             "spec": {"containers": [container]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": namespace, "labels": service_labels or {}},
         "spec": {"type": service_type, "selector": labels, "ports": [{"port": 80, "targetPort": "http"}]}},
    ]))


def endpoint_slices(server: KubeAPIServer, namespace: str, service: str) -> list[Any]:
    """The Service's EndpointSlices (``V1EndpointSlice``), whoever wrote them."""
    return client.DiscoveryV1Api(server.api_client()).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}").items


def endpoints(server: KubeAPIServer, namespace: str, service: str) -> list[Any]:
    """Every endpoint of the Service's slices (``V1Endpoint``)."""
    return [endpoint for piece in endpoint_slices(server, namespace, service) for endpoint in piece.endpoints or []]


def ready_addresses(server: KubeAPIServer, namespace: str, service: str) -> set[str]:
    """The addresses of the Service's ready endpoints."""
    return {address for endpoint in endpoints(server, namespace, service) if endpoint.conditions.ready
            for address in endpoint.addresses}
