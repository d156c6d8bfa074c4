"""A host that lacks one intent kind's CRD is normal (an install upgraded before its CRDs were applied, or one that
serves no routes): the aggregator and each region's prober go on serving every other kind, and each says once which
CRD is missing and how to install it; installing it is enough, without a restart. A fresh host API server with every
CRD of manifests/crds/ but the GatewayDNSRecord one; the members are the session fleet's."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetdns.apipaths import HTTP_ROUTES
from rig import Fleet, KubeAPIServer
from rig.aggregator import AggregatorProcess, client_for
from rig.prober import ProberProcess
from rig.workloads import CRD_DIR, apply_crds, ensure_namespace, register_member
from tests.support.aggregator import (
    REGIONS,
    VIPS,
    accepted_http_route,
    create_domain,
    create_service_intent,
    deploy_service,
    new_namespace,
    samples,
    unique,
    wait_for,
    wait_records,
)

pytestmark = pytest.mark.apiserver
MEMBERS = ("east", "west")
MISSING = "gatewaydnsrecords"
HINT = ("the host does not serve GatewayDNSRecord (CRD gatewaydnsrecords.fleetdns.io not installed): install the CRDs "
        "with `kubectl apply -f manifests/crds/`")


def test_a_host_without_the_gateway_dns_record_crd_keeps_the_aggregator_and_the_probers_working_until_installed(
        fleet: Fleet, tmp_path: Path) -> None:
    with KubeAPIServer("no-gateway-records", tmp_path / "host") as bare:
        api = bare.api_client()
        apply_crds(api, files=[path for path in sorted(CRD_DIR.glob("*.yaml")) if MISSING not in path.name])
        for member in MEMBERS:
            register_member(api, member, *REGIONS[member], fleet.members[member].embedded_kubeconfig())
        fleet.install_gateway_api("east")  # the members serve routes; the host lacks GatewayDNSRecords
        host = client_for(bare)
        namespace = new_namespace(fleet, "no-gdr")
        ensure_namespace(api, namespace)
        create_domain(host, namespace)
        name = unique("web")
        deploy_service(fleet, namespace, name, {c: {"ip": VIPS[c], "ready": True} for c in MEMBERS})
        create_service_intent(host, namespace, name)

        # The prober is ready (its first round done without GatewayDNSRecords) and renews its region's Lease.
        with ProberProcess("east", bare.kubeconfig, tmp_path, args=[
                f"--namespace={namespace}", f"--lease-namespace={namespace}", "--log-format=text"]) as prober, \
                AggregatorProcess(bare.kubeconfig, [
                    f"--namespace={namespace}", f"--prober-lease-namespace={namespace}", "--leader-election=false",
                    "--log-format=text"], tmp_path / "aggregator") as aggregator:
            glob = f"{name}.{namespace}.fleet.svc.example.com"
            wait_records(host, namespace, f"service-{name}", lambda r: r.get((glob, "A")) == set(VIPS.values()),
                         timeout=30)
            wait_for(lambda: dict(((labels.get("region"), value) for labels, value in
                                   samples(aggregator, "fleetdns_aggregator_prober_region_fresh"))).get("east") == 1,
                     30, what="the east prober's region voting (its Lease renewed)")
            for component, log in (("prober", prober.log()), ("aggregator", aggregator.log())):
                assert HINT in log, f"{component} log:\n{log[-3000:]}"

            # The fix the logs name is enough, without a restart: an HTTPRoute annotated meanwhile is held back
            # (counted, never tried against the 404) and gets its intent once the CRD is installed.
            route = unique("route")
            hostname = f"{route}.example.com"
            accepted_http_route(fleet, "east", namespace, route, hostname)
            client_for(fleet.members["east"]).merge_patch(HTTP_ROUTES.path(namespace, route), {"metadata": {
                "annotations": {"fleetdns.io/global": "true", "fleetdns.io/domain": "fleet"}}})
            wait_for(lambda: skipped(aggregator, "kind_not_served") == 1, 30, what="the request held back, counted")
            apply_crds(api, files=[CRD_DIR / f"fleetdns.io_{MISSING}.yaml"])
            wait_records(host, namespace, f"gateway-{route}", lambda r: r == {(hostname, "A"): {VIPS["east"]}},
                         timeout=30)
            assert "generating an intent failed" not in aggregator.log(), aggregator.log()[-3000:]
            wait_for(lambda: "intent kind readable again" in prober.log(), 30, what="the prober listing the kind")


def skipped(aggregator: AggregatorProcess, reason: str) -> float:
    return sum(value for labels, value in samples(aggregator, "fleetdns_aggregator_generation_skips_total")
               if labels.get("reason") == reason)
