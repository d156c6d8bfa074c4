"""Shared core of FleetDNS: the ExternalDNS endpoint model, DNS-name handling, logging, and the Kubernetes
plumbing (API paths, client, informers, Lease election) the aggregator and the prober both use."""
