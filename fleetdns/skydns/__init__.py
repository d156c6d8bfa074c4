"""CoreDNS's records in etcd (the SkyDNS layout), as the webhook writes them and the zone-file sidecar reads them:
the record model, the key/value encoding, the etcd store and its watched mirror, their settings and metrics."""
