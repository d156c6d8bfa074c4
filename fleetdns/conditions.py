"""The condition types FleetDNS writes on its objects' status, and that people and tools read back.

The aggregator sets them (aggregator/render/status.py); the ``fleetdns`` command reads them (cli/)."""

READY = "Ready"  # an intent: its names are published as decided (False: the reason says why not)
DEGRADED = "Degraded"  # an intent: some clusters are out of its answer
FAIL_OPEN = "FailOpen"  # an intent: no cluster is healthy and the last healthy set still answers
REACHABLE = "Reachable"  # a MemberCluster: every watch and the /readyz probe answer
ACCEPTED = "Accepted"  # a DNSView: served (False: it overlaps an earlier view)
