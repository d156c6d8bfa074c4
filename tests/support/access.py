"""What an identity may do on a real API server, as the server answers it: every verb on every resource the server
serves (discovery: every group and version, subresources and CRDs included), in each namespace and cluster-wide,
and on the non-resource URLs.

The whole answer comes from SelfSubjectRulesReview, one request per namespace: exact where RBAC is the only
authorizer (the rig's servers run ``--authorization-mode=RBAC``) and the server says so (``incomplete`` false). It is
expanded here over what the server serves (``allowed``), and SelfSubjectAccessReview, the authorizer's own decision
on one question, confirms the expansion (``review``) on the questions a test picks (``questions``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from fleetdns.kubeapi import KubeClient

ALL_NAMESPACES = "*"  # the scope of a cluster-scoped resource, or of a namespaced one across every namespace
NON_RESOURCE = "(url)"  # the "group" of a non-resource URL such as /metrics

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
# Verbs that are no request on the resource itself, asked of the resources they apply to (served or not).
SPECIAL_VERBS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("rbac.authorization.k8s.io", "roles"): ("bind", "escalate"),
    ("rbac.authorization.k8s.io", "clusterroles"): ("bind", "escalate"),
    ("", "users"): ("impersonate",),
    ("", "groups"): ("impersonate",),
    ("", "serviceaccounts"): ("impersonate",),
    ("authentication.k8s.io", "uids"): ("impersonate",),
    ("authentication.k8s.io", "userextras"): ("impersonate",),
    ("certificates.k8s.io", "signers"): ("approve", "sign", "attest"),
}
URLS = ("/api", "/apis", "/healthz", "/livez", "/readyz", "/version", "/openapi/v2", "/openapi/v3", "/metrics",
        "/logs", "/debug/pprof", "/debug/flags/v", "/.well-known/openid-configuration", "/openid/v1/jwks")
URL_VERBS = ("get", "post", "put", "delete")


@dataclass(frozen=True, order=True)
class Access:
    """One thing to be allowed or not: ``verb`` on ``resource`` (with its subresource: ``dnsendpoints/status``) of
    ``group`` in ``scope`` (a namespace, or ALL_NAMESPACES), or on a URL (group NON_RESOURCE); ``name`` only when a
    rule allows some names and not others."""

    group: str
    resource: str
    verb: str
    scope: str = ALL_NAMESPACES
    name: str = ""

    @property
    def kind(self) -> tuple[str, str]:
        """(group, resource without its subresource)."""
        return self.group, self.resource.partition("/")[0]

    def __str__(self) -> str:
        what = self.resource if self.group in ("", NON_RESOURCE) else f"{self.resource}.{self.group}"
        named = f" named {self.name}" if self.name else ""
        return f"{self.verb} {what}{named} " + ("cluster-wide" if self.scope == ALL_NAMESPACES else f"in {self.scope}")


@dataclass(frozen=True)
class Kind:
    """A resource (or subresource) the server serves, in one version; ``preferred``: the group's preferred one."""

    group: str
    resource: str
    namespaced: bool
    version: str = "v1"
    verbs: frozenset[str] = frozenset()
    preferred: bool = True

    @property
    def list_path(self) -> str:
        return f"/api/{self.version}/{self.resource}" if not self.group else \
            f"/apis/{self.group}/{self.version}/{self.resource}"


def served_kinds(api: KubeClient) -> set[Kind]:
    """Every resource and subresource of every group and version ``api`` serves (discovery)."""
    versions = [("", "v1", True)] + [
        (group["name"], version["version"], version["groupVersion"] == group["preferredVersion"]["groupVersion"])
        for group in api.get("/apis").get("groups", []) for version in group["versions"]]
    kinds = set()
    for group, version, preferred in versions:
        listing = api.get(f"/apis/{group}/{version}" if group else f"/api/{version}")
        kinds |= {Kind(group, item["name"], item["namespaced"], version, frozenset(item.get("verbs") or ()),
                       preferred) for item in listing.get("resources", [])}
    return kinds


@dataclass(frozen=True)
class Rule:
    """One rule of a SelfSubjectRulesReview's answer, matched as RBAC matches a request (k8s.io/api/rbac/v1)."""

    verbs: frozenset[str]
    groups: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()
    urls: frozenset[str] = frozenset()

    def allows(self, access: Access) -> bool:
        if not self.verbs & {"*", access.verb}:
            return False
        if access.group == NON_RESOURCE:
            return any(url == access.resource or (url.endswith("*") and access.resource.startswith(url[:-1]))
                       for url in self.urls)
        if not self.groups & {"*", access.group}:
            return False
        subresource = access.resource.partition("/")[2]
        if not any(resource in ("*", access.resource) or (subresource and resource == f"*/{subresource}")
                   for resource in self.resources):
            return False
        return not self.names or access.name in self.names

    def named_kinds(self) -> set[tuple[str, str]]:
        """The (group, resource or resource/subresource) pairs this rule names outright (no wildcard)."""
        return {(group, resource) for group in self.groups for resource in self.resources
                if "*" not in group and "*" not in resource}


def rules_review(api: KubeClient, namespace: str) -> list[Rule]:
    """The rules that apply to ``api``'s identity in ``namespace`` (its ClusterRoleBindings' and that namespace's
    RoleBindings'); ValueError if the server cannot give them all."""
    status = api.create("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": namespace}})["status"]
    if status.get("incomplete"):
        raise ValueError(f"the rules in {namespace} are incomplete: {status.get('evaluationError')}")
    rules = [Rule(frozenset(r["verbs"]), frozenset(r.get("apiGroups") or ()), frozenset(r.get("resources") or ()),
                  frozenset(r.get("resourceNames") or ())) for r in status.get("resourceRules") or []]
    return rules + [Rule(frozenset(r["verbs"]), urls=frozenset(r.get("nonResourceURLs") or ()))
                    for r in status.get("nonResourceRules") or []]


def everything(kinds: Iterable[Kind], named: Iterable[tuple[str, str]], namespaces: Sequence[str]) -> set[Access]:
    """Every question there is: each verb on each served kind and each kind ``named`` (not served: taken as
    namespaced), in each namespace and cluster-wide (a cluster-scoped kind: cluster-wide only), and each URL."""
    served = {(kind.group, kind.resource): kind.namespaced for kind in kinds}  # RBAC knows no versions
    known = set(served)
    served |= {(group, resource): True for group, resource in named if (group, resource) not in known}
    accesses = {Access(NON_RESOURCE, url, verb) for url in URLS for verb in URL_VERBS}
    for (group, resource), namespaced in served.items():
        scopes = [*namespaces, ALL_NAMESPACES] if namespaced else [ALL_NAMESPACES]
        verbs = VERBS + SPECIAL_VERBS.get((group, resource), ())
        accesses |= {Access(group, resource, verb, scope) for verb in verbs for scope in scopes}
    for (group, resource), verbs in SPECIAL_VERBS.items():
        if (group, resource) not in known:  # users, groups, signers...: no kind, only these verbs
            accesses |= {Access(group, resource, verb) for verb in verbs}
    return accesses


def allowed(rules: Mapping[str, Sequence[Rule]], questions: Iterable[Access]) -> set[Access]:
    """The questions the rules of each scope allow; a rule limited to some names adds those names' accesses."""
    out = set()
    for access in questions:
        scope_rules = rules[access.scope]
        if any(rule.allows(access) for rule in scope_rules):
            out.add(access)
        out |= {named for rule in scope_rules for name in sorted(rule.names)
                if rule.allows(named := replace(access, name=name))}
    return out


def review(api: KubeClient, access: Access) -> bool:
    """SelfSubjectAccessReview: whether ``api``'s identity may do ``access``, as the authorizer decides it."""
    if access.group == NON_RESOURCE:
        spec = {"nonResourceAttributes": {"path": access.resource, "verb": access.verb}}
    else:
        resource, _, subresource = access.resource.partition("/")
        spec = {"resourceAttributes": {
            "group": access.group, "resource": resource, "subresource": subresource, "verb": access.verb,
            "namespace": "" if access.scope == ALL_NAMESPACES else access.scope, "name": access.name}}
    answer = api.create("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": spec})
    return bool(answer["status"].get("allowed"))


def spread(items: Iterable[Access], count: int) -> list[Access]:
    """``count`` of ``items`` (all when there are fewer), evenly spaced over their sorted order: the same ones each
    run, from every part of the list."""
    ordered = sorted(items)
    if count >= len(ordered):
        return ordered
    step = len(ordered) / count
    return [ordered[int(index * step)] for index in range(count)]


@dataclass(frozen=True)
class Grant:
    """One row of an identity's permissions as written down (docs/install.md): ``verbs`` on ``resources`` of
    ``group`` (NON_RESOURCE: URLs), everywhere or only in ``namespace``."""

    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    namespace: str = ""  # "": in every namespace and across them (a cluster-scoped resource: cluster-wide)

    def accesses(self, kinds: Iterable[Kind], namespaces: Sequence[str]) -> set[Access]:
        """What the row allows among ``everything(kinds, ..., namespaces)`` (a resource not served: namespaced)."""
        namespaced = {(kind.group, kind.resource): kind.namespaced for kind in kinds}
        out = set()
        for resource in self.resources:
            if self.group == NON_RESOURCE or not namespaced.get((self.group, resource), True):
                if self.namespace:
                    raise ValueError(f"{resource} is cluster-wide: a grant on it cannot be limited to a namespace")
                scopes = [ALL_NAMESPACES]
            else:
                scopes = [self.namespace] if self.namespace else [*namespaces, ALL_NAMESPACES]
            out |= {Access(self.group, resource, verb, scope) for verb in self.verbs for scope in scopes}
        return out

    def row(self) -> tuple[str, str, str, str]:
        """(where, API group, resources, verbs) as docs/install.md's table shows them."""
        where = f"namespace {self.namespace}" if self.namespace else "cluster-wide"
        group = "non-resource URLs" if self.group == NON_RESOURCE else self.group or "core"
        return where, group, ", ".join(self.resources), ", ".join(self.verbs)
