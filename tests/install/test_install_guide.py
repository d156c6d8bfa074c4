"""docs/install.md, run as a new user would: every ``sh`` block in order, against real kube-apiservers (a host, and
``east``, both member and region), with the real helm, kubectl, openssl and etcd. Between the sections the test
checks what each one promises: the member joins (a real aggregator, running as the chart's own ServiceAccount,
connects with the guide's kubeconfig), the region's identities can do their job on the host and nothing more, the
trial etcd certificates work with a real etcd, the delegation follows the region's CoreDNS Service, an upgrade
changes the release, an uninstall keeps the CRDs and the intents."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetdns.apipaths import MEMBER_CLUSTERS
from fleetdns.kubeapi import KubeClient
from rig.aggregator import AggregatorProcess, client_for
from rig.binaries import REPO_ROOT, binary
from rig.fleet import Fleet
from rig.ports import free_port
from rig.process import ManagedProcess
from rig.waiting import wait_for
from rig.workloads import set_load_balancer_status
from tests.support.guides import BLOCK, Section, Shell, guide_sections

pytestmark = [pytest.mark.apiserver, pytest.mark.etcd]

GUIDE = REPO_ROOT / "docs" / "install.md"
@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with Fleet(("east",), tmp_path / "clusters") as running:
        yield running


def test_the_install_guide_runs_as_written_and_each_step_does_what_it_says(fleet: Fleet, tmp_path: Path) -> None:
    sections = {section.title.split(". ", 1)[-1]: section for section in guide_sections(GUIDE.read_text())}
    assert list(sections) == ["The host", "Join a member", "A region", "Delegate the zone from its parent",
                              "Upgrading", "Uninstalling",
                              "Removing FleetDNS's data"], \
        "a section with commands was added or renamed: give it its checks here"
    workdir = tmp_path / "user"
    workdir.mkdir()
    shell = Shell(workdir, [fleet.host.kubeconfig, fleet.members["east"].kubeconfig])
    host = client_for(fleet.host)

    shell.run(sections["The host"])
    # the chart's aggregator, had the host a kubelet to run it: with the chart's ServiceAccount and RBAC, so a rule
    # the aggregator needs and the chart lacks fails here
    identity = fleet.host.service_account_kubeconfig("fleetdns-system", "fleetdns-aggregator",
                                                     workdir / "aggregator.kubeconfig")
    aggregator = AggregatorProcess(identity, ["--leader-election-namespace=fleetdns-system"], tmp_path / "aggregator")
    with aggregator:
        _joins_with_the_guides_kubeconfig(shell, sections["Join a member"], host)
        _region_identities_do_their_job_and_no_more(shell, sections["A region"], workdir)
        _trial_etcd_certificates_work_with_a_real_etcd(workdir, tmp_path)
        # the cloud's load balancer gives the region's CoreDNS Service its address (the rig plays that controller)
        set_load_balancer_status(fleet.members["east"].api_client(), "fleetdns-system", "fleetdns-coredns",
                                 ips=["192.0.2.53"])
        printed = shell.run(sections["Delegate the zone from its parent"])
        assert [line for line in printed.splitlines() if " NS " in line or " A " in line] == [
            'gslb.example.com NS ["ns-east.gslb.example.com"]', 'ns-east.gslb.example.com A ["192.0.2.53"]'], printed
        parent = fleet.host.service_account_kubeconfig("fleetdns-system", "parent-external-dns",
                                                       workdir / "parent.kubeconfig")
        can = {" ".join(ask): shell.kubectl("auth", "can-i", *ask, "-A", kubeconfig=parent).stdout.strip()
               for ask in (("watch", "dnsendpoints.externaldns.k8s.io"), ("list", "dnsviews.fleetdns.io"),
                           ("update", "dnsendpoints.externaldns.k8s.io", "--subresource=status"),
                           ("create", "dnsendpoints.externaldns.k8s.io"))}
        assert can == {"watch dnsendpoints.externaldns.k8s.io": "yes", "list dnsviews.fleetdns.io": "no",
                       "update dnsendpoints.externaldns.k8s.io --subresource=status": "yes",
                       "create dnsendpoints.externaldns.k8s.io": "no"}, "the parent's identity: the delegation only"
    assert "forbidden" not in aggregator.log().lower(), "the chart's RBAC lacks a rule the aggregator needs"

    shell.run(sections["Upgrading"])
    assert host.get("/apis/apps/v1/namespaces/fleetdns-system/deployments/fleetdns-aggregator")["spec"]["replicas"] == 3

    shell.run(sections["Uninstalling"])
    for release in ("fleetdns-region", "fleetdns-member"):
        assert shell.kubectl("--context", "east", "-n", "fleetdns-system", "get", "secret",
                             "-l", f"owner=helm,name={release}", "-o", "name").stdout == ""
    assert host.get(MEMBER_CLUSTERS.path(name="east"))["spec"]["region"] == "east", "uninstalling kept the intents"
    shell.run(sections["Removing FleetDNS's data"])
    stored = shell.kubectl("--context", "host", "-n", "fleetdns-system", "get", "secret", "member-east")
    assert stored.returncode != 0, "unjoin deletes the member's kubeconfig Secret on the host"
    assert shell.kubectl("--context", "host", "get", "crd", "-o", "name").stdout.count(".fleetdns.io") == 0, \
        "the guide's last block deletes the CRDs"
    every_block = [block for section in guide_sections(GUIDE.read_text()) for block in section.commands]
    assert shell.ran == every_block and len(BLOCK.findall(GUIDE.read_text())) == len(every_block)


def _joins_with_the_guides_kubeconfig(shell: Shell, section: Section, host: KubeClient) -> None:
    printed = shell.run(section)
    assert re.search(r"member\s+kept\s+ClusterRole\s+fleetdns-aggregator-reader", printed), \
        f"join uses the chart's member role as it is:\n{printed}"
    reader = shell.workdir / "east-reader.kubeconfig"
    stored = shell.kubectl("--context", "host", "-n", "fleetdns-system", "get", "secret", "member-east",
                           "-o", "jsonpath={.data.kubeconfig}")
    subprocess.run(["base64", "-d"], input=stored.stdout, text=True, stdout=reader.open("w"), check=True)
    denied = shell.kubectl("get", "secrets", "-A", kubeconfig=reader)
    assert denied.returncode != 0 and "forbidden" in denied.stderr, "the member identity is read-only and narrow"
    wait_for(lambda: (host.get(MEMBER_CLUSTERS.path(name="east")).get("status") or {}).get("state") == "Connected",
             timeout=60, what="the aggregator to connect to east with the guide's kubeconfig")


def _region_identities_do_their_job_and_no_more(shell: Shell, section: Section, workdir: Path) -> None:
    shell.run(section)
    secrets = {}
    for part in ("publisher", "prober"):
        data = shell.kubectl("--context", "east", "-n", "fleetdns-system", "get", "secret", f"fleetdns-host-{part}",
                             "-o", "jsonpath={.data.kubeconfig}")
        assert data.returncode == 0 and data.stdout, data.stderr
        path = workdir / f"from-secret-{part}.kubeconfig"
        subprocess.run(["base64", "-d"], input=data.stdout, text=True, stdout=path.open("w"), check=True)
        secrets[part] = path
    can = {(part, verb, resource): shell.kubectl("auth", "can-i", verb, resource, "-A", kubeconfig=path).stdout.strip()
           for part, path in secrets.items()
           for verb, resource in (("watch", "dnsendpoints.externaldns.k8s.io"), ("create", "healthreports.fleetdns.io"),
                                  ("list", "servicednsrecords.fleetdns.io"), ("get", "secrets"),
                                  ("delete", "memberclusters.fleetdns.io"))}
    assert can == {
        ("publisher", "watch", "dnsendpoints.externaldns.k8s.io"): "yes",
        ("publisher", "create", "healthreports.fleetdns.io"): "no",
        ("publisher", "list", "servicednsrecords.fleetdns.io"): "no",
        ("publisher", "get", "secrets"): "no",
        ("publisher", "delete", "memberclusters.fleetdns.io"): "no",
        ("prober", "watch", "dnsendpoints.externaldns.k8s.io"): "no",
        ("prober", "create", "healthreports.fleetdns.io"): "yes",
        ("prober", "list", "servicednsrecords.fleetdns.io"): "yes",
        ("prober", "get", "secrets"): "no",
        ("prober", "delete", "memberclusters.fleetdns.io"): "no",
    }
    for kind, name in (("statefulset", "fleetdns-etcd"), ("deployment", "fleetdns-coredns"),
                       ("deployment", "fleetdns-publisher"), ("deployment", "fleetdns-prober")):
        got = shell.kubectl("--context", "east", "-n", "fleetdns-system", "get", kind, name, "-o",
                            "jsonpath={.metadata.labels.app\\.kubernetes\\.io/instance}")
        assert got.stdout == "fleetdns-region", (kind, name, got.stderr)


def _trial_etcd_certificates_work_with_a_real_etcd(workdir: Path, tmp_path: Path) -> None:
    """The server certificate names 127.0.0.1 too, so a real etcd can serve with it here: clients must present the
    guide's client certificate, and it is accepted."""
    client_port, peer_port = free_port(), free_port()
    url = f"https://127.0.0.1:{client_port}"
    tls = {name: (str(workdir / f"etcd-{name}.crt"), str(workdir / f"etcd-{name}.key"))
           for name in ("server", "peer", "client")}
    etcd = ManagedProcess("etcd-trial-tls", [
        binary("etcd"), "--name=trial", f"--data-dir={tmp_path / 'etcd-trial'}", f"--listen-client-urls={url}",
        f"--advertise-client-urls={url}", f"--listen-peer-urls=https://127.0.0.1:{peer_port}",
        f"--initial-advertise-peer-urls=https://127.0.0.1:{peer_port}",
        f"--initial-cluster=trial=https://127.0.0.1:{peer_port}",
        f"--cert-file={tls['server'][0]}", f"--key-file={tls['server'][1]}", "--client-cert-auth",
        f"--trusted-ca-file={workdir / 'etcd-ca.crt'}", f"--peer-cert-file={tls['peer'][0]}",
        f"--peer-key-file={tls['peer'][1]}", "--peer-client-cert-auth",
        f"--peer-trusted-ca-file={workdir / 'etcd-ca.crt'}",
    ], tmp_path / "etcd-trial.log").start()
    try:
        def etcdctl(*args: str, client: bool = True) -> subprocess.CompletedProcess[str]:
            auth = [f"--cert={tls['client'][0]}", f"--key={tls['client'][1]}"] if client else []
            etcdctl = str(Path(binary("etcd")).with_name("etcdctl"))
            return subprocess.run([etcdctl, f"--endpoints={url}", f"--cacert={workdir / 'etcd-ca.crt'}",
                                   *auth, "--dial-timeout=2s", "--command-timeout=3s", *args],
                                  capture_output=True, text=True, timeout=30)
        wait_for(lambda: etcdctl("put", "/fleetdns/trial", "ok").returncode == 0, timeout=30,
                 what="etcd serving with the guide's certificates")
        assert etcdctl("get", "--print-value-only", "/fleetdns/trial").stdout.strip() == "ok"
        assert etcdctl("get", "/fleetdns/trial", client=False).returncode != 0, "a client without a certificate"
    finally:
        etcd.stop(timeout=10)
