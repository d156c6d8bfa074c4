"""The rig runs the real components: each test proves one of them answers as the real thing does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import dns.message
import dns.query
import dns.rdatatype
import pytest
import yaml
from kubernetes import client, watch

from fleetdns.apipaths import DNS_ENDPOINTS
from rig import EtcdCluster, ExternalDNS, RigError
from rig.binaries import REPO_ROOT
from rig.coredns import CoreDNS, dns_answers, etcd_corefile
from rig.workloads import apply_crds
from tests.support.etcd import etcd_kv

GROUP, VERSION, PLURAL = DNS_ENDPOINTS.group, DNS_ENDPOINTS.version, DNS_ENDPOINTS.plural


def query(server: CoreDNS, name: str, rdtype: str) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype), server.host, port=server.port, timeout=2)


@pytest.mark.etcd
def test_etcd_put_get_and_transaction_through_the_python_client(etcd):
    kv = etcd_kv(etcd.url)
    kv.put("/smoke/a", "1")
    value, _ = kv.get("/smoke/a")
    assert value == b"1"

    succeeded, _ = kv.transaction(
        compare=[kv.transactions.value("/smoke/a") == "1"],
        success=[kv.transactions.put("/smoke/b", "2"), kv.transactions.delete("/smoke/a")],
        failure=[],
    )
    assert succeeded
    assert kv.get("/smoke/a")[0] is None and kv.get("/smoke/b")[0] == b"2"

    failed, _ = kv.transaction(compare=[kv.transactions.value("/smoke/b") == "nope"],
                               success=[kv.transactions.put("/smoke/c", "3")], failure=[])
    assert not failed and kv.get("/smoke/c")[0] is None


@pytest.mark.etcd
def test_three_member_etcd_cluster_keeps_serving_with_one_member_down(tmp_path):
    with EtcdCluster(3, tmp_path) as cluster:
        etcd_kv(cluster.endpoints[0]).put("/quorum", "yes")
        cluster.stop_member(2)
        assert etcd_kv(cluster.endpoints[1]).get("/quorum")[0] == b"yes"
        etcd_kv(cluster.endpoints[1]).put("/quorum", "still")
        cluster.start_member(2)
        assert etcd_kv(cluster.endpoints[2]).get("/quorum")[0] == b"still"


@pytest.mark.coredns
def test_coredns_serves_a_aaaa_and_txt_records_written_to_etcd_in_skydns_format(etcd, coredns_factory):
    path = f"/smoke{uuid.uuid4().hex[:6]}"
    kv = etcd_kv(etcd.url)
    kv.put(f"{path}/org/example/app/x1", json.dumps({"host": "192.0.2.10", "ttl": 60}))
    kv.put(f"{path}/org/example/app/x2", json.dumps({"host": "192.0.2.11", "ttl": 60}))
    kv.put(f"{path}/org/example/app/x3", json.dumps({"host": "2001:db8::10", "ttl": 60}))
    kv.put(f"{path}/org/example/note/x1", json.dumps({"text": "hello from etcd", "ttl": 60}))
    server = coredns_factory(etcd_corefile("example.org", etcd.endpoints, path=path))

    assert dns_answers(server.host, server.port, "app.example.org", "A") == {"192.0.2.10", "192.0.2.11"}
    assert dns_answers(server.host, server.port, "app.example.org", "AAAA") == {"2001:db8::10"}
    assert dns_answers(server.host, server.port, "note.example.org", "TXT") == {'"hello from etcd"'}
    assert query(server, "missing.example.org", "A").rcode() == dns.rcode.NXDOMAIN


@pytest.mark.coredns
def test_coredns_that_cannot_start_fails_with_the_tail_of_its_log(tmp_path):
    broken = CoreDNS("example.org:{port} {\n    no_such_plugin\n}\n", tmp_path)
    with pytest.raises(RigError) as error:
        broken.start(timeout=10)
    assert "no_such_plugin" in str(error.value)
    broken.stop()


@pytest.mark.apiserver
def test_kube_apiserver_accepts_a_crd_and_a_watch_sees_a_custom_resource(fleet):
    api = fleet.host.api_client()
    assert "dnsendpoints.externaldns.k8s.io" in apply_crds(api)

    custom = client.CustomObjectsApi(api)
    name = f"smoke-{uuid.uuid4().hex[:6]}"
    # Watch from the list's resourceVersion, as an informer does: the watch replays everything after
    # it, so it sees the object whether it opens before or after the create.
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, DNS_ENDPOINTS.manifest(name, spec={
        "endpoints": [{"dnsName": "smoke.example.org", "recordType": "A", "targets": ["192.0.2.1"]}]}))
    seen: list[str] = []
    stream = watch.Watch()
    for event in stream.stream(custom.list_namespaced_custom_object, GROUP, VERSION, "default",
                               PLURAL, resource_version=listed["metadata"]["resourceVersion"],
                               timeout_seconds=20):
        seen.append(f"{event['type']} {event['object']['metadata']['name']}")
        if event["object"]["metadata"]["name"] == name:
            stream.stop()
    assert f"ADDED {name}" in seen


@pytest.mark.apiserver
def test_member_api_servers_are_separate_clusters(fleet):
    east = client.CoreV1Api(fleet.members["east"].api_client())
    west = client.CoreV1Api(fleet.members["west"].api_client())
    name = f"only-east-{uuid.uuid4().hex[:6]}"
    east.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    assert name in {ns.metadata.name for ns in east.list_namespace().items}
    assert name not in {ns.metadata.name for ns in west.list_namespace().items}


@pytest.mark.externaldns
def test_externaldns_applies_the_record_of_a_dnsendpoint_to_its_provider(fleet, tmp_path):
    api = fleet.host.api_client()
    apply_crds(api)
    custom = client.CustomObjectsApi(api)
    namespace = f"edns-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, DNS_ENDPOINTS.manifest("planned", spec={
        "endpoints": [{"dnsName": "planned.example.org", "recordType": "A", "targets": ["192.0.2.7"]}]}))
    externaldns = ExternalDNS(fleet.host.kubeconfig, [
        "--source=crd", f"--namespace={namespace}", "--provider=inmemory", "--inmemory-zone=example.org",
        "--registry=txt", "--txt-owner-id=smoke", "--policy=sync", "--interval=1s", "--log-level=debug",
    ], workdir=tmp_path)
    # ExternalDNS's own metrics, read at the start of each sync loop: "verified" counts the source's
    # records that its provider (in memory here) holds, so it turns 1 only after the create was applied.
    verified = 'external_dns_controller_verified_records{record_type="a"}'
    with externaldns:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and externaldns.metrics().get(verified, 0) < 1:
            time.sleep(0.2)
        metrics = externaldns.metrics()
    assert metrics.get(verified) == 1, externaldns.log()[-3000:]
    assert metrics.get('external_dns_source_records{record_type="a"}') == 1


@pytest.mark.etcd
def test_rig_children_die_with_the_process_that_started_them(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from rig import EtcdServer
        server = EtcdServer({str(tmp_path)!r}).start()
        print(server.members[0].process.proc.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    etcd_pid = int(parent.stdout.readline())
    assert _alive(etcd_pid)
    parent.send_signal(signal.SIGKILL)  # no atexit, no finally: only the kernel can clean up
    parent.wait(5)
    deadline = time.monotonic() + 5
    while _alive(etcd_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(etcd_pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"



@pytest.mark.coredns
def test_the_shipped_corefile_serves_the_zone_from_its_sidecars_zone_file_and_reports_ready(etcd, tmp_path):
    import requests

    from rig.coredns import etcd_cached_corefile, regional_coredns

    path = f"rig{uuid.uuid4().hex[:6]}"
    value = json.dumps({"host": "192.0.2.44", "ttl": 5, "targetstrip": 1})  # the coredns provider's layout
    etcd_kv(etcd.url).put(f"/{path}/com/example/gslb/app/x1", value)
    server = regional_coredns("gslb.example.com", etcd.endpoints, tmp_path, "coredns-test", etcd_path=path)
    with server:
        assert server.sidecar.ready()  # started first: CoreDNS never served without its zone file
        assert dns_answers(server.host, server.port, "app.gslb.example.com", "A") == {"192.0.2.44"}
        assert query(server, "app.gslb.example.com", "A").answer[0].ttl == 5  # the record's own TTL
        assert "192.0.2.44" in server.sidecar.zone_file("gslb.example.com").read_text()
        assert requests.get(f"http://{server.env['FLEETDNS_READY_ADDR']}/ready", timeout=2).status_code == 200
    # The Corefile shipped before (etcd plugin), for the benchmarks' comparisons: with `cache 1`, TTLs become 1 s.
    for cache, ttl in ((1, 1), (None, 5)):
        corefile = etcd_cached_corefile("gslb.example.com", etcd.endpoints, f"/{path}", cache=cache)
        with regional_coredns("gslb.example.com", etcd.endpoints, tmp_path / f"etcd-{cache}", f"coredns-etcd-{cache}",
                              etcd_path=path, corefile=corefile) as compared:
            assert query(compared, "app.gslb.example.com", "A").answer[0].ttl == ttl


@pytest.mark.apiserver
def test_kube_apiserver_with_a_client_certificate_admin_and_a_self_contained_kubeconfig(tmp_path):
    from kubernetes import config

    from rig import KubeAPIServer

    with KubeAPIServer("certs", tmp_path, admin_auth="client-cert") as server:
        from_file = client.CoreV1Api(server.api_client())
        assert "kube-system" in {ns.metadata.name for ns in from_file.list_namespace().items}
        embedded = yaml.safe_load(server.embedded_kubeconfig())
        assert "client-certificate-data" in embedded["users"][0]["user"]
        inline = client.CoreV1Api(config.new_client_from_config_dict(embedded))
        assert inline.read_namespace("default").metadata.name == "default"
