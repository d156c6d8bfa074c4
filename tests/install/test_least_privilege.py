"""Least privilege, proved against real kube-apiservers with the chart installed by the real helm: each identity the
chart ships may do exactly what its table below says (docs/install.md shows the same tables) and nothing else, asked
of the API server for every resource it serves, every verb, in each namespace and cluster-wide; and the processes
that run under those identities (the aggregator with its self-service generator, a region's prober, a region's
ExternalDNS and webhook) do their jobs with them and are never refused a request (the servers' audit logs), while no
token of theirs shows up in a log, an API object or a metrics page.

One fleet for the module: the host (release ``fleetdns-host``: host.regions [east]) and ``east``, a member and a
region (releases ``fleetdns-member`` and ``fleetdns-region``), each API server logging its ServiceAccounts' requests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml
from kubernetes import client

from fleetdns.apipaths import (
    DISCOVERY_RULES,
    DNS_ENDPOINTS,
    DNS_VIEWS,
    DOMAINS,
    EVENTS,
    HEALTH_REPORTS,
    LEASES,
    MEMBER_CLUSTERS,
    NAMESPACES,
    PODS,
    SERVICE_DNS_RECORDS,
    SERVICES,
)
from fleetdns.kubeapi import KubeClient, KubeError, host_api_client
from rig.aggregator import AggregatorProcess, client_for
from rig.apiserver import KubeAPIServer
from rig.binaries import REPO_ROOT
from rig.coredns import dns_answers
from rig.fleet import Fleet
from rig.helm import NAMESPACE, helm, install
from rig.ports import free_port
from rig.prober import ProberProcess
from rig.process import stop_together
from rig.region import Region
from rig.waiting import wait_for
from rig.workloads import ensure_namespace, register_member, set_endpoints, set_load_balancer_status
from tests.support import secrets as secret_sweep
from tests.support.access import (
    ALL_NAMESPACES,
    NON_RESOURCE,
    Access,
    Grant,
    Kind,
    Rule,
    allowed,
    everything,
    review,
    rules_review,
    served_kinds,
    spread,
)
from tests.support.soak import SECURITY, Tally, times

pytestmark = [pytest.mark.fault, pytest.mark.apiserver, pytest.mark.etcd, pytest.mark.coredns, pytest.mark.externaldns]

ZONE = "gslb.example.com"
OTHER = "rbac-elsewhere"  # a namespace nothing binds a role in: the rules there are the cluster-wide ones
APPS = "apps"  # where the app teams' objects live, on the host and on east
FLEETDNS, EXTERNALDNS = "fleetdns.io", "externaldns.k8s.io"
INTENTS = ("servicednsrecords", "ingressdnsrecords", "gatewaydnsrecords", "routednsrecords")
READ = ("get", "list", "watch")
GATEWAY_KINDS = ("gateways", "httproutes", "grpcroutes", "tlsroutes", "tcproutes", "udproutes")


@dataclass(frozen=True)
class Identity:
    """A ServiceAccount the chart ships (or, for the parent zone's ExternalDNS, the one the guide binds to the
    chart's role), on the cluster where it has its permissions, with what it may do there beyond ``EVERYONE``."""

    title: str
    cluster: str  # "host" or "east"
    account: str  # in NAMESPACE
    grants: tuple[Grant, ...]


# What Kubernetes' default roles give every authenticated identity (system:basic-user, system:discovery,
# system:public-info-viewer, system:service-account-issuer-discovery): part of each identity's access.
EVERYONE = (
    Grant("authorization.k8s.io", ("selfsubjectaccessreviews", "selfsubjectrulesreviews"), ("create",)),
    Grant("authentication.k8s.io", ("selfsubjectreviews",), ("create",)),
    Grant(NON_RESOURCE, ("/api", "/apis", "/healthz", "/livez", "/readyz", "/version", "/openapi/v2", "/openapi/v3",
                         "/.well-known/openid-configuration", "/openid/v1/jwks"), ("get",)),
)

IDENTITIES = (
    Identity("the aggregator", "host", "fleetdns-aggregator", (
        Grant(FLEETDNS, INTENTS, (*READ, "create", "patch", "delete")),  # create/patch/delete: the generated ones
        Grant(FLEETDNS, ("domains", "memberclusters", "dnsviews", "discoveryrules", "healthreports"), READ),
        Grant(FLEETDNS, tuple(f"{kind}/status" for kind in (*INTENTS, "domains", "memberclusters", "dnsviews",
                                                            "discoveryrules")), ("patch",)),
        Grant(EXTERNALDNS, ("dnsendpoints",), (*READ, "create", "patch", "delete")),
        Grant("", ("namespaces",), READ),  # the Domains' namespaceSelectors
        Grant("", ("events",), ("create", "get", "update")),
        Grant("", ("secrets",), ("get",), NAMESPACE),  # the members' kubeconfigs
        Grant("coordination.k8s.io", ("leases",), (*READ, "create", "update"), NAMESPACE),  # its own, the probers'
    )),
    Identity("a region's prober", "host", "fleetdns-prober-east", (
        Grant(FLEETDNS, INTENTS, READ),
        Grant(FLEETDNS, ("healthreports",), (*READ, "create", "update", "delete")),
        Grant("coordination.k8s.io", ("leases",), ("get", "create", "update"), NAMESPACE),
    )),
    Identity("a region's ExternalDNS and webhook", "host", "fleetdns-publisher-east", (
        Grant(EXTERNALDNS, ("dnsendpoints",), READ),
        Grant(EXTERNALDNS, ("dnsendpoints/status",), ("update",)),
        Grant(FLEETDNS, ("dnsviews",), READ),
    )),
    Identity("the parent zone's ExternalDNS, bound to fleetdns-parent-publisher", "host", "parent-external-dns", (
        Grant(EXTERNALDNS, ("dnsendpoints",), READ),
        Grant(EXTERNALDNS, ("dnsendpoints/status",), ("update",)),
    )),
    Identity("the aggregator, on a member", "east", "fleetdns-aggregator-reader", (
        Grant("", ("services",), ("list", "watch")),
        Grant("discovery.k8s.io", ("endpointslices",), ("list", "watch")),
        Grant("", ("pods",), ("list",)),  # DiscoveryRules: the readiness probe of a discovered app's pods
        Grant("networking.k8s.io", ("ingresses",), ("list", "watch")),
        Grant("gateway.networking.k8s.io", GATEWAY_KINDS, ("list", "watch")),
        Grant("route.openshift.io", ("routes",), ("list", "watch")),
    )),
)
# A ServiceAccount nobody binds a role to, on each cluster: exactly EVERYONE.
NOBODY = tuple(Identity("a ServiceAccount without roles", cluster, "rbac-nobody", ()) for cluster in ("host", "east"))


@dataclass
class Installed:
    """The fleet with the releases installed, and a kubeconfig (a bound token) for each identity."""

    fleet: Fleet
    workdir: Path
    kubeconfigs: dict[str, Path] = field(default_factory=dict)  # by account

    def server(self, cluster: str) -> KubeAPIServer:
        return self.fleet.host if cluster == "host" else self.fleet.members[cluster]

    def admin(self, cluster: str) -> KubeClient:
        return client_for(self.server(cluster))

    def as_identity(self, account: str) -> KubeClient:
        return KubeClient(host_api_client(str(self.kubeconfigs[account])))

    def tokens(self) -> dict[str, str]:
        """Every identity's token, by a label for messages."""
        return {f"{account}'s token": yaml.safe_load(path.read_text())["users"][0]["user"]["token"]
                for account, path in self.kubeconfigs.items()}


RELEASES = {"host": {"fleetdns-host": {"host": {"enabled": True, "regions": ["east"]}}},
            "east": {"fleetdns-member": {"member": {"enabled": True}},
                     "fleetdns-region": {"region": {"enabled": True, "name": "east", "zone": ZONE}}}}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    workdir = tmp_path_factory.mktemp("least-privilege")
    with Fleet(("east",), workdir / "clusters", audit=True) as fleet:
        world = Installed(fleet, workdir)

        def install_releases(cluster: str) -> None:
            for release, values in RELEASES[cluster].items():
                install(world.server(cluster), release, values)
            admin = world.server(cluster).api_client()
            for namespace in (OTHER, APPS):
                ensure_namespace(admin, namespace)
            world.admin(cluster).create(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
                                        {"apiVersion": "v1", "kind": "ServiceAccount",
                                         "metadata": {"name": "rbac-nobody"}})

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(install_releases, ("host", "east")))
        host = world.admin("host")
        # the parent zone's ExternalDNS, as docs/install.md §4 binds it
        host.create(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
                    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "parent-external-dns"}})
        host.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "parent-external-dns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "fleetdns-parent-publisher"},
            "subjects": [{"kind": "ServiceAccount", "name": "parent-external-dns", "namespace": NAMESPACE}]})
        for identity in (*IDENTITIES, *NOBODY):
            path = workdir / f"{identity.cluster}-{identity.account}.kubeconfig"
            world.kubeconfigs[f"{identity.cluster}/{identity.account}"] = \
                world.server(identity.cluster).service_account_kubeconfig(NAMESPACE, identity.account, path)
        wait_for(lambda: _crds_established(host), 60, what="the host release's CRDs established")
        yield world


def _crds_established(host: KubeClient) -> bool:
    crds = host.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions").get("items") or []
    return len(crds) >= 10 and all(any(c["type"] == "Established" and c["status"] == "True"
                                       for c in (crd.get("status") or {}).get("conditions") or []) for crd in crds)


def key(identity: Identity) -> str:
    return f"{identity.cluster}/{identity.account}"


# --- what the releases ship ------------------------------------------------------------------------------------------

RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")


def test_the_releases_ship_exactly_these_identities_and_every_pod_runs_as_one_or_without_a_token(
        installed: Installed) -> None:
    """What helm installed (``helm get manifest``): the ServiceAccounts, roles and bindings are those the tables
    cover; every binding names one of those identities; a workload runs as one of them or mounts no token."""
    shipped, bound, workloads = set(), set(), {}
    for cluster, releases in RELEASES.items():
        for release in releases:
            run = helm("get", "manifest", release, f"--kubeconfig={installed.server(cluster).kubeconfig}",
                       "--namespace", NAMESPACE)
            assert run.returncode == 0, run.stderr
            for doc in (d for d in yaml.safe_load_all(run.stdout) if d):
                name = f"{cluster} {doc['kind']} {doc['metadata']['name']}"
                if doc["kind"] in RBAC_KINDS:
                    shipped.add(name)
                if doc["kind"].endswith("Binding"):
                    bound |= {(cluster, s["kind"], s.get("namespace"), s["name"]) for s in doc["subjects"]}
                if doc["kind"] in ("Deployment", "StatefulSet"):
                    pod = doc["spec"]["template"]["spec"]
                    workloads[name] = pod.get("serviceAccountName") if pod.get(
                        "automountServiceAccountToken", True) else None
    assert shipped == {
        "host ServiceAccount fleetdns-aggregator", "host ClusterRole fleetdns-aggregator",
        "host ClusterRoleBinding fleetdns-aggregator", "host Role fleetdns-aggregator",
        "host RoleBinding fleetdns-aggregator",
        "host ServiceAccount fleetdns-prober-east", "host ClusterRole fleetdns-prober",
        "host ClusterRoleBinding fleetdns-prober-east", "host Role fleetdns-prober",
        "host RoleBinding fleetdns-prober-east",
        "host ServiceAccount fleetdns-publisher-east", "host ClusterRole fleetdns-publisher",
        "host ClusterRoleBinding fleetdns-publisher-east",
        "host ClusterRole fleetdns-parent-publisher",  # bound by the operator (the guide), to parent-external-dns
        "east ServiceAccount fleetdns-aggregator-reader", "east ClusterRole fleetdns-aggregator-reader",
        "east ClusterRoleBinding fleetdns-aggregator-reader",
    }, "a new identity or role: give it a table here and in docs/install.md"
    covered = {(identity.cluster, "ServiceAccount", NAMESPACE, identity.account) for identity in IDENTITIES}
    assert bound <= covered, bound - covered
    assert workloads == {"host Deployment fleetdns-aggregator": "fleetdns-aggregator",
                         "east StatefulSet fleetdns-etcd": None, "east Deployment fleetdns-coredns": None,
                         "east Deployment fleetdns-publisher": None, "east Deployment fleetdns-prober": None}


# --- exactly the tables, asked of the API servers ---------------------------------------------------------------------


@dataclass
class Verdict:
    """One identity's access as the server answers it, against its table."""

    identity: Identity
    granted: set[Access]  # the server's answer (rules reviews, expanded over what it serves)
    expected: set[Access]  # the table's (with EVERYONE)
    disagreements: list[str]  # where the authorizer's own decision (access reviews) differs from ``granted``
    questions: int  # every verb on every resource, in each namespace and cluster-wide, and the URLs
    asked: int  # access and rules reviews


def verdict(installed: Installed, identity: Identity, kinds: set[Kind], namespaces: list[str],
            sample: int) -> Verdict:
    """Rules in every namespace (the cluster-wide ones from OTHER, where nothing binds a role), expanded over every
    question; then access reviews for every allowed question in NAMESPACE, OTHER and cluster-wide, and ``sample``
    denied ones (half of them on kinds the identity may touch at all, or on Secrets and RBAC itself)."""
    api = installed.as_identity(key(identity))
    rules: dict[str, list[Rule]] = {namespace: rules_review(api, namespace) for namespace in namespaces}
    rules[ALL_NAMESPACES] = rules[OTHER]
    named = {kind for scope_rules in rules.values() for rule in scope_rules for kind in rule.named_kinds()}
    named |= {(grant.group, resource) for grant in identity.grants if grant.group != NON_RESOURCE
              for resource in grant.resources}
    questions = everything(kinds, named, namespaces)
    granted = allowed(rules, questions)
    expected = {access for grant in (*EVERYONE, *identity.grants) for access in grant.accesses(kinds, namespaces)}
    focus = (NAMESPACE, OTHER, ALL_NAMESPACES)
    touched = {access.kind for access in granted} | {("", "secrets"), ("rbac.authorization.k8s.io", "clusterroles"),
                                                     ("rbac.authorization.k8s.io", "roles"), ("", "serviceaccounts")}
    denied = questions - granted
    near = {access for access in denied if access.kind in touched and access.scope in focus}
    to_ask = questions if sample >= len(questions) else {access for access in granted if access.scope in focus} | set(
        spread(near, sample // 2)) | set(spread(denied - near, sample - min(len(near), sample // 2)))
    with ThreadPoolExecutor(4) as pool:
        answers = dict(zip(sorted(to_ask), pool.map(lambda access: review(api, access), sorted(to_ask)),
                           strict=True))
    disagreements = [f"{access}: the access review says {'yes' if said else 'no'}"
                     for access, said in answers.items() if said != (access in granted)]
    return Verdict(identity, granted, expected, disagreements, len(questions), len(namespaces) + len(answers))


def test_each_identity_may_do_exactly_what_its_table_says_and_nothing_else(installed: Installed, tally) -> None:
    """For each identity, every question (each verb on each resource the server serves, in each namespace and
    cluster-wide, and the URLs) answered by the server: the allowed ones are exactly its table and EVERYONE's; a
    ServiceAccount without roles gets EVERYONE's alone. Access reviews confirm the answers they are asked about."""
    seen: Tally = tally("RBAC: each identity the chart ships may do exactly its table, asked of the API servers",
                        SECURITY)
    sample = times(60, 100_000)  # denied questions an access review confirms (FLEETDNS_SOAK=full: every question)
    context = {}
    for cluster in ("host", "east"):
        admin = installed.admin(cluster)
        assert admin.get(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{OTHER}/rolebindings")["items"] == []
        namespaces = sorted(item["metadata"]["name"] for item in admin.get(NAMESPACES.path())["items"])
        context[cluster] = (served_kinds(admin), namespaces)
    identities = (*IDENTITIES, *NOBODY)
    with ThreadPoolExecutor(3) as pool:
        verdicts = list(pool.map(lambda identity: verdict(installed, identity, *context[identity.cluster], sample),
                                 identities))
    problems = []
    for found in verdicts:
        who = f"{found.identity.title} ({key(found.identity)})"
        problems += [f"{who} may {access}, which its table does not grant" for access in
                     sorted(found.granted - found.expected)]
        problems += [f"{who} may not {access}, which its table grants" for access in
                     sorted(found.expected - found.granted)]
        problems += [f"{who}: {text}" for text in found.disagreements]
        seen.injected += found.asked
        seen.note(f"{key(found.identity)}: {len(found.granted)} of {found.questions} allowed")
    seen.lost = len(problems)
    assert problems == [], "\n".join(problems)


# --- the tables are docs/install.md's --------------------------------------------------------------------------------

GUIDE = REPO_ROOT / "docs" / "install.md"
TABLE_HEADER = "| identity | cluster | where | API group | resources | verbs |"


def documented_rows() -> list[tuple[str, ...]]:
    """The rows of docs/install.md's table of identities (under TABLE_HEADER)."""
    lines = GUIDE.read_text().splitlines()
    start = lines.index(TABLE_HEADER) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(tuple(cell.strip() for cell in line.strip("|").split("|")))
    return rows


def table_rows() -> list[tuple[str, ...]]:
    rows = [("every identity (Kubernetes' defaults)", "both", *grant.row()) for grant in EVERYONE]
    for identity in IDENTITIES:
        name = re.sub(r"-east\b", "-<region>", identity.account)
        rows += [(f"{name} ({identity.title})", identity.cluster.replace("east", "member"), *grant.row())
                 for grant in identity.grants]
    return rows


@pytest.mark.unit
def test_install_md_shows_each_identitys_permissions_as_this_test_checks_them() -> None:
    assert documented_rows() == table_rows(), "\n".join(
        "| " + " | ".join(row) + " |" for row in table_rows())


# --- the processes do their jobs under these identities ---------------------------------------------------------------


def test_the_processes_do_their_jobs_under_their_identities_are_never_refused_and_show_no_token(
        installed: Installed, tally) -> None:
    """The aggregator (its ServiceAccount on the host, the member reader's token for east) publishes an intent's
    DNSEndpoint, writes statuses and Events, generates intents from an annotated Service and from a DiscoveryRule
    (the pods' readiness probe) and the delegation; the prober (its region identity) writes its HealthReport and
    Lease; the region's ExternalDNS and webhook (the publisher identity) publish into CoreDNS and copy the DNSViews.
    Then: no request by any of them was refused (the audit logs), no log says "forbidden", and no token is in any
    log, API object (Secrets aside) or metrics page."""
    seen: Tally = tally("RBAC: the processes' requests under the shipped identities, none refused; no token shown",
                        SECURITY)
    fleet, workdir, host = installed.fleet, installed.workdir, installed.admin("host")
    east_api, east = fleet.members["east"].api_client(), installed.admin("east")
    register_member(fleet.host.api_client(), "east", "east", "east-1a",
                    installed.kubeconfigs["east/fleetdns-aggregator-reader"].read_text())
    host.create(DOMAINS.path(APPS), DOMAINS.manifest("fleet", spec={
        "domain": ZONE, "nameServer": f"ns1.{ZONE}",
        "delegation": {"ttl": 300, "nameservers": [
            {"name": "ns-east", "member": "east", "service": f"{NAMESPACE}/fleetdns-coredns"}]}}))
    set_load_balancer_status(east_api, NAMESPACE, "fleetdns-coredns", ips=["192.0.2.53"])
    aggregator = AggregatorProcess(installed.kubeconfigs["host/fleetdns-aggregator"], [
        f"--leader-election-namespace={NAMESPACE}", "--self-service-domain=fleet"], workdir / "aggregator")
    region = Region("east", ZONE, installed.kubeconfigs["host/fleetdns-publisher-east"], workdir / "region")
    prober = ProberProcess("east", installed.kubeconfigs["host/fleetdns-prober-east"], workdir / "prober")
    try:  # started from this thread: a component dies with the thread that started it (rig/process.py)
        prober.start(wait_ready=False)
        aggregator.start()
        region.start()
        prober.wait_ready()
        refused_port = free_port()  # nothing listens: the prober reports the app Down
        run_app(east_api, east, "web", "127.0.0.1", {})
        host.create(SERVICE_DNS_RECORDS.path(APPS), SERVICE_DNS_RECORDS.manifest("web", spec={
            "domainRef": "fleet", "recordTTL": 5,
            "healthCheck": {"httpGet": {"port": refused_port, "path": "/"}, "periodSeconds": 1}}))
        run_app(east_api, east, "annotated", "192.0.2.10", {"annotations": {"fleetdns.io/global": "true"}})
        host.create(DISCOVERY_RULES.path(), DISCOVERY_RULES.manifest("rbac-discovered", spec={
            "domainRef": "fleet", "selector": {"matchLabels": {"fleetdns.io/test": "rbac"}}}))
        run_app(east_api, east, "discovered", "192.0.2.11", {"labels": {"fleetdns.io/test": "rbac"}},
                probe={"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5})
        host.create(DNS_VIEWS.path(), DNS_VIEWS.manifest("office", spec={"clientCIDRs": ["10.9.0.0/16"]}))
        try:
            jobs_done(installed, region, prober)
        except AssertionError as error:
            raise AssertionError(f"{error}\nrefused meanwhile: {refused_requests(fleet)}") from None

        refused = refused_requests(fleet)
        seen.injected = sum(len(server.audited_requests()) for server in fleet.servers)  # every request, checked
        assert refused == [], "\n".join(refused)
        logs = [aggregator.log_path, prober.log_path, *sorted((workdir / "region").rglob("*.log"))]
        assert [path.name for path in logs if "forbidden" in path.read_text().lower()] == []
        seen.note("grants this run did not use: " + "; ".join(unused_grants(installed)))

        credentials = installed.tokens() | {f"the {s.name} API server's admin token": s.admin_token
                                            for s in fleet.servers}
        assert region.webhook is not None and region.coredns is not None and region.externaldns is not None
        pages = {"aggregator /metrics": aggregator.metrics(), "prober /metrics": prober.metrics(),
                 "webhook /metrics": requests.get(region.webhook.client.health_url + "/metrics", timeout=5).text,
                 "sidecar /metrics": requests.get(region.coredns.sidecar.health_url + "/metrics", timeout=5).text,
                 "external-dns /metrics": requests.get(
                     f"http://127.0.0.1:{region.externaldns.metrics_port}/metrics", timeout=5).text}
        found = (secret_sweep.in_files(sorted(workdir.rglob("*.log")), credentials)
                 + secret_sweep.in_api_objects({"host": host, "east": east}, credentials)
                 + secret_sweep.in_pages(pages, credentials))
        seen.lost = len(refused) + len(found)
        assert found == [], "\n".join(found)
    finally:
        stop_together([aggregator.stop, region.stop, prober.stop])


def run_app(api: client.ApiClient, east: KubeClient, name: str, vip: str, metadata: dict,
            probe: dict | None = None) -> None:
    """A LoadBalancer Service on east with its VIP and a ready endpoint (``metadata``: its labels or annotations);
    with ``probe``, a pod behind it with that readiness probe on its port ``http``."""
    if probe is not None:
        pod = PODS.manifest(f"{name}-0", APPS, spec={"containers": [{
            "name": "app", "image": "registry.example/app:1", "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": probe}]})
        pod["metadata"]["labels"] = {"app": name}
        east.create(PODS.path(APPS), pod)
    body = SERVICES.manifest(name, APPS, spec={"type": "LoadBalancer", "selector": {"app": name}, "ports": [
        {"name": "web", "port": 80, "targetPort": "http" if probe else 80, "protocol": "TCP"}]})
    body["metadata"].update(metadata)
    east.create(SERVICES.path(APPS), body)
    set_load_balancer_status(api, APPS, name, ips=[vip])
    set_endpoints(api, APPS, name, ["10.1.0.1"], ready=True)


def jobs_done(installed: Installed, region: Region, prober: ProberProcess) -> None:
    """Wait for what each process's job leaves on the servers and in the region's DNS."""
    host = installed.admin("host")

    def generated(name: str, origin: str) -> bool:
        labels = (_get(host, SERVICE_DNS_RECORDS.path(APPS, name)).get("metadata") or {}).get("labels") or {}
        return labels.get("fleetdns.io/generated-by") == origin

    def condition(item: dict, kind: str) -> str:
        return next((c["status"] for c in (item.get("status") or {}).get("conditions") or [] if c["type"] == kind),
                    "")

    def observed(item: dict) -> bool:
        """ExternalDNS wrote the generation it published into the status."""
        generation = (item.get("metadata") or {}).get("generation")
        return generation is not None and (item.get("status") or {}).get("observedGeneration") == generation

    coredns = region.coredns
    assert coredns is not None
    waits = {
        "east Connected (MemberCluster status)": lambda: (_get(host, MEMBER_CLUSTERS.path(name="east")).get(
            "status") or {}).get("state") == "Connected",
        "the aggregator holding its Lease": lambda: _get(host, LEASES.path(NAMESPACE, "fleetdns-aggregator")).get(
            "spec", {}).get("holderIdentity") == "aggregator",
        "web's DNSEndpoint and status": lambda: _get(host, DNS_ENDPOINTS.path(APPS, "service-web")) and condition(
            _get(host, SERVICE_DNS_RECORDS.path(APPS, "web")), "Ready"),
        "an intent generated from the annotations": lambda: generated("annotated", "annotations"),
        "an intent generated by the DiscoveryRule, checked like its pod": lambda: generated("discovered", "discovery")
        and (_get(host, SERVICE_DNS_RECORDS.path(APPS, "discovered"))["spec"].get("healthCheck") or {}).get(
            "httpGet", {}).get("path") == "/ready",
        "the DiscoveryRule's status": lambda: (_get(host, DISCOVERY_RULES.path(name="rbac-discovered")).get(
            "status") or {}).get("discovered") == 1,
        "the DNSView's status": lambda: bool(_get(host, DNS_VIEWS.path(name="office")).get("status")),
        "the Domain Delegated": lambda: condition(_get(host, DOMAINS.path(APPS, "fleet")), "Delegated") == "True",
        "Events from the aggregator": lambda: bool(host.get(EVENTS.path(APPS)).get("items")),
        "the prober's HealthReport with web Down": lambda: any(
            entry["intent"] == "ServiceDNSRecord/web" for report in host.get(HEALTH_REPORTS.path(APPS))["items"]
            for entry in (report.get("status") or {}).get("down") or []),
        "the prober holding its Lease": lambda: _get(host, LEASES.path(NAMESPACE, "fleetdns-prober-east")).get(
            "spec", {}).get("holderIdentity") == prober.name,
        "CoreDNS answering the annotated app": lambda: dns_answers(
            coredns.host, coredns.port, f"annotated.{APPS}.fleet.svc.{ZONE}", "A") == {"192.0.2.10"},
        "ExternalDNS's status on the DNSEndpoint": lambda: observed(_get(host, DNS_ENDPOINTS.path(
            APPS, "service-annotated"))),
        "the webhook's copy of the DNSView in CoreDNS's Corefile": lambda: coredns.corefile_views() == ["office"],
    }
    for what, done in waits.items():
        wait_for(done, 60, what=what)


def refused_requests(fleet: Fleet) -> list[str]:
    """Every request a ServiceAccount made that RBAC refused (403), by server (the audit logs)."""
    return [f"{server.name}: {request}" for server in fleet.servers for request in server.audited_requests()
            if request.refused]


def _get(api: KubeClient, path: str) -> dict:
    """The object, or {} while there is none."""
    try:
        return api.get(path)
    except KubeError as error:
        if error.status == 404:
            return {}
        raise


def unused_grants(installed: Installed) -> list[str]:
    """Per identity, the (verb, resource) its table grants that no request of this run used (audit logs)."""
    used: dict[str, set[tuple[str, str, str]]] = {}
    for server in installed.fleet.servers:
        cluster = "host" if server is installed.fleet.host else server.name
        for request in server.audited_requests():
            account = request.user.rpartition(":")[2]
            used.setdefault(f"{cluster}/{account}", set()).add((request.group, request.resource, request.verb))
    out = []
    for identity in IDENTITIES:
        granted = {(grant.group, resource, verb) for grant in identity.grants for resource in grant.resources
                   for verb in grant.verbs}
        idle = sorted(granted - used.get(key(identity), set()))
        if idle:
            out.append(f"{identity.account}: " + ", ".join(
                f"{verb} {resource}" + (f".{group}" if group else "") for group, resource, verb in idle))
    return out
