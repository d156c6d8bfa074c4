"""`fleetdns join` and `unjoin` against real API servers, run as an operator runs them (the console script, a
kubeconfig with a context per cluster): the joined member is read by a real aggregator, its credential reads only
what the aggregator needs, and unjoin takes back exactly what join made (docs/design/cli.md)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from cli import reader
from fleetdns.apipaths import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    CONFIG_MAPS,
    MEMBER_CLUSTERS,
    NAMESPACES,
    SECRETS,
    SERVICE_ACCOUNTS,
)
from fleetdns.kubeapi import KubeClient
from rig import Fleet
from rig.aggregator import AggregatorProcess, client_for
from rig.waiting import wait_for
from rig.workloads import apply_crds, ensure_namespace

pytestmark = pytest.mark.apiserver
FLEETDNS = Path(sys.executable).with_name("fleetdns")  # the console script the wheel installs
HOST_NS = reader.DEFAULT_NAMESPACE  # the host chart's namespace: the aggregator's, where the kubeconfig Secrets go


@dataclass
class Clusters:
    fleet: Fleet
    kubeconfig: Path
    host: KubeClient
    members: dict[str, KubeClient]


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    """A host with the CRDs, its fleetdns-system namespace (the host chart's) and a real aggregator; members east
    and west with nothing of FleetDNS; one operator kubeconfig with the contexts host, east and west."""
    workdir = tmp_path_factory.mktemp("cli-join")
    with Fleet(("east", "west"), workdir / "clusters") as fleet:
        apply_crds(fleet.host.api_client())
        ensure_namespace(fleet.host.api_client(), HOST_NS)
        aggregator = AggregatorProcess(fleet.host.kubeconfig, ["--member-grace-period=5s"], workdir).start()
        try:
            yield Clusters(fleet, fleet.operator_kubeconfig(workdir / "operator.kubeconfig"),
                           client_for(fleet.host), {name: client_for(m) for name, m in fleet.members.items()})
        finally:
            aggregator.stop()


@pytest.fixture
def ns() -> str:
    """The reader's namespace in the members for one test (--namespace): these members run no namespace controller,
    so a namespace unjoin deletes stays Terminating, and each test needs its own."""
    return f"fleetdns-{uuid.uuid4().hex[:6]}"


def fleetdns(clusters: Clusters, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FLEETDNS), "--kubeconfig", str(clusters.kubeconfig), *args], capture_output=True,
                          text=True, timeout=60)


def join(clusters: Clusters, member: str, ns: str, *flags: str) -> list[dict[str, str]]:
    done = fleetdns(clusters, "join", member, "--host-context", "host", "--region", member, "--namespace", ns,
                    "-o", "json", *flags)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["actions"]


def unjoin(clusters: Clusters, member: str, ns: str, *flags: str) -> list[dict[str, str]]:
    done = fleetdns(clusters, "unjoin", member, "--host-context", "host", "--namespace", ns, "-o", "json", *flags)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["actions"]


def reader_kubeconfig(clusters: Clusters, member: str) -> dict[str, Any]:
    secret = clusters.host.get(SECRETS.path(HOST_NS, f"member-{member}"))
    return yaml.safe_load(base64.b64decode(secret["data"]["kubeconfig"]))


def as_reader(clusters: Clusters, member: str, path: str, config: dict[str, Any] | None = None) -> int:
    """The status code the member answers ``GET path`` with, asked with the credential join stored on the host
    (or with ``config``, one it stored earlier)."""
    config = config or reader_kubeconfig(clusters, member)
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    ca = clusters.kubeconfig.with_name(f"{member}-ca.crt")
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    return requests.get(cluster["server"] + path, headers={"Authorization": f"Bearer {user['token']}"},
                        verify=str(ca), timeout=10).status_code


def verbs(actions: list[dict[str, str]]) -> dict[tuple[str, str, str], str]:
    return {(a["cluster"], a["kind"], a["name"]): a["verb"] for a in actions}


def test_a_joined_member_is_read_by_the_aggregator_with_a_credential_that_reads_only_what_it_needs(
        clusters: Clusters, ns: str) -> None:
    actions = join(clusters, "east", ns, "--zone", "east-1b", "--location", "50.11,8.68")
    assert {(a["cluster"], a["kind"]) for a in actions if a["verb"] == "created"} == {
        ("member", "Namespace"), ("member", "ServiceAccount"), ("member", "ClusterRole"),
        ("member", "ClusterRoleBinding"), ("member", "Secret"), ("member", "TokenRequest"), ("host", "Secret"),
        ("host", "MemberCluster")}
    member = clusters.host.get(MEMBER_CLUSTERS.path(name="east"))
    assert member["spec"] == {"region": "east", "zone": "east-1b", "location": {"latitude": 50.11, "longitude": 8.68},
                              "kubeconfigSecretRef": {"namespace": HOST_NS, "name": "member-east", "key": "kubeconfig"}}
    wait_for(lambda: (clusters.host.get_if_exists(MEMBER_CLUSTERS.path(name="east")) or {})
             .get("status", {}).get("state")
             == "Connected", 30, "the aggregator reading east with the joined credential (state Connected)")

    assert as_reader(clusters, "east", "/api/v1/services") == 200
    assert as_reader(clusters, "east", "/apis/discovery.k8s.io/v1/endpointslices") == 200
    assert as_reader(clusters, "east", "/api/v1/secrets") == 403, "the reader must not read the member's Secrets"
    assert as_reader(clusters, "east", f"/api/v1/namespaces/{ns}/configmaps") == 403
    unjoin(clusters, "east", ns)


def test_joining_again_changes_nothing_but_the_renewed_token_and_what_the_flags_changed(
        clusters: Clusters, ns: str) -> None:
    join(clusters, "west", ns)
    before = {path: clusters.members["west"].get(path)["metadata"]["uid"] for path in (
        NAMESPACES.path(name=ns), SERVICE_ACCOUNTS.path(ns, reader.READER), CLUSTER_ROLES.path(name=reader.READER))}
    first_token = reader_kubeconfig(clusters, "west")["users"][0]["user"]["token"]

    with_location = verbs(join(clusters, "west", ns, "--location", "40.71,-74.01"))
    assert with_location[("host", "MemberCluster", "west")] == "updated"
    again = verbs(join(clusters, "west", ns, "--region", "west", "--zone", "west-2a"))
    assert again[("member", "ClusterRole", reader.READER)] == "unchanged"
    assert again[("member", "Namespace", ns)] == "unchanged"
    assert again[("host", "MemberCluster", "west")] == "updated"  # the zone moved
    assert again[("host", "Secret", "member-west")] == "updated"  # the renewed token
    spec = clusters.host.get(MEMBER_CLUSTERS.path(name="west"))["spec"]
    assert spec["zone"] == "west-2a" and "location" not in spec, "a flag left out on a new join is left out"
    assert {path: clusters.members["west"].get(path)["metadata"]["uid"] for path in before} == before
    assert reader_kubeconfig(clusters, "west")["users"][0]["user"]["token"] != first_token
    assert as_reader(clusters, "west", "/api/v1/services") == 200
    unjoin(clusters, "west", ns)


def test_unjoin_deletes_what_join_made_revokes_the_token_and_leaves_everything_else(
        clusters: Clusters, ns: str) -> None:
    join(clusters, "west", ns)
    west = clusters.members["west"]
    operators = CONFIG_MAPS.manifest("team-settings", ns, data={"owner": "team-a"})  # an operator's, in join's ns
    west.create(CONFIG_MAPS.path(ns), operators)
    config = reader_kubeconfig(clusters, "west")

    actions = verbs(unjoin(clusters, "west", ns))
    assert actions[("host", "MemberCluster", "west")] == "deleted"
    assert actions[("host", "Secret", "member-west")] == "deleted"
    assert actions[("member", "ClusterRole", reader.READER)] == "deleted"
    assert actions[("member", "Namespace", ns)] == "left", "the namespace holds an operator's ConfigMap"
    assert clusters.host.get_if_exists(MEMBER_CLUSTERS.path(name="west")) is None
    assert west.get_if_exists(CONFIG_MAPS.path(ns, "team-settings"))["data"] == {"owner": "team-a"}
    assert west.get_if_exists(CLUSTER_ROLES.path(name=reader.READER)) is None
    assert clusters.host.get_if_exists(NAMESPACES.path(name=HOST_NS)) is not None, \
        "the host's namespace is never join's"
    # unjoin deletes the Secret the token is bound to: the token stops working once the API server's cache of
    # authenticated tokens (10 s) lets go of it
    wait_for(lambda: as_reader(clusters, "west", "/api/v1/services", config) == 401, 30,
             "the unjoined member refusing the token (401)", interval=0.5)

    west.delete(CONFIG_MAPS.path(ns, "team-settings"))
    join(clusters, "west", ns)
    assert verbs(unjoin(clusters, "west", ns))[("member", "Namespace", ns)] == "deleted"  # only join's objects in it
    # these members run no namespace controller: a deleted namespace stays Terminating
    gone = west.get_if_exists(NAMESPACES.path(name=ns))
    assert gone is None or gone["metadata"].get("deletionTimestamp"), "the namespace join made must be deleted"


def test_a_reader_installed_by_the_chart_is_used_as_is_and_survives_unjoin(clusters: Clusters, ns: str) -> None:
    member = clusters.members["east"]
    chart_labels = {"app.kubernetes.io/managed-by": "Helm"}
    ensure_namespace(clusters.fleet.members["east"].api_client(), ns)
    for resource, obj in ((SERVICE_ACCOUNTS, SERVICE_ACCOUNTS.manifest(reader.READER, ns)),
                          (CLUSTER_ROLES, reader.cluster_role()),
                          (CLUSTER_ROLE_BINDINGS, reader.cluster_role_binding(ns))):
        obj["metadata"]["labels"] = chart_labels
        member.create(resource.path(obj["metadata"].get("namespace", "")), obj)
    try:
        joined = verbs(join(clusters, "east", ns))
        assert joined[("member", "ClusterRole", reader.READER)] == "kept"
        assert joined[("member", "ServiceAccount", reader.READER)] == "kept"
        assert as_reader(clusters, "east", "/api/v1/services") == 200

        left = verbs(unjoin(clusters, "east", ns))
        assert left[("member", "ClusterRole", reader.READER)] == "left"
        assert left[("member", "ServiceAccount", reader.READER)] == "left"
        assert left[("member", "Namespace", ns)] == "left"
        assert member.get(CLUSTER_ROLES.path(name=reader.READER))["metadata"]["labels"] == chart_labels
        assert clusters.host.get_if_exists(SECRETS.path(HOST_NS, "member-east")) is None
    finally:
        for resource, name in ((CLUSTER_ROLE_BINDINGS, reader.READER), (CLUSTER_ROLES, reader.READER)):
            member.delete(resource.path("", name))


def test_join_refuses_before_writing_anything_when_what_is_in_the_way_is_not_its_own(
        clusters: Clusters, ns: str) -> None:
    member, host = clusters.members["east"], clusters.host
    narrow = reader.cluster_role()
    narrow["rules"] = narrow["rules"][:1]  # an operator's role under the reader's name, granting services only
    member.create(CLUSTER_ROLES.path(), narrow)
    operators = MEMBER_CLUSTERS.manifest("east", spec={"region": "east", "zone": "east-1a", "kubeconfigSecretRef": {
        "namespace": HOST_NS, "name": "hand-made"}})
    host.create(MEMBER_CLUSTERS.path(), operators)
    try:
        done = fleetdns(clusters, "join", "east", "--host-context", "host", "--region", "east", "--namespace", ns)
        assert done.returncode == 1 and done.stdout == ""
        assert "MemberCluster east was not made by `fleetdns join`" in done.stderr
        assert "list discovery.k8s.io/endpointslices" in done.stderr  # what the narrow role lacks, named
        assert member.get_if_exists(NAMESPACES.path(name=ns)) is None, "a refusal must write nothing"
        assert host.get(MEMBER_CLUSTERS.path(name="east"))["spec"]["kubeconfigSecretRef"]["name"] == "hand-made"

        done = fleetdns(clusters, "unjoin", "east", "--host-context", "host", "--namespace", ns)
        assert done.returncode == 0
        assert host.get_if_exists(MEMBER_CLUSTERS.path(name="east")) is not None, \
            "unjoin deleted an operator's MemberCluster"
        assert member.get_if_exists(CLUSTER_ROLES.path(name=reader.READER)) is not None
    finally:
        host.delete(MEMBER_CLUSTERS.path(name="east"))
        member.delete(CLUSTER_ROLES.path(name=reader.READER))


@pytest.mark.parametrize(("args", "message"), [
    (["join", "nowhere", "--host-context", "host", "--region", "east"], "no context 'nowhere'"),
    (["join", "east", "--host-context", "host", "--region", "East_1"], "--region 'East_1': must be a DNS label"),
    (["join", "east", "--host-context", "host", "--region", "east", "--location", "95,8"], "latitude must be within"),
    (["join", "east", "--host-context", "host", "--region", "east", "--location", "north"], "give LAT,LON"),
    (["unjoin", "east", "--host-context", "nohost"], "its contexts: host, east, west"),
])
def test_bad_usage_says_what_to_fix_and_exits_2_without_touching_a_cluster(
        clusters: Clusters, args: list[str], message: str) -> None:
    done = fleetdns(clusters, *args)
    assert (done.returncode, done.stdout) == (2, "")
    assert message in done.stderr


def test_unjoin_of_an_unreachable_member_deletes_the_hosts_part_says_what_is_left_and_exits_1(
        clusters: Clusters, ns: str) -> None:
    join(clusters, "east", ns)
    clusters.fleet.members["east"].stop_apiserver()
    try:
        done = fleetdns(clusters, "unjoin", "east", "--host-context", "host", "--namespace", ns)
        assert done.returncode == 1
        assert "unjoin stopped part way" in done.stdout and "deleted" in done.stdout
        assert "an API server did not answer" in done.stderr
        assert clusters.host.get_if_exists(MEMBER_CLUSTERS.path(name="east")) is None
    finally:
        clusters.fleet.members["east"].restart()
    assert verbs(unjoin(clusters, "east", ns))[("member", "ClusterRole", reader.READER)] == "deleted"
