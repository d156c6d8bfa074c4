"""One region's DNS data path as real processes: etcd -> CoreDNS, fed by ExternalDNS -> webhook provider.

Used by the end-to-end tests, the benchmarks and the demo, so each starts the stack the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from fleetdns.dnsview import DNSView
from rig.coredns import RegionalCoreDNS, regional_coredns
from rig.etcd import EtcdServer
from rig.externaldns import ExternalDNS
from rig.ports import free_port
from rig.process import ManagedProcess, stop_together
from rig.waiting import wait_for
from rig.webhook_client import WebhookClient


def relay_kubeconfig(port: int) -> str:
    """A kubeconfig for ExternalDNS pointing at the webhook's host relay (plain HTTP on loopback; the relay
    adds the credentials)."""
    return (f"apiVersion: v1\nkind: Config\nclusters:\n- name: host-relay\n  cluster:\n"
            f"    server: http://127.0.0.1:{port}\nusers:\n- name: relay\n  user: {{}}\ncontexts:\n"
            f"- name: relay\n  context:\n    cluster: host-relay\n    user: relay\ncurrent-context: relay\n")


class WebhookProvider:
    """``python -m webhook_provider`` as a child process, ready once it negotiates and etcd answers."""

    def __init__(self, etcd_endpoints: list[str], workdir: Path, domain_filter: str | None = None,
                 prefix: str = "/skydns/", extra_args: list[str] | None = None, name: str = "webhook",
                 env: dict[str, str] | None = None, host_kubeconfig: Path | None = None, region: str = "",
                 host_relay: bool = True) -> None:
        """``host_kubeconfig``: the host cluster, for the lag check and (``host_relay``) the relay of ExternalDNS's
        connection, whose kubeconfig is then ``relay_kubeconfig``."""
        self.port = free_port()
        self.health_port = free_port()
        self.relay_port = free_port() if host_kubeconfig is not None and host_relay else None
        self.relay_kubeconfig = workdir / f"{name}-relay.kubeconfig"
        host_args = [f"--host-kubeconfig={host_kubeconfig}", f"--region={region}",
                     f"--host-relay-listen=127.0.0.1:{self.relay_port}" if self.relay_port else "--host-relay-listen="
                     ] if host_kubeconfig is not None else []
        if self.relay_port:
            workdir.mkdir(parents=True, exist_ok=True)
            self.relay_kubeconfig.write_text(relay_kubeconfig(self.relay_port))
        args = [
            sys.executable, "-m", "webhook_provider",
            f"--etcd-endpoints={','.join(etcd_endpoints)}",
            f"--prefix={prefix}",
            f"--listen=127.0.0.1:{self.port}",
            f"--health-listen=127.0.0.1:{self.health_port}",
            *([f"--domain-filter={domain_filter}"] if domain_filter else []),
            *host_args,
            *(extra_args or []),
        ]
        self.process = ManagedProcess(name, args, workdir / f"{name}.log", env=env)
        self.client = WebhookClient(self.url, f"http://127.0.0.1:{self.health_port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15, wait_for_etcd: bool = True) -> WebhookProvider:
        """Start; wait until it negotiates and (unless told not to, e.g. etcd is down on purpose) is ready."""
        self.process.start()
        self.process.wait_until(lambda: self._ready(wait_for_etcd), timeout, "negotiating")
        return self

    def _ready(self, wait_for_etcd: bool) -> bool:
        probe = WebhookClient(self.url, f"http://127.0.0.1:{self.health_port}", timeout=1)
        return probe.negotiate().status_code == 200 and (not wait_for_etcd or probe.ready() == 200)

    def stop(self) -> None:
        self.process.stop()


# A region publishes every DNSEndpoint but the delegation meant for the parent zone (docs/design/delegation.md).
REGION_LABEL_FILTER = "fleetdns.io/publish!=parent"
# A parent zone's ExternalDNS publishes only that delegation, NS included.
PARENT_LABEL_FILTER = "fleetdns.io/publish=parent"
PARENT_RECORD_TYPES = ("A", "AAAA", "NS")


class Region:
    """etcd + CoreDNS (the region's Corefile: its region view as catch-all, a block per DNSView served) + webhook
    provider + ExternalDNS watching the host's DNSEndpoints. ``Region.parent`` is the same stack serving a global
    zone's parent zone, as the user's existing DNS does."""

    # ExternalDNS v0.22 delays event-triggered syncs by a fixed 5 s. Its loop wakes on a 1 s ticker and
    # runs when the interval has passed since the last run *started*: --interval=1s misses every other
    # tick (a 2 s cadence), 500ms runs on every tick. One cheap GET /records per second per region.
    DEFAULT_SYNC = ("--interval=500ms",)

    def __init__(self, name: str, zone: str, host_kubeconfig: Path, workdir: Path, *,
                 externaldns_args: list[str] | None = None, sync: tuple[str, ...] = DEFAULT_SYNC,
                 views: Sequence[DNSView] = (), geoip_db: Path | None = None, host_relay: bool = True,
                 label_filter: str = REGION_LABEL_FILTER, nameserver_address: str = "") -> None:
        """``views``: the DNSViews this region's CoreDNS serves (a block each, before the region's own view);
        ``geoip_db``: the MaxMind database views by country or continent need; ``host_relay``: ExternalDNS
        reaches the host through the webhook's relay, as the shipped manifests run it (False: directly, the
        lag check only); ``label_filter``: the DNSEndpoints ExternalDNS (and the webhook's lag check) read;
        ``nameserver_address``: CoreDNS also answers on that address's port 53 (what the parent's glue names)."""
        self.label_filter = label_filter
        self.nameserver_address = nameserver_address
        self.host_relay = host_relay
        self.name = name
        self.zone = zone
        self.workdir = workdir
        self.etcd = EtcdServer(workdir / "etcd")
        self.host_kubeconfig = host_kubeconfig
        self.externaldns_args = externaldns_args or []
        self.sync = sync
        self.views = tuple(views)  # what the sidecar serves once the webhook copied the host's DNSViews
        self.geoip_db = geoip_db
        self.coredns: RegionalCoreDNS | None = None
        self._generation = 0  # each CoreDNS (re)start gets its own work directory
        self.webhook: WebhookProvider | None = None
        self.externaldns: ExternalDNS | None = None

    def start(self) -> Region:
        self.etcd.start()
        self.coredns = self._new_coredns().start()
        self.webhook = WebhookProvider(self.etcd.endpoints, self.workdir, domain_filter=self.zone,
                                       name=f"webhook-{self.name}", host_kubeconfig=self.host_kubeconfig,
                                       region=self.name, host_relay=self.host_relay,
                                       extra_args=[f"--dnsendpoint-label-filter={self.label_filter}"]).start()
        kubeconfig = self.webhook.relay_kubeconfig if self.host_relay else self.host_kubeconfig
        self.externaldns = ExternalDNS(kubeconfig, [
            "--source=crd",
            "--provider=webhook",
            f"--webhook-provider-url={self.webhook.url}",
            "--registry=txt",
            f"--txt-owner-id=fleetdns-{self.name}",
            "--policy=sync",
            f"--domain-filter={self.zone}",
            f"--label-filter={self.label_filter}",
            *self.sync,
            *self.externaldns_args,
        ], workdir=self.workdir, name=f"external-dns-{self.name}").start()
        return self

    def _new_coredns(self) -> RegionalCoreDNS:
        self._generation += 1
        workdir = self.workdir / ("coredns" if self._generation == 1 else f"coredns-{self._generation}")
        return regional_coredns(self.zone, self.etcd.endpoints, workdir, f"coredns-{self.name}", region=self.name,
                                geoip_db=self.geoip_db, nameserver_address=self.nameserver_address,
                                live_views=True)

    @classmethod
    def parent(cls, name: str, zone: str, host_kubeconfig: Path, workdir: Path) -> Region:
        """The parent zone's DNS (``example.com`` of ``gslb.example.com``): its own etcd, CoreDNS and zone files, fed
        by its own ExternalDNS and webhook, which publish only the delegation DNSEndpoints (NS and glue)."""
        return cls(name, zone, host_kubeconfig, workdir, label_filter=PARENT_LABEL_FILTER,
                   externaldns_args=[f"--managed-record-types={t}" for t in PARENT_RECORD_TYPES])

    def serve_views(self, views: Sequence[DNSView], timeout: float = 30) -> RegionalCoreDNS:
        """Wait until this region's CoreDNS runs a block for exactly these views, in this order: nothing restarts,
        the webhook copies the host's DNSViews into etcd, the sidecar renders the Corefile, CoreDNS reloads it."""
        coredns = self.coredns
        assert coredns is not None
        wanted = [view.name for view in views]
        offset = wait_for(lambda: coredns.corefile_views() == wanted and coredns.log_offset() + 1, timeout,
                          f"region {self.name}'s sidecar rendering views {wanted}") - 1
        wait_for(lambda: coredns.corefile_views() == wanted and coredns.corefile_loaded(offset), timeout,
                 f"region {self.name}'s CoreDNS loading the Corefile with views {wanted}")
        self.views = tuple(views)
        return coredns

    def stop(self) -> None:
        try:
            stop_together(c.stop for c in (self.externaldns, self.webhook, self.coredns) if c is not None)
        finally:
            self.etcd.stop()

    def __enter__(self) -> Region:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
