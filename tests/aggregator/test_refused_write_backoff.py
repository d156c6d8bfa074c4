"""One intent whose DNSEndpoint the host API refuses for good, with the aggregator as a real process.

The refusal is real: a ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) on the host denies
that one DNSEndpoint with 422, as a policy engine or a quota would. The failing intent is retried with
exponential backoff, so it costs the host API a handful of requests, not one a second; the other
intents publish as usual, with the default TTL (30 s) unless they set one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from fleetdns.apipaths import DNS_ENDPOINTS, SERVICE_DNS_RECORDS
from fleetdns.kubeapi import KubeClient, KubeError
from rig import Fleet
from rig.aggregator import AggregatorProcess
from tests.support.aggregator import (
    VIPS,
    both,
    create_domain,
    create_service_intent,
    deploy_service,
    dns_endpoint,
    new_namespace,
    prepare_fleet,
    unique,
    wait_for,
    wait_records,
)

pytestmark = pytest.mark.apiserver
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
WINDOW = 20.0  # seconds of retries observed; a fixed 1 s retry makes about 20 attempts in it


def endpoint_body(namespace: str, name: str) -> dict:
    return DNS_ENDPOINTS.manifest(name, namespace, spec={"endpoints": []})


def refused(host: KubeClient, namespace: str, name: str) -> bool:
    """Whether the host refuses DNSEndpoint ``name`` now (a dry run: nothing is stored)."""
    try:
        host.request("POST", DNS_ENDPOINTS.path(namespace), {"dryRun": "All"}, endpoint_body(namespace, name))
    except KubeError as error:
        if error.status == 422:
            return True
        raise
    return False


def refuse_dns_endpoint(host: KubeClient, namespace: str, name: str) -> str:
    """A ValidatingAdmissionPolicy and its binding denying exactly that DNSEndpoint; returns their name."""
    policy = f"refuse-{namespace}"
    host.create(f"{ADMISSION}/validatingadmissionpolicies", {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": policy},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{
                     "apiGroups": ["externaldns.k8s.io"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                     "resources": ["dnsendpoints"]}]},
                 "validations": [{
                     "expression": f"object.metadata.namespace != '{namespace}' || object.metadata.name != '{name}'",
                     "reason": "Invalid", "message": f"{name} is refused by policy {policy}"}]}})
    host.create(f"{ADMISSION}/validatingadmissionpolicybindings", {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": policy}, "spec": {"policyName": policy, "validationActions": ["Deny"]}})
    wait_for(lambda: refused(host, namespace, name), timeout=30, what="the admission policy to take effect")
    return policy


def remove_policy(host: KubeClient, policy: str) -> None:
    for kind in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
        try:
            host.delete(f"{ADMISSION}/{kind}/{policy}")
        except KubeError as error:
            if error.status != 404:
                raise


def failed_reconciles(aggregator: AggregatorProcess) -> int:
    match = re.search(r'^fleetdns_aggregator_reconcile_errors_total\{kind="ServiceDNSRecord"\} (\S+)$',
                      aggregator.metrics(), re.MULTILINE)
    return int(float(match.group(1))) if match else 0


@pytest.fixture
def setup(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubeClient, str, str, str]]:
    host = prepare_fleet(fleet)
    namespace = new_namespace(fleet, "agg-backoff")
    create_domain(host, namespace)
    broken = unique("broken")
    policy = refuse_dns_endpoint(host, namespace, f"service-{broken}")
    try:
        yield host, namespace, broken, policy
    finally:
        remove_policy(host, policy)


@pytest.mark.timeout(240)
def test_an_intent_refused_for_good_is_retried_with_backoff_while_the_others_publish(
        fleet: Fleet, setup: tuple[KubeClient, str, str, str], tmp_path_factory: pytest.TempPathFactory) -> None:
    host, ns, broken, policy = setup
    plain, explicit = unique("plain"), unique("ttl")
    for name in (broken, plain, explicit):
        deploy_service(fleet, ns, name, both())
    aggregator = AggregatorProcess(fleet.host.kubeconfig, [f"--namespace={ns}", f"--lease-name={ns}",
                                                           "--log-format=text"], tmp_path_factory.mktemp("aggregator"))
    with aggregator:
        create_service_intent(host, ns, broken)
        wait_for(lambda: failed_reconciles(aggregator) >= 1, timeout=30, what="the first refused write")
        first_failure = time.monotonic()

        # the others publish meanwhile, with the default TTL of 30 s unless they set one
        create_service_intent(host, ns, plain)
        create_service_intent(host, ns, explicit, recordTTL=180)
        for name, ttl in ((plain, 30), (explicit, 180)):
            glob = f"{name}.{ns}.fleet.svc.example.com"
            wait_records(host, ns, f"service-{name}", lambda r, g=glob: r.get((g, "A")) == set(VIPS.values()))
            obj = dns_endpoint(host, ns, f"service-{name}")
            assert obj is not None and {e["recordTTL"] for e in obj["spec"]["endpoints"]} == {ttl}, name
        assert dns_endpoint(host, ns, f"service-{broken}") is None

        time.sleep(max(0.0, first_failure + WINDOW - time.monotonic()))  # the observation window itself
        attempts = failed_reconciles(aggregator)
        # 0.5 s doubling: attempts at 0, 0.5, 1.5, 3.5, 7.5 and 15.5 s; a fixed 1 s retry makes about 20
        assert 4 <= attempts <= 8, f"{attempts} attempts in {WINDOW:.0f}s"
        assert "retry_in_seconds" in aggregator.log()

        # fixed by its owner: a spec change is reconciled at once, not after the backoff (next retry ~16 s away)
        remove_policy(host, policy)
        wait_for(lambda: not refused(host, ns, f"service-{broken}"), timeout=30, what="the policy to be gone")
        host.merge_patch(SERVICE_DNS_RECORDS.path(ns, broken), {"spec": {"recordTTL": 60}})
        glob = f"{broken}.{ns}.fleet.svc.example.com"
        wait_records(host, ns, f"service-{broken}", lambda r: r.get((glob, "A")) == set(VIPS.values()), timeout=10)
