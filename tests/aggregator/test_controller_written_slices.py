"""Failover through a member's own controllers: an app scaled to zero in one member leaves the global name, as
the real EndpointSlice controller reports it (no hand-written slice in that member)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rig import Fleet
from rig.aggregator import AggregatorProcess
from rig.workloads import ENDPOINTSLICE_CONTROLLER, MANAGED_BY, endpoint_slices, kubectl
from tests.support.aggregator import (
    VIPS,
    create_domain,
    create_service_intent,
    deploy_controlled_app,
    deploy_service,
    global_name,
    new_namespace,
    prepare_fleet,
    unique,
    wait_records,
)

pytestmark = pytest.mark.apiserver


def test_an_app_scaled_to_zero_in_one_member_leaves_the_global_name(controlled_fleet: Fleet, tmp_path: Path):
    fleet = controlled_fleet
    host = prepare_fleet(fleet)
    ns = new_namespace(fleet, "agg-ctl")
    create_domain(host, ns)
    name = unique("web")
    deploy_controlled_app(fleet, ns, name, replicas=2)  # east: a Deployment, its slices the controller's
    assert {piece.metadata.labels.get(MANAGED_BY) for piece in endpoint_slices(fleet.members["east"], ns, name)} == \
        {ENDPOINTSLICE_CONTROLLER}
    deploy_service(fleet, ns, name, {"west": {"ip": VIPS["west"], "ready": True}})  # west runs no controllers
    create_service_intent(host, ns, name)
    fqdn = global_name(ns, name)

    with AggregatorProcess(fleet.host.kubeconfig, [f"--namespace={ns}", f"--lease-name={ns}"], tmp_path):
        wait_records(host, ns, f"service-{name}",
                     lambda r: r.get((fqdn, "A")) == {VIPS["east"], VIPS["west"]}, timeout=60)

        kubectl(fleet.members["east"], "scale", f"deployment/{name}", "--replicas=0", "-n", ns)

        wait_records(host, ns, f"service-{name}", lambda r: r.get((fqdn, "A")) == {VIPS["west"]}, timeout=30)

        kubectl(fleet.members["east"], "scale", f"deployment/{name}", "--replicas=2", "-n", ns)

        wait_records(host, ns, f"service-{name}",
                     lambda r: r.get((fqdn, "A")) == {VIPS["east"], VIPS["west"]}, timeout=60)
