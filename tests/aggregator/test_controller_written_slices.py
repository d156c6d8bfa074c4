"""Failover through the members' own controllers: an app scaled to zero in one member leaves the global name, as
the real EndpointSlice controller reports it (no hand-written slice on this path)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rig import Fleet
from rig.aggregator import AggregatorProcess
from rig.workloads import set_load_balancer_status
from tests.support.aggregator import (
    VIPS,
    create_domain,
    create_service_intent,
    global_name,
    new_namespace,
    prepare_fleet,
    unique,
    wait_for,
    wait_records,
)
from tests.support.apps import (
    ENDPOINTSLICE_CONTROLLER,
    MANAGED_BY,
    deploy_app,
    endpoint_slices,
    kubectl,
    ready_addresses,
)

pytestmark = pytest.mark.apiserver


@pytest.fixture(scope="module")
def controlled_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Host, east and west, both members running kube-controller-manager, kube-scheduler and kwok."""
    with Fleet(workdir=tmp_path_factory.mktemp("fleet"), controllers=("east", "west")) as fleet:
        yield fleet


def test_an_app_scaled_to_zero_in_one_member_leaves_the_global_name(controlled_fleet: Fleet, tmp_path: Path):
    fleet = controlled_fleet
    host = prepare_fleet(fleet)
    ns = new_namespace(fleet, "agg-ctl")
    create_domain(host, ns)
    name = unique("web")
    for cluster, member in fleet.members.items():
        deploy_app(member, ns, name, replicas=2, service_type="LoadBalancer")
        # The address a cloud's load-balancer controller would publish (the rig has none).
        set_load_balancer_status(member.api_client(), ns, name, ips=[VIPS[cluster]])
    for member in fleet.members.values():  # ready pods, in no slice but the EndpointSlice controller's
        wait_for(lambda m=member: len(ready_addresses(m, ns, name)) == 2, timeout=60, what="2 ready endpoints")
        assert {piece.metadata.labels.get(MANAGED_BY) for piece in endpoint_slices(member, ns, name)} == \
            {ENDPOINTSLICE_CONTROLLER}
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
