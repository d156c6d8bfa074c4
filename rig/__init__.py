"""Real etcd, kube-apiserver, CoreDNS and ExternalDNS as local processes on loopback (envtest-style).

Used by the tests, the benchmarks and the demo; nothing here is a fake.
"""

from rig.apiserver import KubeAPIServer
from rig.binaries import binary
from rig.coredns import CoreDNS
from rig.etcd import EtcdCluster, EtcdServer
from rig.externaldns import ExternalDNS
from rig.fleet import Fleet
from rig.process import ManagedProcess, RigError

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
