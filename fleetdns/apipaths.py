"""Every Kubernetes resource FleetDNS reads or writes, with its group/version and URL paths: the one home
for API strings, used by the aggregator, the rig and the tests alike.

``Resource.path`` builds the REST path: ``/api/v1/...`` for the core group, ``/apis/<group>/<version>/...``
otherwise; an empty namespace on a namespaced resource means all namespaces (list and watch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FLEETDNS_GROUP = "fleetdns.io"
FLEETDNS_VERSION = "v1alpha1"
EXTERNALDNS_GROUP = "externaldns.k8s.io"
EXTERNALDNS_VERSION = "v1alpha1"


@dataclass(frozen=True, order=True)
class Resource:
    """One resource type of the Kubernetes API (group, version, plural, kind, scope)."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str = "", name: str = "", subresource: str = "") -> str:
        """The collection (no ``name``), one object, or one of its subresources (``status``)."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        path = f"{base}/{self.plural}"
        if name:
            path += f"/{name}"
            if subresource:
                path += f"/{subresource}"
        return path

    @property
    def crd_name(self) -> str:
        """The CustomResourceDefinition that serves it (``<plural>.<group>``)."""
        return f"{self.plural}.{self.group}"

    def manifest(self, name: str, namespace: str = "", **fields: Any) -> dict[str, Any]:
        """A new object of this kind: ``apiVersion``, ``kind``, ``metadata`` and the given top-level fields."""
        metadata: dict[str, Any] = {"name": name}
        if namespace:
            metadata["namespace"] = namespace
        return {"apiVersion": self.api_version, "kind": self.kind, "metadata": metadata, **fields}


def host_cannot_read(resource: Resource, status: int) -> str:
    """Why the host refuses to list one of our kinds, and the fix, for the one log line that says so (404: its CRD is
    not installed; 403: this identity may not list it)."""
    if status == 404:
        return (f"the host does not serve {resource.kind} (CRD {resource.crd_name} not installed): install the CRDs "
                f"with `kubectl apply -f manifests/crds/`")
    return f"the host forbids listing {resource.plural} ({status}): grant list and watch on {resource.crd_name}"


# fleetdns.io: the intents and the fleet (manifests/crds/)
SERVICE_DNS_RECORDS = Resource(FLEETDNS_GROUP, FLEETDNS_VERSION, "servicednsrecords", "ServiceDNSRecord")
INGRESS_DNS_RECORDS = Resource(FLEETDNS_GROUP, FLEETDNS_VERSION, "ingressdnsrecords", "IngressDNSRecord")
GATEWAY_DNS_RECORDS = Resource(FLEETDNS_GROUP, FLEETDNS_VERSION, "gatewaydnsrecords", "GatewayDNSRecord")
ROUTE_DNS_RECORDS = Resource(FLEETDNS_GROUP, FLEETDNS_VERSION, "routednsrecords", "RouteDNSRecord")
# every intent kind, in the order the aggregator and the probers watch them
INTENT_RESOURCES = (SERVICE_DNS_RECORDS, INGRESS_DNS_RECORDS, GATEWAY_DNS_RECORDS, ROUTE_DNS_RECORDS)
# self-service: member objects found by label selectors become generated intents (aggregator/selfservice/)
DISCOVERY_RULES = Resource(FLEETDNS_GROUP, FLEETDNS_VERSION, "discoveryrules", "DiscoveryRule", namespaced=False)
DOMAINS = Resource(FLEETDNS_GROUP, FLEETDNS_VERSION, "domains", "Domain")
MEMBER_CLUSTERS = Resource(FLEETDNS_GROUP, FLEETDNS_VERSION, "memberclusters", "MemberCluster", namespaced=False)
# client populations (cluster-scoped), read by the aggregator and the Corefile renderer (fleetdns/dnsview.py)
DNS_VIEWS = Resource(FLEETDNS_GROUP, FLEETDNS_VERSION, "dnsviews", "DNSView", namespaced=False)
# written by each region's prober, read by the aggregator (fleetdns/healthreport.py)
HEALTH_REPORTS = Resource(FLEETDNS_GROUP, FLEETDNS_VERSION, "healthreports", "HealthReport")

# ExternalDNS's CRD source reads these
DNS_ENDPOINTS = Resource(EXTERNALDNS_GROUP, EXTERNALDNS_VERSION, "dnsendpoints", "DNSEndpoint")

# Kubernetes built-ins
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
SECRETS = Resource("", "v1", "secrets", "Secret")
CONFIG_MAPS = Resource("", "v1", "configmaps", "ConfigMap")
EVENTS = Resource("", "v1", "events", "Event")
SERVICES = Resource("", "v1", "services", "Service")
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
ENDPOINT_SLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
INGRESSES = Resource("networking.k8s.io", "v1", "ingresses", "Ingress")
PODS = Resource("", "v1", "pods", "Pod")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
CLUSTER_ROLES = Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False)
CLUSTER_ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
                                 namespaced=False)
CUSTOM_RESOURCE_DEFINITIONS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                                       "CustomResourceDefinition", namespaced=False)

# Gateway API v1.6 (gateway.networking.k8s.io; all five route kinds are v1 there), read in member clusters
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
GATEWAYS = Resource(GATEWAY_API_GROUP, "v1", "gateways", "Gateway")
HTTP_ROUTES = Resource(GATEWAY_API_GROUP, "v1", "httproutes", "HTTPRoute")
GRPC_ROUTES = Resource(GATEWAY_API_GROUP, "v1", "grpcroutes", "GRPCRoute")
TLS_ROUTES = Resource(GATEWAY_API_GROUP, "v1", "tlsroutes", "TLSRoute")
TCP_ROUTES = Resource(GATEWAY_API_GROUP, "v1", "tcproutes", "TCPRoute")
UDP_ROUTES = Resource(GATEWAY_API_GROUP, "v1", "udproutes", "UDPRoute")

# OpenShift (route.openshift.io), read in member clusters
OPENSHIFT_ROUTES = Resource("route.openshift.io", "v1", "routes", "Route")
