"""Rendering: DNSEndpoint records, the intent status and the events a status change announces."""
