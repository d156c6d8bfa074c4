"""The whole chain's tests (tests/e2e/): what every test on a Federation sets up the same way."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from fleetdns.apipaths import DOMAINS
from fleetdns.kubeapi import KubeClient
from rig.federation import Federation
from rig.workloads import ensure_namespace
from tests.support.aggregator import DOMAIN_REF


def federation_namespace(fed: Federation, host: KubeClient, prefix: str) -> str:
    """A fresh namespace (``prefix``) on every API server of the federation, with the Domain ``fleet`` for its zone."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    for server in fed.fleet.servers:
        ensure_namespace(server.api_client(), name)
    host.create(DOMAINS.path(name), DOMAINS.manifest(DOMAIN_REF, spec={"domain": fed.zone}))
    return name


PROBER_REGIONS = ("east", "west", "north")


def running_federation(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Federation]:
    """A federation with probers in three regions' network namespaces, for one module; stopped even when it fails."""
    federation = Federation(tmp_path_factory.mktemp(name), prober_regions=PROBER_REGIONS)
    try:
        federation.start()
        yield federation
    finally:
        federation.stop()
