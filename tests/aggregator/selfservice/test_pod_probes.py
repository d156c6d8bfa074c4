"""The health check derived from the pods' readiness probes: its port through the Service's ports, the most common
probe among disagreeing pods, the timeout cut to the period, and why there is none."""

from __future__ import annotations

from typing import Any

import pytest

from aggregator.selfservice.pod_probes import (
    ProbeVerdict,
    common_probe,
    derive_health_check,
    pod_probe,
    read_verdict,
    selector_query,
)
from aggregator.sources.service import ServicePort, parse_member_service
from fleetdns.healthcheck import Scheme
from fleetdns.kubeapi import KubeError

pytestmark = pytest.mark.unit


# --- the health check from the pods' readiness probes ----------------------------------------------------------

def pod(probe: dict[str, Any] | None, ports: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "ports": ports or [{"name": "http", "containerPort": 8080}]}
    if probe is not None:
        container["readinessProbe"] = probe
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "sidecar"}, container]}, **extra}


HTTP_PROBE = {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5, "failureThreshold": 2}


def service_ports(*entries: dict[str, Any]) -> tuple[ServicePort, ...]:
    return parse_member_service({"metadata": {"name": "web", "namespace": "shop"},
                                 "spec": {"type": "LoadBalancer", "ports": list(entries)}}).ports


def test_a_probe_on_a_container_port_number_is_sent_to_the_service_port_that_targets_it() -> None:
    verdict = common_probe([pod_probe(pod(HTTP_PROBE))] * 3)
    ports = service_ports({"name": "metrics", "port": 9090, "targetPort": 9090},
                          {"name": "web", "port": 80, "targetPort": 8080})
    derived = derive_health_check(verdict, ports)
    assert derived.check is not None and derived.check.http_get is not None
    assert (derived.check.http_get.port, derived.check.http_get.path, derived.check.http_get.scheme) == (
        80, "/ready", Scheme.HTTP)
    assert derived.check.http_get.host == ""  # the generated intent's own name is sent
    # the probe's timing comes along (kubelet's defaults where it sets none)
    assert (derived.check.period_seconds, derived.check.timeout_seconds, derived.check.failure_threshold,
            derived.check.success_threshold) == (5, 1, 2, 1)
    assert derived.note == ""


def test_a_named_probe_port_matches_a_target_port_by_name_or_by_the_number_it_names() -> None:
    named = common_probe([pod_probe(pod({"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTPS"}}))])
    assert named.probe is not None and (named.probe.port, named.probe.port_name) == (8080, "http")
    by_name = derive_health_check(named, service_ports({"port": 443, "targetPort": "http"}))
    by_number = derive_health_check(named, service_ports({"port": 8443, "targetPort": 8080}))
    assert by_name.check is not None and by_name.check.http_get is not None
    assert (by_name.check.http_get.port, by_name.check.http_get.scheme) == (443, Scheme.HTTPS)
    assert by_number.check is not None and by_number.check.http_get is not None
    assert by_number.check.http_get.port == 8443
    # a probe by number matches a targetPort naming that container port too
    numbered = common_probe([pod_probe(pod(HTTP_PROBE))])
    assert derive_health_check(numbered, service_ports({"port": 80, "targetPort": "http"})).check is not None


def test_a_service_port_without_target_port_targets_its_own_number() -> None:
    verdict = common_probe([pod_probe(pod({"httpGet": {"path": "/", "port": 8080}}))])
    derived = derive_health_check(verdict, service_ports({"port": 8080}))
    assert derived.check is not None and derived.check.port == 8080


def test_no_service_port_targeting_the_probe_means_no_check_and_says_why() -> None:
    verdict = common_probe([pod_probe(pod(HTTP_PROBE))])
    derived = derive_health_check(verdict, service_ports({"port": 80, "targetPort": 9000},
                                                         {"port": 8080, "targetPort": 8080, "protocol": "UDP"}))
    assert derived.check is None
    assert derived.note == "no Service port targets the readiness probe's container port http: no health check"


@pytest.mark.parametrize("probe", [
    None,
    {"exec": {"command": ["true"]}},
    {"tcpSocket": {"port": 8080}},
    {"httpGet": {"path": "/", "port": "admin"}},  # names no container port: kubelet could not probe it either
])
def test_pods_without_an_http_readiness_probe_give_no_check(probe: dict[str, Any] | None) -> None:
    verdict = common_probe([pod_probe(pod(probe)), pod_probe(pod(probe))])
    assert verdict.probe is None and verdict.pods == 2
    assert derive_health_check(verdict, service_ports({"port": 80, "targetPort": 8080})).check is None


def test_pods_that_disagree_give_the_most_common_probe_and_the_disagreement_is_reported() -> None:
    old = pod_probe(pod({"httpGet": {"path": "/ready", "port": 8080}}))
    new = pod_probe(pod({"httpGet": {"path": "/v2/ready", "port": 8080}}))
    verdict = common_probe([old, new, new, None])
    assert verdict.probe == new
    assert verdict.note == ("pods disagree: 2 of 4 with HTTP /v2/ready on container port http (8080) (used); "
                            "1 with HTTP /ready on container port http (8080); 1 with no HTTP readiness probe")
    # a tie goes to the first pod's probe; pods without a probe never win while one has a probe
    assert common_probe([old, new]).probe == old
    assert common_probe([None, None, old]).probe == old


def test_an_ingress_or_route_is_checked_on_port_80_or_443_of_its_ingress_by_the_probes_scheme() -> None:
    http = derive_health_check(common_probe([pod_probe(pod(HTTP_PROBE))]), None)
    https = derive_health_check(common_probe([pod_probe(pod({"httpGet": {"path": "/s", "port": 8080,
                                                                         "scheme": "HTTPS"}}))]), None)
    assert http.check is not None and http.check.http_get is not None and http.check.http_get.port == 80
    assert https.check is not None and https.check.http_get is not None
    assert (https.check.http_get.port, https.check.http_get.scheme, https.check.http_get.path) == (
        443, Scheme.HTTPS, "/s")


def test_a_probe_timeout_longer_than_its_period_is_cut_to_the_period() -> None:
    verdict = common_probe([pod_probe(pod({"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 2,
                                           "timeoutSeconds": 5}))])
    check = derive_health_check(verdict, None).check
    assert check is not None and (check.period_seconds, check.timeout_seconds) == (2, 2)


def test_pods_being_deleted_do_not_count_and_a_failed_list_gives_no_check_with_the_reason() -> None:
    leaving = pod({"httpGet": {"path": "/old", "port": 8080}}, metadata={"name": "x", "deletionTimestamp": "t"})
    staying = pod(HTTP_PROBE)
    verdict = read_verdict(lambda ns, sel: [leaving, staying], ("east", "shop", "app=web"))
    assert verdict.probe is not None and verdict.probe.path == "/ready" and verdict.pods == 1

    def forbidden(namespace: str, selector: str) -> list[dict[str, Any]]:
        raise KubeError(403, "Forbidden", "pods is forbidden")

    failed = read_verdict(forbidden, ("east", "shop", "app=web"))
    assert failed == ProbeVerdict(None, 0, "cannot list pods in east: 403 Forbidden", error=True)
    assert derive_health_check(failed, ()).check is None


def test_a_services_selector_becomes_an_equality_label_query() -> None:
    assert selector_query({"tier": "front", "app": "web"}.items()) == "app=web,tier=front"
