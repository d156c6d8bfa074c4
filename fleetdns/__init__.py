"""Shared core of FleetDNS: the ExternalDNS endpoint model, DNS-name handling, logging, and the test rig."""
