"""The rig runs the chart's wiring: each FleetDNS container starts with the command, arguments and environment
``helm template`` renders, so a chart with a wrong flag, a path under no mount, a missing variable or a value its
schema refuses fails here, naming what is wrong, before any test relies on it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from rig.aggregator import AggregatorProcess, aggregator_values
from rig.chartwiring import CHART, ChartWiringError, LocalPod, expand, render
from rig.coredns import regional_coredns
from rig.ports import free_port
from rig.prober import ProberProcess
from rig.process import RigError


def broken_chart(tmp_path: Path, template: str, old: str, new: str) -> Path:
    """A copy of the chart (links resolved, as ``helm package`` does), ``old`` replaced by ``new`` in one template."""
    chart = tmp_path / "fleetdns"
    shutil.copytree(CHART, chart)
    path = chart / "templates" / template
    text = path.read_text()
    assert old in text, f"{old!r} not in {template}: the test must break what it names"
    path.write_text(text.replace(old, new))
    return chart


def kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig file: the processes below refuse their flags before they would read it."""
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    return path


@pytest.mark.unit
def test_kubernetes_variable_references_expand_as_the_kubelet_does():
    env = {"POD_NAME": "fleetdns-etcd-0", "EMPTY": ""}
    assert expand("--name=$(POD_NAME)", env) == "--name=fleetdns-etcd-0"
    assert expand("$(POD_NAME).svc:$(EMPTY)2379", env) == "fleetdns-etcd-0.svc:2379"
    assert expand("$$(POD_NAME) and $$", env) == "$(POD_NAME) and $"  # escaped
    assert expand("$(UNDEFINED)", env) == "$(UNDEFINED)"  # left as written


@pytest.mark.unit
def test_the_aggregator_runs_the_console_script_with_the_charts_arguments_and_its_pod_name_as_identity(tmp_path):
    config = kubeconfig(tmp_path)
    aggregator = AggregatorProcess(config, ["--namespace=team-a", "--leader-election=false", "--lease-name=team-a"],
                                   tmp_path, name="replica-a")
    assert aggregator.argv[0] == str(Path(sys.executable).parent / "fleetdns-aggregator")
    args = aggregator.argv[1:]
    assert f"--health-listen=127.0.0.1:{aggregator.port}" in args
    assert "--namespace=team-a" in args and "--leader-election=false" in args  # chart values, not appended
    assert args[-1] == "--lease-name=team-a"  # no value for it: host.aggregator.extraArgs, after the chart's own
    assert aggregator.env["FLEETDNS_AGGREGATOR_IDENTITY"] == "replica-a"  # fieldRef metadata.name
    assert aggregator.env["KUBECONFIG"] == str(config)  # the in-cluster credentials' stand-in
    assert "PYTHONPATH" not in aggregator.env  # the container's environment, not the test runner's


@pytest.mark.unit
def test_helm_template_runs_once_per_distinct_values():
    values = aggregator_values(free_port(), ["--workers=2"])
    assert render(values) is render(dict(values))
    assert render(aggregator_values(free_port(), ["--workers=2"])) is not render(values)


@pytest.mark.unit
def test_a_value_the_schema_refuses_fails_naming_the_value(tmp_path):
    with pytest.raises(ChartWiringError, match="/host/aggregator/workers"):
        AggregatorProcess(kubeconfig(tmp_path), ["--workers=0"], tmp_path)


@pytest.mark.unit
def test_a_flag_the_process_refuses_fails_the_start_naming_the_flag(tmp_path):
    chart = broken_chart(tmp_path, "host/aggregator.yaml", "--workers=", "--wrokers=")
    aggregator = AggregatorProcess(kubeconfig(tmp_path), [], tmp_path, chart=chart)
    with pytest.raises(RigError, match="--wrokers"):
        aggregator.start(timeout=30)
    aggregator.stop()


@pytest.mark.unit
def test_a_path_under_no_volume_mount_is_refused_naming_the_container_and_the_path(tmp_path):
    chart = broken_chart(tmp_path, "region/prober.yaml", "--kubeconfig=/etc/fleetdns/host/",
                         "--kubeconfig=/etc/fleetdns/hosts/")
    with pytest.raises(ChartWiringError) as refused:
        ProberProcess("east", kubeconfig(tmp_path), tmp_path, chart=chart)
    message = str(refused.value)
    assert "Deployment/fleetdns-prober container prober" in message
    assert "/etc/fleetdns/hosts/kubeconfig" in message and "/etc/fleetdns/host (host-kubeconfig)" in message


@pytest.mark.unit
def test_a_secret_the_rig_does_not_have_is_refused_as_a_pod_that_cannot_start(tmp_path):
    chart = broken_chart(tmp_path, "region/prober.yaml", "secret: {secretName: {{ $r.hostAccess.proberSecret }}}",
                         "secret: {secretName: fleetdns-host-probe}")
    with pytest.raises(ChartWiringError, match="needs Secret fleetdns-host-probe"):
        ProberProcess("east", kubeconfig(tmp_path), tmp_path, chart=chart)


@pytest.mark.unit
def test_a_volume_the_pod_does_not_have_is_refused(tmp_path):
    chart = broken_chart(tmp_path, "region/prober.yaml", "- {name: host-kubeconfig, mountPath",
                         "- {name: host-kubeconfg, mountPath")
    with pytest.raises(ChartWiringError, match="mounts volume 'host-kubeconfg'"):
        ProberProcess("east", kubeconfig(tmp_path), tmp_path, chart=chart)


@pytest.mark.etcd
@pytest.mark.coredns
def test_a_variable_the_corefile_needs_missing_from_the_chart_fails_the_start(etcd, tmp_path):
    chart = broken_chart(tmp_path, "region/coredns.yaml", "            - {name: FLEETDNS_WEIGHT_FILE, value: "
                         "/run/fleetdns/weights}\n", "")
    server = regional_coredns("gslb.example.com", etcd.endpoints, tmp_path / "dns", "coredns-broken", chart=chart)
    with pytest.raises(RigError, match="coredns-broken exited"):
        server.start()
    server.stop()


@pytest.mark.etcd
@pytest.mark.coredns
def test_the_coredns_pod_shares_its_zones_volume_between_the_sidecar_and_coredns(etcd, tmp_path):
    with regional_coredns("gslb.example.com", etcd.endpoints, tmp_path, "coredns-pod", region="east") as server:
        assert server.sidecar.zone_dir == tmp_path / "zones"  # the pod's zones emptyDir
        assert server.env["FLEETDNS_ZONE_DIR"] == str(server.sidecar.zone_dir)
        assert server.env["FLEETDNS_WEIGHT_FILE"] == str(server.sidecar.weight_file)
        assert server.corefile_path == server.sidecar.zone_dir / "Corefile"  # the one the sidecar renders
        assert server.corefile_views() == []  # no DNSView in etcd: the region's own block alone
        assert server.sidecar.default_view == "region-east"


@pytest.mark.unit
def test_a_pod_without_its_own_clusters_credentials_is_refused(tmp_path):
    values = aggregator_values(free_port())
    pod = LocalPod(render(values), "fleetdns-aggregator", "aggregator", tmp_path)
    with pytest.raises(ChartWiringError, match="ServiceAccount token"):
        pod.process("aggregator")
