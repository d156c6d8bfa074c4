"""FleetDNS aggregator: federates ServiceDNSRecord / IngressDNSRecord intents into DNSEndpoints."""
