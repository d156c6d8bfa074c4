"""``fleetdns join`` and ``unjoin``: make a member readable by the host's aggregator, and take back exactly that.

Every object join creates carries two labels (``OWNED``), and unjoin deletes only objects carrying both for its
member. Objects join finds already there (the chart's member role, an operator's Secret) are used and never changed
or deleted. Join reads both clusters and refuses before its first write when something in the way is not its own,
so a refusal leaves nothing half-done (docs/design/cli.md).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from cli import reader
from cli.contexts import Cluster, UsageError
from fleetdns.apipaths import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    MEMBER_CLUSTERS,
    NAMESPACES,
    SECRETS,
    SERVICE_ACCOUNTS,
    Resource,
)
from fleetdns.dnsname import is_dns_label
from fleetdns.kubeapi import KubeClient, KubeError

MANAGED_BY = ("app.kubernetes.io/managed-by", "fleetdns-join")
MEMBER_LABEL = "fleetdns.io/joined-member"
DEFAULT_TOKEN_HOURS = 8760


class JoinRefused(Exception):
    """Something join would have to change is not its own: nothing was written (exit code 1)."""


@dataclass(frozen=True)
class Action:
    """One object join or unjoin acted on (or chose not to): what a person reads and a script parses."""

    cluster: str  # "host" or "member"
    verb: str  # created, updated, unchanged, kept (not ours), deleted, left, absent
    kind: str
    name: str
    namespace: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}


@dataclass(frozen=True)
class JoinRequest:
    name: str  # the MemberCluster's name
    region: str = ""  # join's (unjoin needs none)
    zone: str = ""
    location: tuple[float, float] | None = None
    namespace: str = reader.DEFAULT_NAMESPACE  # in the member: the reader's
    host_namespace: str = reader.DEFAULT_NAMESPACE  # on the host: the kubeconfig Secret's (the aggregator's)
    member_server: str = ""  # how the host reaches the member, when not at the context's URL
    token_hours: int = DEFAULT_TOKEN_HOURS

    def validate(self, joining: bool = True) -> None:
        labels = [("name", self.name), ("--namespace", self.namespace), ("--host-namespace", self.host_namespace)]
        if joining:
            labels += [("--region", self.region), ("--zone", self.zone)]
        for flag, value in labels:
            if not is_dns_label(value):
                raise UsageError(f"{flag} {value!r}: must be a DNS label (lower-case letters, digits and '-', "
                                 f"starting and ending with a letter or digit, at most 63)")
        if self.token_hours < 1:
            raise UsageError(f"--token-duration: {self.token_hours}h is not a lifetime; give at least 1h")


def parse_location(value: str) -> tuple[float, float]:
    """``LAT,LON`` in degrees (``--location 50.11,8.68``)."""
    try:
        latitude, longitude = (float(part) for part in value.split(","))
    except ValueError:
        raise UsageError(f"--location {value!r}: give LAT,LON in degrees, for example 50.11,8.68") from None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise UsageError(f"--location {value!r}: latitude must be within ±90 and longitude within ±180")
    return latitude, longitude


def owned_labels(member: str) -> dict[str, str]:
    return {MANAGED_BY[0]: MANAGED_BY[1], MEMBER_LABEL: member}


def is_owned(obj: dict[str, Any] | None, member: str) -> bool:
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY[0]) == MANAGED_BY[1] and labels.get(MEMBER_LABEL) == member


def host_secret_name(member: str) -> str:
    return f"member-{member}"


def binding_secret_name(member: str, host: Cluster) -> str:
    """The member-side Secret the token is bound to: one per (host, member), so unjoining from one host revokes
    only that host's token."""
    return f"fleetdns-join-{member}-{hashlib.sha256(host.server.encode()).hexdigest()[:8]}"


def _replacing(old: Any, new: Any) -> Any:
    """A merge patch's value that makes ``old`` equal ``new``: keys ``new`` lacks are deleted (null), not kept (a
    location dropped from join's flags leaves the MemberCluster)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {**dict.fromkeys(set(old) - set(new)), **new}
    return new


def _with_labels(obj: dict[str, Any], member: str) -> dict[str, Any]:
    obj.setdefault("metadata", {})["labels"] = owned_labels(member)
    return obj


class Joiner:
    """One join or unjoin of ``member`` (the member's cluster) to ``host``."""

    def __init__(self, member: Cluster, host: Cluster, request: JoinRequest) -> None:
        self.member, self.host, self.request = member, host, request
        self.actions: list[Action] = []

    # --- join -----------------------------------------------------------------------------------------------

    def join(self) -> list[Action]:
        self.request.validate()
        self._refuse_what_is_not_ours()
        token = self._mint_token(self._ensure_member_reader())
        self._ensure_host_secret(self._reader_kubeconfig(token))
        self._ensure_member_cluster()
        return self.actions

    def _refuse_what_is_not_ours(self) -> None:
        """Every reason to refuse, read before the first write."""
        r, ns = self.request, self.request.namespace
        problems = []
        if self.host.client.get_if_exists(NAMESPACES.path(name=r.host_namespace)) is None:
            problems.append(f"the host has no namespace {r.host_namespace} for the member's kubeconfig Secret: install "
                            f"the host chart first (docs/install.md step 1) or pass --host-namespace")
        for resource, name, namespace in ((MEMBER_CLUSTERS, r.name, ""),
                                          (SECRETS, host_secret_name(r.name), r.host_namespace)):
            found = self.host.client.get_if_exists(resource.path(namespace, name))
            if found is not None and not is_owned(found, r.name):
                where = f"{namespace}/{name}" if namespace else name
                problems.append(f"the host's {resource.kind} {where} was not made by `fleetdns join` for {r.name}; "
                                f"delete it or join under another name (--name)")
        role = self.member.client.get_if_exists(CLUSTER_ROLES.path(name=reader.READER))
        if role is not None and not is_owned(role, r.name):
            missing = reader.missing_grants(role.get("rules") or [])
            if missing:
                problems.append(f"the member's ClusterRole {reader.READER} (not made by join) lacks what the "
                                f"aggregator reads: {', '.join(missing)}")
        binding = self.member.client.get_if_exists(CLUSTER_ROLE_BINDINGS.path(name=reader.READER))
        if binding is not None and not is_owned(binding, r.name):
            subject = {"kind": "ServiceAccount", "name": reader.READER, "namespace": ns}
            if not any({k: s.get(k) for k in subject} == subject for s in binding.get("subjects") or []):
                problems.append(f"the member's ClusterRoleBinding {reader.READER} (not made by join) does not bind "
                                f"ServiceAccount {ns}/{reader.READER}: pass the namespace the chart was installed "
                                f"into (--namespace)")
        if problems:
            raise JoinRefused("nothing changed: " + "; ".join(problems))

    def _ensure_member_reader(self) -> dict[str, Any]:
        """The reader's objects, and the Secret its token is bound to (returned)."""
        ns, name = self.request.namespace, self.request.name
        self._create_if_missing("member", self.member.client, NAMESPACES, NAMESPACES.manifest(ns))
        self._create_if_missing("member", self.member.client, SERVICE_ACCOUNTS,
                                SERVICE_ACCOUNTS.manifest(reader.READER, ns))
        self._apply_owned("member", self.member.client, CLUSTER_ROLES, reader.cluster_role(), ("rules",))
        self._apply_owned("member", self.member.client, CLUSTER_ROLE_BINDINGS, reader.cluster_role_binding(ns),
                          ("roleRef", "subjects"))
        binding = SECRETS.manifest(binding_secret_name(name, self.host), ns, type="Opaque")
        binding["metadata"]["annotations"] = {
            "fleetdns.io/purpose": f"deleting this revokes the token the host at {self.host.server} reads this "
                                   f"cluster with (fleetdns unjoin does)"}
        return self._apply_owned("member", self.member.client, SECRETS, binding, ())

    def _mint_token(self, bound: dict[str, Any]) -> str:
        """A bound token for the reader, bound to this host's binding Secret ``bound`` (deleting it revokes the
        token)."""
        ns = self.request.namespace
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": self.request.token_hours * 3600,
                         "boundObjectRef": {"kind": "Secret", "apiVersion": "v1",
                                            "name": bound["metadata"]["name"], "uid": bound["metadata"]["uid"]}}}
        answer = self.member.client.create(SERVICE_ACCOUNTS.path(ns, reader.READER, "token"), body)
        expires = answer.get("status", {}).get("expirationTimestamp", "")
        self.actions.append(Action("member", "created", "TokenRequest", reader.READER, ns,
                                   f"a token for the aggregator, valid until {expires}; join again to renew it"))
        return answer["status"]["token"]

    def _reader_kubeconfig(self, token: str) -> str:
        server = self.request.member_server or self.member.server
        cluster: dict[str, Any] = {"server": server}
        if self.member.ca_pem:
            cluster["certificate-authority-data"] = base64.b64encode(self.member.ca_pem).decode()
        elif self.member.insecure:
            cluster["insecure-skip-tls-verify"] = True
        name = self.request.name
        return yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": name, "cluster": cluster}],
            "users": [{"name": reader.READER, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": reader.READER}}]})

    def _ensure_host_secret(self, kubeconfig: str) -> None:
        r = self.request
        secret = SECRETS.manifest(host_secret_name(r.name), r.host_namespace, type="Opaque",
                                  data={"kubeconfig": base64.b64encode(kubeconfig.encode()).decode()})
        # the token is new on every join: "updated" says the credential was renewed, never the token itself
        self._apply_owned("host", self.host.client, SECRETS, secret, ("data",), detail="kubeconfig for the reader")

    def _ensure_member_cluster(self) -> None:
        r = self.request
        spec: dict[str, Any] = {"region": r.region, "zone": r.zone,
                                "kubeconfigSecretRef": {"namespace": r.host_namespace, "name": host_secret_name(r.name),
                                                        "key": "kubeconfig"}}
        if r.location is not None:
            spec["location"] = {"latitude": r.location[0], "longitude": r.location[1]}
        self._apply_owned("host", self.host.client, MEMBER_CLUSTERS, MEMBER_CLUSTERS.manifest(r.name, spec=spec),
                          ("spec",))

    def _create_if_missing(self, side: str, client: KubeClient, resource: Resource, obj: dict[str, Any]) -> None:
        """Create ``obj`` (labelled ours) unless an object of that name exists, which is used as it is."""
        meta = obj["metadata"]
        found = client.get_if_exists(resource.path(meta.get("namespace", ""), meta["name"]))
        if found is None:
            client.create(resource.path(meta.get("namespace", "")), _with_labels(obj, self.request.name))
            self.actions.append(Action(side, "created", resource.kind, meta["name"], meta.get("namespace", "")))
        else:
            verb = "unchanged" if is_owned(found, self.request.name) else "kept"
            self.actions.append(Action(side, verb, resource.kind, meta["name"], meta.get("namespace", ""),
                                       "" if verb == "unchanged" else "already there, not made by join: used as is"))

    def _apply_owned(self, side: str, client: KubeClient, resource: Resource, obj: dict[str, Any],
                     fields: tuple[str, ...], detail: str = "") -> dict[str, Any]:
        """Create ``obj``, or bring ``fields`` of the existing one up to date when it is ours; one that is not ours
        is kept as it is (the refusal check has already said whether it will do). Returns the object as the API
        server holds it now."""
        meta, member = obj["metadata"], self.request.name
        namespace = meta.get("namespace", "")
        found = client.get_if_exists(resource.path(namespace, meta["name"]))
        if found is None:
            self.actions.append(Action(side, "created", resource.kind, meta["name"], namespace, detail))
            return client.create(resource.path(namespace), _with_labels(obj, member))
        if not is_owned(found, member):
            self.actions.append(Action(side, "kept", resource.kind, meta["name"], namespace,
                                       "already there, not made by join: used as is"))
            return found
        if any(found.get(f) != obj.get(f) for f in fields):
            self.actions.append(Action(side, "updated", resource.kind, meta["name"], namespace, detail))
            return client.merge_patch(resource.path(namespace, meta["name"]),
                                      {f: _replacing(found.get(f), obj.get(f)) for f in fields})
        self.actions.append(Action(side, "unchanged", resource.kind, meta["name"], namespace, detail))
        return found

    # --- unjoin ---------------------------------------------------------------------------------------------

    def unjoin(self) -> list[Action]:
        """Delete what join made for this member, host first (the aggregator stops reading), then the member's
        (the token's binding Secret first: that revokes the credential even while the rest stays)."""
        r = self.request
        ns = r.namespace
        self._delete_owned("host", self.host.client, MEMBER_CLUSTERS, r.name)
        self._delete_owned("host", self.host.client, SECRETS, host_secret_name(r.name), r.host_namespace)
        self._delete_owned("member", self.member.client, SECRETS, binding_secret_name(r.name, self.host), ns)
        self._delete_owned("member", self.member.client, CLUSTER_ROLE_BINDINGS, reader.READER)
        self._delete_owned("member", self.member.client, CLUSTER_ROLES, reader.READER)
        self._delete_owned("member", self.member.client, SERVICE_ACCOUNTS, reader.READER, ns)
        self._delete_namespace_if_only_ours(ns)
        return self.actions

    def _delete_owned(self, side: str, client: KubeClient, resource: Resource, name: str, namespace: str = "") -> None:
        found = client.get_if_exists(resource.path(namespace, name))
        if found is None:
            self.actions.append(Action(side, "absent", resource.kind, name, namespace))
        elif not is_owned(found, self.request.name):
            self.actions.append(Action(side, "left", resource.kind, name, namespace, "not made by join"))
        else:
            try:
                client.delete(resource.path(namespace, name))
            except KubeError as error:
                if error.status != 404:
                    raise
            self.actions.append(Action(side, "deleted", resource.kind, name, namespace))

    def _delete_namespace_if_only_ours(self, namespace: str) -> None:
        found = self.member.client.get_if_exists(NAMESPACES.path(name=namespace))
        if found is None:
            self.actions.append(Action("member", "absent", "Namespace", namespace))
            return
        if not is_owned(found, self.request.name):
            self.actions.append(Action("member", "left", "Namespace", namespace, detail="not made by join"))
            return
        others = sorted(foreign_objects(self.member.client, namespace, self.request.name))
        if others:
            shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            self.actions.append(Action("member", "left", "Namespace", namespace,
                                       detail=f"holds objects join did not make: {shown}"))
            return
        self.member.client.delete(NAMESPACES.path(name=namespace))
        self.actions.append(Action("member", "deleted", "Namespace", namespace))


# What Kubernetes puts in every namespace by itself: not an operator's object, so no reason to keep one join made.
_BUILT_IN = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}
_EPHEMERAL = {"events", "events.events.k8s.io"}  # expire on their own; never a reason to keep a namespace


def foreign_objects(client: KubeClient, namespace: str, member: str) -> Iterator[str]:
    """``Kind/name`` of every object in ``namespace`` that join did not make for ``member``, over every namespaced
    kind the server lists (discovery), so an operator's object of any kind keeps the namespace."""
    for resource in _namespaced_listable(client):
        try:
            items = client.get(resource.path(namespace)).get("items") or []
        except KubeError:
            continue  # a kind this identity may not list, or an aggregated API that is down
        for item in items:
            name = (item.get("metadata") or {}).get("name", "")
            if (resource.kind, name) not in _BUILT_IN and not is_owned(item, member):
                yield f"{resource.kind}/{name}"


def _namespaced_listable(client: KubeClient) -> Iterator[Resource]:
    versions = [("", v) for v in client.get("/api").get("versions", [])]
    for group in client.get("/apis").get("groups", []):
        preferred = (group.get("preferredVersion") or {}).get("version")
        if preferred:
            versions.append((group["name"], preferred))
    for group, version in versions:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            listing = client.get(path).get("resources", [])
        except KubeError:
            continue
        for entry in listing:
            plural = entry.get("name", "")
            qualified = f"{plural}.{group}" if group else plural
            if ("/" in plural or not entry.get("namespaced") or "list" not in entry.get("verbs", [])
                    or qualified in _EPHEMERAL):
                continue
            yield Resource(group, version, plural, entry.get("kind", ""))
