"""Status writes only when something a user reads changes, and events off the reconcile path.

A member's control-plane blip is reported once, on its MemberCluster, not on every intent using it;
a slow or forbidden events API neither stops nor slows publishing. Real host, east and west API
servers, the aggregator as a real process (an RBAC-limited identity; an admission webhook that holds
every Event request, i.e. a slow events API).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from aggregator.metrics import AggregatorMetrics
from fleetdns.apipaths import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    EVENTS,
    MEMBER_CLUSTERS,
    SERVICE_ACCOUNTS,
    SERVICE_DNS_RECORDS,
    Resource,
)
from fleetdns.kubeapi import KubeClient, KubeError
from rig import Fleet
from rig.aggregator import AggregatorProcess
from rig.binaries import REPO_ROOT
from rig.certs import CertificateAuthority
from tests.support.aggregator import (
    VIPS,
    both,
    create_domain,
    create_service_intent,
    deploy_service,
    dns_endpoint,
    events_for,
    global_name,
    intent,
    new_namespace,
    prepare_fleet,
    reconciled_intents,
    records,
    samples,
    unique,
    wait_for,
    wait_records,
)

pytestmark = pytest.mark.apiserver
WEBHOOKS = Resource("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
                    "ValidatingWebhookConfiguration", namespaced=False)
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")


def publish_all(fleet: Fleet, host: KubeClient, namespace: str, names: list[str]) -> None:
    for name in names:
        deploy_service(fleet, namespace, name, both())
        create_service_intent(host, namespace, name)


def wait_all_published(host: KubeClient, namespace: str, names: list[str], timeout: float = 30) -> None:
    for name in names:
        wait_records(host, namespace, f"service-{name}",
                     lambda r, n=name: r.get((global_name(namespace, n), "A")) == set(VIPS.values()), timeout=timeout)
        wait_for(lambda n=name: intent(host, namespace, "servicednsrecords", n).get("status", {})
                 .get("healthyClusters") == 2, what=f"{name}'s status")


def intent_status_writes(process: AggregatorProcess) -> float:
    return sum(value for labels, value in samples(process, "fleetdns_aggregator_status_writes_total")
               if labels.get("kind") == "ServiceDNSRecord")


def intent_versions(host: KubeClient, namespace: str, names: list[str]) -> dict[str, str]:
    return {n: intent(host, namespace, "servicednsrecords", n)["metadata"]["resourceVersion"] for n in names}


def member_status(host: KubeClient, name: str) -> dict[str, Any]:
    return host.get(MEMBER_CLUSTERS.path(name=name)).get("status") or {}


def reachable(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == "Reachable"), {})


def wait_member_state(host: KubeClient, name: str, state: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for(lambda: (s := member_status(host, name)).get("state") == state and s, timeout=timeout,
                    interval=0.05, what=f"MemberCluster {name} {state}")


# --- a control-plane blip: one write on the member, none on its intents -----------------------------

def test_a_member_blip_within_the_grace_period_rewrites_no_intent_status_and_shows_on_the_member_cluster(
        fleet: Fleet, tmp_path: Path) -> None:
    """SIGSTOP: east's API server answers nothing, as behind a cut network, for less than the grace period."""
    host = prepare_fleet(fleet)
    ns = new_namespace(fleet, "agg-blip")
    create_domain(host, ns)
    names = [unique("svc") for _ in range(8)]
    publish_all(fleet, host, ns, names)
    args = [f"--namespace={ns}", f"--lease-name={ns}", "--member-grace-period=12s", "--log-format=text"]
    with AggregatorProcess(fleet.host.kubeconfig, args, tmp_path) as aggregator:
        wait_all_published(host, ns, names)
        wait_member_state(host, "east", "Connected")
        versions, writes = intent_versions(host, ns, names), intent_status_writes(aggregator)

        process = fleet.members["east"].process
        assert process is not None and process.proc is not None
        os.kill(process.proc.pid, signal.SIGSTOP)
        try:
            during = wait_member_state(host, "east", "UnreachableInGrace")
        finally:
            os.kill(process.proc.pid, signal.SIGCONT)
        assert reachable(during)["status"] == "False" and "grace period" in reachable(during)["message"]
        after = wait_member_state(host, "east", "Connected")
        assert reachable(after)["lastTransitionTime"] >= reachable(during)["lastTransitionTime"]
        wait_for(lambda: any(labels == {"cluster": "east", "state": "Connected"} and value == 1.0 for labels, value
                             in samples(aggregator, "fleetdns_aggregator_member_state")), what="east connected")

        assert intent_status_writes(aggregator) == writes, "a blip within the grace period rewrote intent statuses"
        assert intent_versions(host, ns, names) == versions
        for name in names:
            assert records(dns_endpoint(host, ns, f"service-{name}"))[(global_name(ns, name), "A")] == \
                set(VIPS.values())


def test_a_restart_while_a_member_is_down_rewrites_no_intent_status(fleet: Fleet, tmp_path: Path) -> None:
    """The restarted aggregator cannot reach east: its intents keep the entries they published for it
    (the MemberCluster says Connecting), and nothing is rewritten when east answers again."""
    host = prepare_fleet(fleet)
    ns = new_namespace(fleet, "agg-cold-member")
    create_domain(host, ns)
    names = [unique("svc") for _ in range(5)]
    publish_all(fleet, host, ns, names)
    args = [f"--namespace={ns}", f"--lease-name={ns}", "--member-grace-period=90s", "--log-format=text"]
    with AggregatorProcess(fleet.host.kubeconfig, args, tmp_path, name="first"):
        wait_all_published(host, ns, names)
    versions = intent_versions(host, ns, names)

    east = fleet.members["east"]
    east.stop_apiserver()
    try:
        with AggregatorProcess(fleet.host.kubeconfig, args, tmp_path, name="second") as second:
            wait_for(lambda: reconciled_intents(second) == len(names), what="every intent reconciled")
            connecting = wait_member_state(host, "east", "Connecting")
            assert reachable(connecting)["status"] == "Unknown"
            assert intent_status_writes(second) == 0, second.log()[-3000:]
            east.restart()
            wait_member_state(host, "east", "Connected")
            wait_for(lambda: any(labels == {"cluster": "east", "state": "Connected"} and value == 1.0 for labels, value
                                 in samples(second, "fleetdns_aggregator_member_state")), what="east connected")
            assert intent_status_writes(second) == 0, second.log()[-3000:]
            assert intent_versions(host, ns, names) == versions
    finally:
        if east.process is None or not east.process.running:
            east.restart()


# --- events off the reconcile path ----------------------------------------------------------------

class HoldingWebhook:
    """A validating admission webhook for Events that holds each request until released: a slow events API."""

    def __init__(self, workdir: Path) -> None:
        ca = CertificateAuthority.create("events-webhook-ca")
        crt, key = ca.issue("127.0.0.1", workdir, "webhook", ips=("127.0.0.1",), server=True)
        self.ca_pem = ca.cert_pem()
        self.release = threading.Event()
        self.held: list[str] = []  # names of the Events asked about (probes are answered at once)
        self.probes = 0
        self._lock = threading.Lock()
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = review["request"]
                name = (request.get("object") or {}).get("metadata", {}).get("name", "")
                with webhook._lock:
                    if name.startswith("probe-"):
                        webhook.probes += 1
                    else:
                        webhook.held.append(name)
                if not name.startswith("probe-"):
                    webhook.release.wait(25)
                body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                   "response": {"uid": request["uid"], "allowed": True}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(crt, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def held_count(self) -> int:
        with self._lock:
            return len(self.held)

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def slow_events(fleet: Fleet, tmp_path: Path) -> Iterator[tuple[HoldingWebhook, str]]:
    """The webhook in force for Events of a fresh namespace (and only there)."""
    host = prepare_fleet(fleet)
    ns = new_namespace(fleet, "agg-slow-events")
    webhook = HoldingWebhook(tmp_path)
    name = unique("hold-events")
    host.create(WEBHOOKS.path(), WEBHOOKS.manifest(name, webhooks=[{
        "name": "hold.events.fleetdns.test", "admissionReviewVersions": ["v1"], "sideEffects": "None",
        "failurePolicy": "Ignore", "timeoutSeconds": 25,
        "clientConfig": {"url": f"https://127.0.0.1:{webhook.port}/validate",
                         "caBundle": base64.b64encode(webhook.ca_pem).decode()},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                   "resources": ["events"]}],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}]))
    try:
        def probe_seen() -> bool:
            host.create(EVENTS.path(ns), EVENTS.manifest(
                unique("probe"), ns, involvedObject={"kind": "ConfigMap", "namespace": ns, "name": "probe"},
                reason="Probe", message="webhook in force?", type="Normal"))
            return webhook.probes > 0

        wait_for(probe_seen, timeout=30, interval=0.2, what="the events webhook in force")
        yield webhook, ns
    finally:
        host.delete(WEBHOOKS.path(name=name))
        webhook.stop()


def test_a_slow_events_api_does_not_hold_up_reconciles_and_the_events_arrive_later(
        fleet: Fleet, slow_events: tuple[HoldingWebhook, str], tmp_path: Path) -> None:
    """One worker, three intents, every Event request held by the webhook: all three publish while the
    events API has been asked once (posting inline, the worker would wait on each event in turn)."""
    webhook, ns = slow_events
    host = prepare_fleet(fleet)
    create_domain(host, ns)
    names = [unique("svc") for _ in range(3)]
    for name in names:
        deploy_service(fleet, ns, name, both())
    args = [f"--namespace={ns}", f"--lease-name={ns}", "--workers=1", "--log-format=text"]
    with AggregatorProcess(fleet.host.kubeconfig, args, tmp_path) as aggregator:
        for name in names:
            create_service_intent(host, ns, name)
        # 60 s: long enough for an inline poster to get all three out too (each held event times out after
        # 10 s), so that what fails is the order below, not the clock.
        wait_all_published(host, ns, names, timeout=60)
        assert webhook.held_count() <= 1, f"the events API was asked {webhook.held_count()} times before publishing"
        wait_for(lambda: webhook.held_count() >= 1, what="the first event on its way")

        webhook.release.set()
        for name in names:
            wait_for(lambda n=name: [e for e in events_for(host, ns, n) if e["reason"] == "ClusterJoined"],
                     timeout=60, what=f"{name}'s ClusterJoined event")
        assert aggregator.process is not None and aggregator.process.running


def limited_host_kubeconfig(fleet: Fleet, host: KubeClient, namespace: str, path: Path) -> tuple[str, list[str]]:
    """An identity with manifests/aggregator/rbac.yaml's rights except Events; returns its name and what to
    delete afterwards."""
    docs = list(yaml.safe_load_all((REPO_ROOT / "manifests" / "aggregator" / "rbac.yaml").read_text()))
    cluster_rules = next(d for d in docs if d["kind"] == "ClusterRole")["rules"]
    role_rules = next(d for d in docs if d["kind"] == "Role")["rules"]
    name = unique("no-events")
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    host.create(SERVICE_ACCOUNTS.path(namespace), SERVICE_ACCOUNTS.manifest(name))
    host.create(CLUSTER_ROLES.path(), CLUSTER_ROLES.manifest(
        name, rules=[r for r in cluster_rules if "events" not in r["resources"]]))
    host.create(CLUSTER_ROLE_BINDINGS.path(), CLUSTER_ROLE_BINDINGS.manifest(
        name, roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}, subjects=subject))
    host.create(ROLES.path("fleetdns-system"), ROLES.manifest(name, "fleetdns-system", rules=role_rules))
    host.create(ROLE_BINDINGS.path("fleetdns-system"), ROLE_BINDINGS.manifest(
        name, "fleetdns-system", roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        subjects=subject))
    token = host.create(SERVICE_ACCOUNTS.path(namespace, name, "token"), {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
    config = yaml.safe_load(fleet.host.embedded_kubeconfig())
    config["users"][0]["user"] = {"token": token["status"]["token"]}
    path.write_text(yaml.safe_dump(config))
    return name, [CLUSTER_ROLE_BINDINGS.path(name=name), CLUSTER_ROLES.path(name=name),
                  ROLE_BINDINGS.path("fleetdns-system", name), ROLES.path("fleetdns-system", name)]


def refused(process: AggregatorProcess, reason: str) -> float:
    return sum(value for labels, value in samples(process, "fleetdns_aggregator_events_dropped_total")
               if labels.get("cause") == "refused" and labels.get("reason") == reason)


def test_an_events_api_that_refuses_stops_nothing_and_the_dropped_events_are_counted(
        fleet: Fleet, tmp_path: Path) -> None:
    """The deployment's own RBAC (manifests/aggregator/rbac.yaml) minus Events: publishing goes on, the
    MemberClusters' status is written with those rights, and each refused event is counted."""
    host = prepare_fleet(fleet)
    ns = new_namespace(fleet, "agg-no-events")
    create_domain(host, ns)
    _, cleanup = limited_host_kubeconfig(fleet, host, ns, tmp_path / "kubeconfig")
    try:
        names = [unique("svc") for _ in range(3)]
        args = [f"--namespace={ns}", f"--lease-name={ns}", "--log-format=text"]
        with AggregatorProcess(tmp_path / "kubeconfig", args, tmp_path) as aggregator:
            publish_all(fleet, host, ns, names)
            wait_all_published(host, ns, names)
            wait_for(lambda: refused(aggregator, "ClusterJoined") >= len(names), what="the refused events counted")
            assert not [e for n in names for e in events_for(host, ns, n)]
            assert member_status(host, "east").get("state") == "Connected"
    finally:
        for path in cleanup:
            try:
                host.delete(path)
            except KubeError as error:
                if error.status != 404:
                    raise


def test_the_recorder_merges_repeats_bounds_its_queue_and_flushes_at_stop(fleet: Fleet) -> None:
    from aggregator.controller.events import EventRecorder
    from aggregator.render.events import InvolvedObject

    host = prepare_fleet(fleet)
    ns = new_namespace(fleet, "agg-recorder")
    metrics = AggregatorMetrics()
    web = InvolvedObject(SERVICE_DNS_RECORDS.api_version, "ServiceDNSRecord", ns, "web", "uid-web")
    recorder = EventRecorder(host, metrics, "recorder-test")  # not started: events wait in its queue
    recorder.record(web, "Warning", "ClusterLeft", "left the answer: east (NoReadyEndpoints)")
    recorder.record(web, "Normal", "ClusterJoined", "joined the answer: east (ReadyEndpoints)")
    recorder.record(web, "Warning", "ClusterLeft", "left the answer: east (NoReadyEndpoints)")
    recorder.start().stop(flush_seconds=10)  # SIGTERM: what waits is posted within the deadline
    posted = {(e["reason"], e["count"]) for e in events_for(host, ns, "web")}
    assert posted == {("ClusterLeft", 2), ("ClusterJoined", 1)}

    small = EventRecorder(host, metrics, "recorder-test", capacity=1)
    small.record(web, "Normal", "ClusterJoined", "joined the answer: west (ReadyEndpoints)")
    small.record(web, "Warning", "ClusterLeft", "left the answer: west (NoReadyEndpoints)")
    assert metrics.registry.get_sample_value("fleetdns_aggregator_events_dropped_total",
                                             {"reason": "ClusterLeft", "cause": "queue_full"}) == 1.0
    small.stop(flush_seconds=0)
    assert metrics.registry.get_sample_value("fleetdns_aggregator_events_dropped_total",
                                             {"reason": "ClusterJoined", "cause": "shutdown"}) == 1.0
