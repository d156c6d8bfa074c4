"""Who may publish which name: ownership of DNSEndpoints, claims on names, Domains and the guard rails."""
