"""Shared core of FleetDNS: the ExternalDNS endpoint model, DNS-name handling, flags and logging, the Kubernetes
plumbing (API paths, client, informers, Lease election), and the SkyDNS records in etcd (``skydns/``) that the
webhook writes and the serving stage reads. It imports no component (README.md)."""
