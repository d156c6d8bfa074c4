"""Real etcd, kube-apiserver, CoreDNS and ExternalDNS as local processes on loopback (envtest-style).

Used by the tests, the benchmarks and the demo; nothing here is a fake.
"""

from fleetdns.rig.apiserver import KubeAPIServer
from fleetdns.rig.binaries import binary
from fleetdns.rig.coredns import CoreDNS
from fleetdns.rig.etcd import EtcdCluster, EtcdServer
from fleetdns.rig.externaldns import ExternalDNS
from fleetdns.rig.fleet import Fleet
from fleetdns.rig.process import ManagedProcess, RigError

__all__ = [
    "CoreDNS",
    "EtcdCluster",
    "EtcdServer",
    "ExternalDNS",
    "Fleet",
    "KubeAPIServer",
    "ManagedProcess",
    "RigError",
    "binary",
]
