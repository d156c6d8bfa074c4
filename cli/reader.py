"""The read-only identity the aggregator uses in a member: the chart's member role, as objects ``join`` creates.

The one home of these rules in code; tests/install/test_chart.py keeps them equal to the chart's
(charts/fleetdns/templates/member/reader.yaml) and the plain manifest's (manifests/aggregator/member-reader.yaml)."""

from __future__ import annotations

from typing import Any

READER = "fleetdns-aggregator-reader"  # the ServiceAccount, its ClusterRole and ClusterRoleBinding
DEFAULT_NAMESPACE = "fleetdns-system"

RULES: tuple[dict[str, list[str]], ...] = (
    {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},  # DiscoveryRules: a Service's pods' probes
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["list", "watch"]},
    {"apiGroups": ["gateway.networking.k8s.io"],
     "resources": ["gateways", "httproutes", "grpcroutes", "tlsroutes", "tcproutes", "udproutes"],
     "verbs": ["list", "watch"]},
    {"apiGroups": ["route.openshift.io"], "resources": ["routes"], "verbs": ["list", "watch"]},
)


def cluster_role() -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": READER},
            "rules": [dict(rule) for rule in RULES]}


def cluster_role_binding(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": READER},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": READER},
            "subjects": [{"kind": "ServiceAccount", "name": READER, "namespace": namespace}]}


def missing_grants(rules: list[dict[str, Any]]) -> list[str]:
    """What ``rules`` (an existing ClusterRole's) fail to grant of the reader's, as ``verb group/resource`` lines:
    join uses a role it did not create only when this is empty."""
    granted = {(group, resource, verb)
               for rule in rules for group in rule.get("apiGroups") or [] for resource in rule.get("resources") or []
               for verb in rule.get("verbs") or []}

    def allows(group: str, resource: str, verb: str) -> bool:
        return any((g, r, v) in granted for g in (group, "*") for r in (resource, "*") for v in (verb, "*"))

    return [f"{verb} {group or 'core'}/{resource}" for rule in RULES for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"] if not allows(group, resource, verb)]
