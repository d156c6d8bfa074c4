"""FleetDNS's tests: one folder per package, e2e/ for the whole federation, support/ for shared helpers."""
