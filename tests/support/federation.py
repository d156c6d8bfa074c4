"""The whole chain's tests (tests/e2e/): what every test on a Federation sets up the same way."""

from __future__ import annotations

import uuid

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
