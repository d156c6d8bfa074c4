"""The Helm chart (charts/fleetdns/), checked with the real helm binary: it lints, renders each role for several value
sets, refuses bad values naming them, runs only our console scripts (with flags they accept) and the known
third-party binaries, agrees with manifests/ and coredns/Corefile, and a real kube-apiserver accepts and installs it."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli import reader
from fleetdns.dnsview import VIEWS_KEY_PREFIX
from rig import KubeAPIServer
from rig.binaries import REPO_ROOT, binary
from rig.workloads import ensure_namespace

CHART = REPO_ROOT / "charts" / "fleetdns"
NAMESPACE = "fleetdns-system"

HOST = {"host": {"enabled": True, "regions": ["east", "west"]}}
REGION = {"region": {"enabled": True, "name": "east", "zone": "gslb.example.com"}}
MEMBER = {"member": {"enabled": True, "tokenSecret": True}}


def _region(**changes: Any) -> dict[str, Any]:
    return {"region": {**REGION["region"], **changes}}


VALUE_SETS: dict[str, dict[str, Any]] = {
    "nothing": {},
    "host": HOST,
    "host-one-replica-no-crds": {"host": {"enabled": True, "aggregator": {"replicas": 1},
                                          "crds": {"install": False}}},
    "region": REGION,
    "region-one-etcd-member": _region(etcd={"replicas": 1}),
    "region-five-etcd-members-hard-anti-affinity": _region(etcd={"replicas": 5},
                                                           coredns={"replicas": 3, "antiAffinity": "hard"}),
    "region-without-tls": _region(etcd={"tls": {"enabled": False}}),
    "region-geoip": _region(geoip={"secretName": "geoip"}),
    "region-no-prober-no-networkpolicy": {**_region(prober={"enabled": False}), "networkPolicy": {"enabled": False}},
    "member": MEMBER,
    "every-role": {**HOST, **REGION, **MEMBER},
}

# The console scripts' own parsers: the chart's flags must be theirs (pyproject.toml [project.scripts] lists them).
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {}


def _parsers() -> dict[str, Callable[[], argparse.ArgumentParser]]:
    if not PARSERS:
        from aggregator.settings import build_parser as aggregator
        from cli.__main__ import parser as operator_command
        from prober.settings import build_parser as prober
        from serving.corefile import build_parser as corefile
        from serving.zonefiles import build_parser as zonefiles
        from webhook_provider.settings import build_parser as webhook

        PARSERS.update({"fleetdns-aggregator": aggregator, "fleetdns-webhook": webhook,
                        "fleetdns-zonefiles": zonefiles, "fleetdns-corefile": corefile, "fleetdns-prober": prober,
                        "fleetdns": operator_command, "kubectl-fleetdns": operator_command})
    return PARSERS


THIRD_PARTY = {"etcd", "coredns", "external-dns"}  # the images' own binaries, named by their path in the image


def program(container: dict[str, Any]) -> str:
    """What a container runs: the command's file name (console scripts by name, image binaries by path)."""
    return Path(container["command"][0]).name


def console_scripts() -> set[str]:
    return set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"])


@pytest.fixture(scope="module")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Helm's config, cache and data in a temporary directory: the tests never touch the user's."""
    home = tmp_path_factory.mktemp("helm-home")
    return dict(os.environ, HELM_CONFIG_HOME=str(home / "config"), HELM_CACHE_HOME=str(home / "cache"),
                HELM_DATA_HOME=str(home / "data"))


def helm(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    run = subprocess.run([binary("helm"), *args], capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert run.returncode == 0, f"helm {' '.join(args)}\n{run.stdout}\n{run.stderr}"
    return run


def values_file(tmp_path: Path, values: dict[str, Any], name: str = "values") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def values_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("values")
    return {name: values_file(directory, values, name) for name, values in VALUE_SETS.items()}


@pytest.fixture(scope="module")
def rendered(helm_env: dict[str, str], values_files: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """``helm template`` of every value set, parsed."""
    out = {}
    for name, path in values_files.items():
        text = helm(helm_env, "template", "fleetdns", str(CHART), "--namespace", NAMESPACE, "-f", str(path)).stdout
        out[name] = [doc for doc in yaml.safe_load_all(text) if doc]
    return out


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = find(docs, kind, name)
    return found


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload/container, container) for every container and init container of every workload."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            spec = pod_spec(doc)
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                yield f"{doc['metadata']['name']}/{container['name']}", container


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod_spec(workload)
    (found,) = [c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == name]
    return found


def flag_values(args: list[str]) -> dict[str, str]:
    """``--flag=value`` arguments by flag (a bare ``--flag`` maps to "")."""
    return {arg.partition("=")[0]: arg.partition("=")[2] for arg in args}


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# --- lint and render --------------------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("name", ["host", "region", "member", "every-role"])
def test_helm_lint_passes_for_each_role(helm_env, values_files, name):
    run = helm(helm_env, "lint", "--strict", str(CHART), "--namespace", NAMESPACE, "-f", str(values_files[name]))
    assert "0 chart(s) failed" in run.stdout, run.stdout


@pytest.mark.unit
def test_each_role_renders_only_its_own_parts(rendered):
    def workloads(name: str) -> set[str]:
        return {f"{d['kind']}/{d['metadata']['name']}" for d in rendered[name]
                if d["kind"] in ("Deployment", "StatefulSet")}

    assert rendered["nothing"] == []
    assert workloads("host") == {"Deployment/fleetdns-aggregator"}
    assert workloads("region") == {"StatefulSet/fleetdns-etcd", "Deployment/fleetdns-coredns",
                                   "Deployment/fleetdns-publisher", "Deployment/fleetdns-prober"}
    assert workloads("member") == set()
    assert {d["kind"] for d in rendered["member"]} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret"}
    assert workloads("every-role") == workloads("host") | workloads("region")
    assert find(rendered["region"], "CustomResourceDefinition") == []
    assert find(rendered["host-one-replica-no-crds"], "CustomResourceDefinition") == []


@pytest.mark.unit
def test_the_aggregator_runs_two_replicas_with_leader_election(rendered):
    deployment = one(rendered["host"], "Deployment", "fleetdns-aggregator")
    assert deployment["spec"]["replicas"] == 2
    flags = flag_values(container(deployment, "aggregator")["args"])
    assert flags["--leader-election"] == "true"
    assert flags["--leader-election-namespace"] == NAMESPACE
    env = {e["name"]: e for e in container(deployment, "aggregator")["env"]}
    assert env["FLEETDNS_AGGREGATOR_IDENTITY"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert one(rendered["host"], "PodDisruptionBudget", "fleetdns-aggregator")["spec"]["maxUnavailable"] == 1
    assert find(rendered["host-one-replica-no-crds"], "PodDisruptionBudget") == []


@pytest.mark.unit
@pytest.mark.parametrize(("name", "members", "quorum"), [
    ("region-one-etcd-member", 1, None), ("region", 3, 2), ("region-five-etcd-members-hard-anti-affinity", 5, 3)])
def test_etcd_members_and_clients_speak_tls_and_a_quorum_is_never_disrupted(rendered, name, members, quorum):
    docs = rendered[name]
    etcd = one(docs, "StatefulSet", "fleetdns-etcd")
    assert etcd["spec"]["replicas"] == members
    flags = flag_values(container(etcd, "etcd")["args"])
    peers = flags["--initial-cluster"].split(",")
    assert [p.split("=")[0] for p in peers] == [f"fleetdns-etcd-{i}" for i in range(members)]
    assert all(p.split("=")[1].startswith("https://") for p in peers)
    for flag in ("--listen-client-urls", "--advertise-client-urls", "--listen-peer-urls",
                 "--initial-advertise-peer-urls"):
        assert flags[flag].startswith("https://"), flag
    assert {"--client-cert-auth", "--peer-client-cert-auth", "--trusted-ca-file",
            "--peer-trusted-ca-file"} <= set(flags)
    pdbs = find(docs, "PodDisruptionBudget", "fleetdns-etcd")
    assert [p["spec"]["minAvailable"] for p in pdbs] == ([quorum] if quorum else [])
    # both etcd clients list every member, over TLS with a client certificate
    for workload, name_ in (("fleetdns-publisher", "webhook"), ("fleetdns-coredns", "zonefiles")):
        client = container(one(docs, "Deployment", workload), name_)
        urls = flag_values(client["args"])["--etcd-endpoints"].split(",")
        assert urls == [f"https://fleetdns-etcd-{i}.fleetdns-etcd.{NAMESPACE}.svc:2379" for i in range(members)]
        env = {e["name"]: e["value"] for e in client["env"]}
        assert set(env) >= {"ETCD_CA_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE"}
        mounts = {m["mountPath"] for m in client["volumeMounts"]}
        assert all(str(Path(env[v]).parent) in mounts for v in ("ETCD_CA_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE"))


@pytest.mark.unit
def test_etcd_without_tls_uses_plain_http_and_mounts_no_certificates(rendered):
    docs = rendered["region-without-tls"]
    flags = flag_values(container(one(docs, "StatefulSet", "fleetdns-etcd"), "etcd")["args"])
    assert flags["--listen-client-urls"].startswith("http://")
    assert "--client-cert-auth" not in flags
    webhook = container(one(docs, "Deployment", "fleetdns-publisher"), "webhook")
    assert all(url.startswith("http://") for url in flag_values(webhook["args"])["--etcd-endpoints"].split(","))
    assert "env" not in webhook


@pytest.mark.unit
def test_coredns_serves_udp_and_tcp_53_from_spread_replicas_with_the_zone_file_sidecar(rendered):
    docs = rendered["region"]
    deployment = one(docs, "Deployment", "fleetdns-coredns")
    assert deployment["spec"]["replicas"] >= 2
    anti = pod_spec(deployment)["affinity"]["podAntiAffinity"]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"] == \
        "kubernetes.io/hostname"
    sidecar = container(deployment, "zonefiles")
    assert sidecar in pod_spec(deployment)["initContainers"] and sidecar["restartPolicy"] == "Always"
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/readyz" and "readinessProbe" not in sidecar
    flags = flag_values(sidecar["args"])
    assert flags["--default-view"] == "region-east" and flags["--zone"] == "gslb.example.com"
    coredns = container(deployment, "coredns")
    env = {e["name"]: e["value"] for e in coredns["env"]}
    assert env["FLEETDNS_ZONE_DIR"] == flags["--zone-dir"] and env["FLEETDNS_WEIGHT_FILE"] == flags["--weight-file"]
    zones = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}["zones"]
    assert {m["name"]: m["mountPath"] for m in coredns["volumeMounts"]}["zones"] == zones == flags["--zone-dir"]
    service = one(docs, "Service", "fleetdns-coredns")
    assert service["spec"]["type"] == "LoadBalancer"
    assert {(p["port"], p["protocol"]) for p in service["spec"]["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert service["spec"]["externalTrafficPolicy"] == "Local"  # views by network see the client's address
    assert one(docs, "PodDisruptionBudget", "fleetdns-coredns")["spec"]["maxUnavailable"] == 1
    hard = one(rendered["region-five-etcd-members-hard-anti-affinity"], "Deployment", "fleetdns-coredns")
    assert "requiredDuringSchedulingIgnoredDuringExecution" in pod_spec(hard)["affinity"]["podAntiAffinity"]


@pytest.mark.unit
def test_coredns_runs_the_corefile_its_sidecar_renders_from_the_hosts_dnsviews(rendered):
    """No view values and no ConfigMap: the sidecar renders the Corefile into the shared volume (before CoreDNS
    starts: it is a native sidecar whose startup probe waits for it) and CoreDNS runs that file and reloads it."""
    for name in ("region", "region-geoip"):
        docs = rendered[name]
        assert not [d for d in find(docs, "ConfigMap") if d["metadata"]["name"] == "fleetdns-coredns"]
        deployment = one(docs, "Deployment", "fleetdns-coredns")
        sidecar, coredns = container(deployment, "zonefiles"), container(deployment, "coredns")
        flags = flag_values(sidecar["args"])
        assert "--views" not in flags and flags["--views-prefix"] == VIEWS_KEY_PREFIX
        assert coredns["args"] == ["-conf", flags["--corefile"]]
        assert Path(flags["--corefile"]).parent == Path(flags["--zone-dir"])  # the volume both mount
    deployment = one(rendered["region-geoip"], "Deployment", "fleetdns-coredns")
    geoip = flag_values(container(deployment, "zonefiles")["args"])["--geoip-db"]
    for name in ("zonefiles", "coredns"):  # the path the Corefile names is there for both
        assert any(geoip.startswith(m["mountPath"] + "/") for m in container(deployment, name)["volumeMounts"])
    assert "--geoip-db" not in flag_values(
        container(one(rendered["region"], "Deployment", "fleetdns-coredns"), "zonefiles")["args"])


@pytest.mark.unit
def test_externaldns_reads_the_host_through_the_webhooks_relay_and_the_kubeconfig_secret(rendered):
    docs = rendered["region"]
    deployment = one(docs, "Deployment", "fleetdns-publisher")
    webhook = container(deployment, "webhook")
    assert webhook["restartPolicy"] == "Always"  # ready before ExternalDNS starts
    flags = flag_values(webhook["args"])
    kubeconfig = Path(flags["--host-kubeconfig"])
    mount = {m["mountPath"]: m["name"] for m in webhook["volumeMounts"]}[str(kubeconfig.parent)]
    volume = {v["name"]: v for v in pod_spec(deployment)["volumes"]}[mount]
    assert volume["secret"]["secretName"] == "fleetdns-host-publisher"
    external_dns = flag_values(container(deployment, "external-dns")["args"])
    relay = yaml.safe_load(one(docs, "ConfigMap", "fleetdns-host-relay")["data"]["kubeconfig"])
    assert relay["clusters"][0]["cluster"]["server"] == "http://" + flags["--host-relay-listen"]
    assert external_dns["--webhook-provider-url"] == "http://" + flags["--listen"]
    assert external_dns["--txt-owner-id"] == "fleetdns-east"
    assert external_dns["--domain-filter"] == flags["--domain-filter"] == "gslb.example.com"
    # the delegation DNSEndpoint (NS and glue for the parent zone) is the parent's ExternalDNS's, never a region's
    assert external_dns["--label-filter"] == flags["--dnsendpoint-label-filter"] == "fleetdns.io/publish!=parent"
    etcd = flag_values(container(one(docs, "StatefulSet", "fleetdns-etcd"), "etcd")["args"])
    assert int(flags["--etcd-max-txn-ops"]) <= int(etcd["--max-txn-ops"])


# --- security and operability of every container ------------------------------------------------------------------


@pytest.mark.unit
def test_every_container_is_non_root_read_only_limited_and_probed(rendered):
    problems = []
    for set_name, docs in rendered.items():
        for doc in docs:
            if doc["kind"] in ("Deployment", "StatefulSet"):
                pod = pod_spec(doc)["securityContext"]
                if not pod.get("runAsNonRoot") or not pod.get("runAsUser"):
                    problems.append(f"{set_name}: {doc['metadata']['name']}: pod may run as root")
        for name, c in containers(docs):
            security = c.get("securityContext", {})
            checks = {
                "runAsNonRoot": security.get("runAsNonRoot") is True,
                "readOnlyRootFilesystem": security.get("readOnlyRootFilesystem") is True,
                "allowPrivilegeEscalation false": security.get("allowPrivilegeEscalation") is False,
                "drops ALL capabilities": security.get("capabilities", {}).get("drop") == ["ALL"],
                "memory request and limit": {"requests", "limits"} <= set(c.get("resources", {}))
                and "memory" in c["resources"]["limits"],
                "liveness probe": "livenessProbe" in c,
                "readiness or startup probe": "readinessProbe" in c or "startupProbe" in c,
            }
            problems += [f"{set_name}: {name}: {what}" for what, ok in checks.items() if not ok]
    assert problems == []


@pytest.mark.unit
def test_fleetdns_processes_are_probed_on_healthz_and_readyz_at_their_health_port(rendered):
    for name, c in containers(rendered["every-role"]):
        if program(c) not in console_scripts():
            continue
        port = {p["name"]: p["containerPort"] for p in c["ports"]}["health"]
        assert flag_values(c["args"])["--health-listen"] == f"0.0.0.0:{port}", name
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}, name
        ready = c.get("readinessProbe") or c["startupProbe"]
        assert ready["httpGet"] == {"path": "/readyz", "port": "health"}, name


@pytest.mark.unit
def test_every_workload_has_a_network_policy_unless_turned_off(rendered):
    docs = rendered["every-role"]
    policies = [p["spec"]["podSelector"]["matchLabels"] for p in find(docs, "NetworkPolicy")]
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert any(sel.items() <= labels.items() for sel in policies), doc["metadata"]["name"]
    assert find(rendered["region-no-prober-no-networkpolicy"], "NetworkPolicy") == []
    assert find(rendered["region-no-prober-no-networkpolicy"], "Deployment", "fleetdns-prober") == []


# --- commands, flags and variables are the processes' own ---------------------------------------------------------


@pytest.mark.unit
def test_the_image_holds_every_console_script_and_runs_as_non_root():
    assert set(_parsers()) == console_scripts()  # a new script gets its parser listed here
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert all(script in dockerfile for script in console_scripts())
    stages = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert len(stages) >= 2  # multi-stage
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1))
    (user,) = re.findall(r"^USER\s+(\S+)$", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user)  # numeric, so runAsNonRoot can verify it


@pytest.mark.unit
def test_every_container_command_is_a_console_script_or_a_known_binary(rendered):
    scripts = console_scripts()
    commands = {}
    for docs in rendered.values():
        for name, c in containers(docs):
            commands[name] = program(c)  # every container names its command: no image entrypoint runs unseen
    assert set(commands.values()) <= scripts | THIRD_PARTY, commands
    assert {"fleetdns-aggregator", "fleetdns-webhook", "fleetdns-zonefiles", "fleetdns-prober"} <= set(
        commands.values())


def _accepted_variables(parser: argparse.ArgumentParser) -> set[str]:
    """The variables a process reads: those its --help names, and the etcd client's TLS variables."""
    named = {m for action in parser._actions for m in re.findall(r"\(env (\w+)", action.help or "")}
    etcd_tls = set(re.findall(r'"(ETCD_[A-Z_]+)"', (REPO_ROOT / "fleetdns" / "skydns" / "settings.py").read_text()))
    return named | etcd_tls


@pytest.mark.unit
def test_every_flag_and_variable_the_chart_gives_a_fleetdns_process_is_its_own(rendered):
    checked = set()
    for set_name, docs in rendered.items():
        for name, c in containers(docs):
            script = program(c)
            if script not in console_scripts():
                continue
            parser = _parsers()[script]()
            parser.exit_on_error = False
            try:
                _, unknown = parser.parse_known_args(c.get("args", []))
            except argparse.ArgumentError as error:
                pytest.fail(f"{set_name}: {name}: {error}")
            assert unknown == [], f"{set_name}: {name}: {script} does not accept {unknown}"
            variables = {e["name"] for e in c.get("env", [])} - _accepted_variables(parser)
            assert variables == set(), f"{set_name}: {name}: {script} reads no {variables}"
            checked.add(script)
    assert checked == {"fleetdns-aggregator", "fleetdns-webhook", "fleetdns-zonefiles", "fleetdns-prober"}


@pytest.mark.unit
@pytest.mark.parametrize("binary_name", sorted(THIRD_PARTY))
def test_every_flag_the_chart_gives_a_third_party_binary_is_in_its_help(rendered, binary_name):
    """etcd, CoreDNS and ExternalDNS at the versions ./bin holds (those the rig runs) list every flag the chart
    passes."""
    run = subprocess.run([binary(binary_name), "-help" if binary_name == "coredns" else "--help"],
                         capture_output=True, text=True, timeout=30)
    known = set(re.findall(r"(--?[a-z0-9][a-z0-9.-]*)", run.stdout + run.stderr))
    given = {arg.split("=", 1)[0] for docs in rendered.values() for _, c in containers(docs)
             if program(c) == binary_name for arg in c["args"] if arg.startswith("-")}
    assert given and given - known == set()


# --- agreement with manifests/ and coredns/ -----------------------------------------------------------------------


@pytest.mark.unit
def test_the_chart_installs_exactly_the_crds_of_manifests_crds(rendered):
    assert (CHART / "files" / "crds").resolve() == (REPO_ROOT / "manifests" / "crds").resolve()  # one source
    expected = {doc["metadata"]["name"]: doc for path in sorted((REPO_ROOT / "manifests" / "crds").glob("*.yaml"))
                for doc in load_yaml_documents(path)}
    installed = {}
    for crd in find(rendered["host"], "CustomResourceDefinition"):
        annotations = crd["metadata"]["annotations"]
        assert annotations.pop("helm.sh/resource-policy") == "keep"  # uninstalling never deletes the intents
        if not annotations:
            del crd["metadata"]["annotations"]
        installed[crd["metadata"]["name"]] = crd
    assert installed == expected


def _rules(docs: list[dict[str, Any]], kind: str, name: str) -> list[tuple[tuple[str, ...], ...]]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return sorted((tuple(r["apiGroups"]), tuple(sorted(r["resources"])), tuple(sorted(r["verbs"])))
                  for r in found["rules"])


@pytest.mark.unit
@pytest.mark.parametrize(("manifest", "values", "kind", "name"), [
    ("aggregator/rbac.yaml", "host", "ClusterRole", "fleetdns-aggregator"),
    ("aggregator/rbac.yaml", "host", "Role", "fleetdns-aggregator"),
    ("aggregator/member-reader.yaml", "member", "ClusterRole", "fleetdns-aggregator-reader"),
    ("region/prober.yaml", "host", "ClusterRole", "fleetdns-prober"),
    ("region/prober.yaml", "host", "Role", "fleetdns-prober"),
])
def test_the_chart_grants_what_manifests_grant(rendered, manifest, values, kind, name):
    shipped = load_yaml_documents(REPO_ROOT / "manifests" / manifest)
    assert _rules(rendered[values], kind, name) == _rules(shipped, kind, name)


@pytest.mark.unit
def test_fleetdns_join_grants_what_the_charts_member_role_grants(rendered):
    """`fleetdns join` creates the member role itself where the chart is not installed (cli/reader.py)."""
    assert _rules([reader.cluster_role()], "ClusterRole", reader.READER) == \
        _rules(rendered["member"], "ClusterRole", reader.READER)


@pytest.mark.unit
def test_each_region_gets_its_own_least_privilege_identities_on_the_host(rendered):
    docs = rendered["host"]
    accounts = {d["metadata"]["name"] for d in find(docs, "ServiceAccount")}
    assert {"fleetdns-prober-east", "fleetdns-prober-west", "fleetdns-publisher-east",
            "fleetdns-publisher-west"} <= accounts
    assert _rules(docs, "ClusterRole", "fleetdns-publisher") == [
        (("externaldns.k8s.io",), ("dnsendpoints",), ("get", "list", "watch")),
        (("externaldns.k8s.io",), ("dnsendpoints/status",), ("update",)),
        (("fleetdns.io",), ("dnsviews",), ("get", "list", "watch"))]
    for doc in find(docs, "ClusterRole") + find(docs, "Role"):
        for rule in doc["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], doc["metadata"]["name"]


# --- values.schema.json refuses bad values, naming them ------------------------------------------------------------


BAD_VALUES = [
    ("etcd-two-members", _region(etcd={"replicas": 2}), "/region/etcd/replicas"),
    ("one-coredns", _region(coredns={"replicas": 1}), "/region/coredns/replicas"),
    ("region-name-not-a-label", _region(name="East_1"), "/region/name"),
    ("region-without-name", {"region": {"enabled": True, "zone": "gslb.example.com"}}, "/region/name"),
    ("zone-not-a-name", _region(zone="gslb example"), "/region/zone"),
    ("misspelt-key", {"host": {"enabled": True, "aggregator": {"replica": 3}}}, "replica"),
    ("unknown-log-level", {"logLevel": "verbose"}, "/logLevel"),
    ("bad-duration", {"host": {"enabled": True, "aggregator": {"memberGracePeriod": "30 seconds"}}},
     "/host/aggregator/memberGracePeriod"),
    ("views-are-not-values-any-more", _region(views=["office-berlin"]), "views"),
    ("root-user", {"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser"),
    ("privileged-dns-port", _region(coredns={"containerPort": 53}), "/region/coredns/containerPort"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("values", "named"), [case[1:] for case in BAD_VALUES], ids=[case[0] for case in BAD_VALUES])
def test_a_bad_value_is_refused_with_a_message_naming_it(helm_env, tmp_path, values, named):
    run = helm(helm_env, "template", "fleetdns", str(CHART), "-f", str(values_file(tmp_path, values)), check=False)
    assert run.returncode != 0, run.stdout[:500]
    assert named in run.stderr, run.stderr


# --- a real kube-apiserver accepts and installs it ----------------------------------------------------------------


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    with KubeAPIServer("chart", tmp_path_factory.mktemp("chart-apiserver")) as server:
        ensure_namespace(server.api_client(), NAMESPACE)
        yield server


@pytest.mark.apiserver
def test_a_real_apiserver_accepts_every_rendered_object(apiserver, helm_env, values_files):
    """Server-side dry run (the API server's validation and defaulting) of every value set."""
    for name, path in values_files.items():
        if name == "nothing":
            continue
        manifest = helm(helm_env, "template", "fleetdns", str(CHART), "--namespace", NAMESPACE, "-f", str(path)).stdout
        run = subprocess.run(
            [binary("kubectl"), f"--kubeconfig={apiserver.kubeconfig}", "apply", "--dry-run=server", "-f", "-"],
            input=manifest, capture_output=True, text=True, timeout=60,
        )
        assert run.returncode == 0, f"{name}: {run.stderr}"


@pytest.mark.apiserver
def test_helm_installs_and_uninstalls_each_role_on_a_real_apiserver(apiserver, helm_env, values_files):
    kube = ["--kubeconfig", str(apiserver.kubeconfig)]
    for role in ("host", "region", "member"):
        helm(helm_env, "install", f"fleetdns-{role}", str(CHART), *kube, "--namespace", NAMESPACE,
             "-f", str(values_files[role]))
    listed = yaml.safe_load(helm(helm_env, "list", *kube, "--namespace", NAMESPACE, "-o", "yaml").stdout)
    assert {(r["name"], r["status"]) for r in listed} == {
        ("fleetdns-host", "deployed"), ("fleetdns-region", "deployed"), ("fleetdns-member", "deployed")}

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([binary("kubectl"), f"--kubeconfig={apiserver.kubeconfig}", *args],
                              capture_output=True, text=True, timeout=60)

    for kind, name in (("deployment", "fleetdns-aggregator"), ("statefulset", "fleetdns-etcd"),
                       ("deployment", "fleetdns-coredns"), ("serviceaccount", "fleetdns-aggregator-reader")):
        assert kubectl("get", "-n", NAMESPACE, kind, name).returncode == 0, (kind, name)
    for role in ("host", "region", "member"):
        helm(helm_env, "uninstall", f"fleetdns-{role}", *kube, "--namespace", NAMESPACE)
    assert kubectl("get", "-n", NAMESPACE, "deployment", "fleetdns-aggregator").returncode != 0
    # the CRDs stay (helm.sh/resource-policy: keep): uninstalling FleetDNS never deletes the intents
    assert kubectl("get", "crd", "servicednsrecords.fleetdns.io").returncode == 0


@pytest.mark.unit
def test_the_packaged_chart_carries_the_crds_themselves(helm_env, tmp_path):
    """files/crds links to manifests/crds; `helm package` stores their contents, so the archive a user installs
    needs no checkout. (The Corefile is rendered in each region by the zonefiles sidecar.)"""
    import tarfile

    helm(helm_env, "package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("fleetdns-*.tgz")
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert "fleetdns/files/Corefile" not in members
        crds = sorted(Path(n).name for n, m in members.items() if n.startswith("fleetdns/files/crds/") and m.isfile())
    assert crds == sorted(p.name for p in (REPO_ROOT / "manifests" / "crds").glob("*.yaml"))
