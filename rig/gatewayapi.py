"""Gateway API on the rig's bare member API servers: the real CRDs (standard channel of sigs.k8s.io/gateway-api,
fetched by ``make tools``) on chosen members, and what a Gateway controller would write, done by hand: a Gateway's
``status.addresses`` and each route's ``status.parents[]`` verdict (``Accepted`` True or False)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fleetdns.apipaths import (
    GATEWAY_API_GROUP,
    GATEWAYS,
    GRPC_ROUTES,
    HTTP_ROUTES,
    TCP_ROUTES,
    TLS_ROUTES,
    UDP_ROUTES,
    Resource,
)
from rig.binaries import installed
from rig.workloads import apply_crds, ensure_namespace

CRDS_ENV = "FLEETDNS_GATEWAY_API_CRDS"
CONTROLLER = "rig.fleetdns.io/gateway-controller"  # the controllerName the rig's hand-written statuses carry
# The resources FleetDNS reads; only their CRDs are installed (each costs the API server CEL compilation).
RESOURCES = (GATEWAYS, HTTP_ROUTES, GRPC_ROUTES, TLS_ROUTES, TCP_ROUTES, UDP_ROUTES)
BUNDLE_VERSION = "gateway.networking.k8s.io/bundle-version"  # the annotation every Gateway API CRD carries
NOW = "2026-01-01T00:00:00Z"  # lastTransitionTime of the hand-written conditions (required, never compared)


def crd_dir() -> Path:
    """The standard-channel CRDs ``make tools`` copied from sigs.k8s.io/gateway-api (hack/install_tools.py)."""
    def problem(path: Path) -> str:
        missing = [f.name for f in crd_files(path) if not f.is_file()]
        return f"are missing ({', '.join(missing)})" if missing else ""

    return installed(CRDS_ENV, "gateway-api-crds", "the Gateway API CRDs", problem,
                     hint=" to a copy of config/crd/standard")


def crd_files(directory: Path) -> list[Path]:
    return [directory / f"{GATEWAY_API_GROUP}_{resource.plural}.yaml" for resource in RESOURCES]


def install_gateway_api(api: client.ApiClient) -> list[str]:
    """Serve Gateways and the five route kinds (``gateway.networking.k8s.io/v1``) on one API server; CRDs already
    there in the same bundle version are left alone (replacing one costs the API server seconds). Returns the CRDs
    applied."""
    wanted = [path for path in crd_files(crd_dir()) if not _installed(api, yaml.safe_load(path.read_text()))]
    return apply_crds(api, files=wanted) if wanted else []


def _installed(api: client.ApiClient, crd: dict[str, Any]) -> bool:
    try:
        current = client.ApiextensionsV1Api(api).read_custom_resource_definition(crd["metadata"]["name"]).to_dict()
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    version = (crd["metadata"].get("annotations") or {}).get(BUNDLE_VERSION)
    conditions = (current.get("status") or {}).get("conditions") or []
    established = any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
    return established and (current["metadata"].get("annotations") or {}).get(BUNDLE_VERSION) == version


def _objects(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def create_gateway(api: client.ApiClient, namespace: str, name: str, listeners: Sequence[Mapping[str, Any]],
                   gateway_class: str = "rig") -> None:
    """A Gateway with these listeners (``{"name", "port", "protocol", "hostname"?, "allowedRoutes"?, "tls"?}``)."""
    ensure_namespace(api, namespace)
    body = GATEWAYS.manifest(name, namespace, spec={"gatewayClassName": gateway_class,
                                                    "listeners": [dict(listener) for listener in listeners]})
    _objects(api).create_namespaced_custom_object(GATEWAYS.group, GATEWAYS.version, namespace, GATEWAYS.plural, body)


def set_gateway_addresses(api: client.ApiClient, namespace: str, name: str, addresses: Sequence[str]) -> None:
    """``status.addresses`` as the Gateway's controller publishes them: IPs as ``IPAddress``, names as ``Hostname``."""
    entries = [{"type": "IPAddress" if _is_ip(a) else "Hostname", "value": a} for a in addresses]
    _objects(api).patch_namespaced_custom_object_status(GATEWAYS.group, GATEWAYS.version, namespace, GATEWAYS.plural,
                                                        name, {"status": {"addresses": entries}})


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def create_route(api: client.ApiClient, kind: Resource, namespace: str, name: str,
                 parents: Sequence[Mapping[str, Any]], backends: Sequence[str] = (), hostnames: Sequence[str] = (),
                 port: int = 80) -> None:
    """A route of ``kind`` (one of the five route resources) to ``backends`` (Services of its namespace), as an app
    team writes it; ``parents``: its parentRefs (``{"name": <Gateway>, "sectionName"?: ..., ...}``)."""
    ensure_namespace(api, namespace)
    spec: dict[str, Any] = {"parentRefs": [dict(parent) for parent in parents],
                            "rules": [{"backendRefs": [{"name": backend, "port": port} for backend in backends]}]}
    if hostnames:
        spec["hostnames"] = list(hostnames)
    _objects(api).create_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural,
                                                  kind.manifest(name, namespace, spec=spec))


def set_route_parents(api: client.ApiClient, kind: Resource, namespace: str, name: str,
                      verdicts: Mapping[str, bool]) -> None:
    """``status.parents[]`` as each parent Gateway's controller writes it (Gateway name -> accepted): ``Accepted``
    True, or False with reason ``NotAllowedByListeners``."""
    parents = [{"parentRef": {"group": GATEWAY_API_GROUP, "kind": "Gateway", "namespace": namespace, "name": gateway},
                "controllerName": CONTROLLER,
                "conditions": [_accepted(accepted)]} for gateway, accepted in verdicts.items()]
    _objects(api).patch_namespaced_custom_object_status(kind.group, kind.version, namespace, kind.plural, name,
                                                        {"status": {"parents": parents}})


def _accepted(accepted: bool) -> dict[str, Any]:
    if accepted:
        return {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "accepted by the rig",
                "lastTransitionTime": NOW}
    return {"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners",
            "message": "no listener of this Gateway allows the route", "lastTransitionTime": NOW}
