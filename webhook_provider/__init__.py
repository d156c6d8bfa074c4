"""ExternalDNS webhook provider that keeps CoreDNS's records (SkyDNS layout) in etcd; see README.md."""
