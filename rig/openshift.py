"""OpenShift Routes on the rig's bare member API servers: the real Route CRD (from OpenShift's API module,
fetched by ``make tools``), and what OpenShift's routers and ingress operator would write, done by hand:
a Route's ``status.ingress[]`` admission and the router's LoadBalancer Service ``router-<name>``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client

from fleetdns.apipaths import OPENSHIFT_ROUTES
from rig.binaries import installed, missing_file
from rig.workloads import apply_crds, create_load_balancer_service, ensure_namespace, set_load_balancer_status

ROUTE_CRD_ENV = "FLEETDNS_OPENSHIFT_ROUTE_CRD"


def route_crd_path() -> Path:
    """The Route CRD ``make tools`` copied from github.com/openshift/api (pinned in hack/install_tools.py)."""
    return installed(ROUTE_CRD_ENV, "openshift-route-crd.yaml", "the OpenShift Route CRD", missing_file)


def install_route_crd(api: client.ApiClient) -> None:
    """Serve ``route.openshift.io/v1`` Routes on one member API server (idempotent)."""
    apply_crds(api, files=[route_crd_path()])


def create_route(api: client.ApiClient, namespace: str, name: str, host: str, service: str,
                 alternate: Sequence[str] = ()) -> None:
    """A Route to ``service`` (and ``alternate`` backends), as an app team writes it."""
    spec: dict[str, Any] = {"host": host, "to": {"kind": "Service", "name": service}}
    if alternate:
        spec["alternateBackends"] = [{"kind": "Service", "name": backend} for backend in alternate]
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        OPENSHIFT_ROUTES.group, OPENSHIFT_ROUTES.version, namespace, OPENSHIFT_ROUTES.plural,
        OPENSHIFT_ROUTES.manifest(name, spec=spec))


def set_route_admission(api: client.ApiClient, namespace: str, name: str, host: str,
                        routers: Mapping[str, bool]) -> None:
    """``status.ingress[]`` as each router writes it: ``Admitted`` True, or False with HostAlreadyClaimed."""
    ingress = [{"host": host, "routerName": router, "wildcardPolicy": "None",
                "conditions": [{"type": "Admitted", "status": "True"} if admitted else
                               {"type": "Admitted", "status": "False", "reason": "HostAlreadyClaimed",
                                "message": f"route {name} already exposes {host} and is older"}]}
               for router, admitted in routers.items()]
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        OPENSHIFT_ROUTES.group, OPENSHIFT_ROUTES.version, namespace, OPENSHIFT_ROUTES.plural, name,
        {"status": {"ingress": ingress}})


def create_router_service(api: client.ApiClient, namespace: str, router: str, ips: Sequence[str] = (),
                          hostnames: Sequence[str] = ()) -> None:
    """The LoadBalancer Service ``router-<router>`` OpenShift's ingress operator creates, with the cloud's
    addresses (none: the load balancer is not provisioned yet)."""
    ensure_namespace(api, namespace)
    create_load_balancer_service(api, namespace, f"router-{router}", port=443)
    if ips or hostnames:
        set_load_balancer_status(api, namespace, f"router-{router}", ips=ips, hostnames=hostnames)
