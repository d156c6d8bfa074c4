"""Every health verdict: the readiness rule per member, the probers' quorum, the latency index."""
