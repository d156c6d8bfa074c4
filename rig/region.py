"""One region's DNS data path as real processes: etcd -> CoreDNS, fed by ExternalDNS -> webhook provider.

Used by the end-to-end tests, the benchmarks and the demo, so each starts the stack the same way: the chart's
publisher pod (the webhook and ExternalDNS) and CoreDNS pod (CoreDNS and its zone-file sidecar), as the region role
renders them, against the rig's etcd (region.etcd.external.endpoints) and host.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fleetdns.dnsview import DNSView
from rig.chartwiring import CHART, LocalPod, merge, render, split_flags
from rig.coredns import RegionalCoreDNS, regional_coredns
from rig.etcd import EtcdServer
from rig.externaldns import ExternalDNS
from rig.ports import free_port
from rig.process import ManagedProcess, stop_together
from rig.secure_etcd import ETCD_CLIENT_SECRET, ETCD_USER_SECRET, EtcdClientTLS, EtcdPasswordUser
from rig.waiting import wait_for
from rig.webhook_client import WebhookClient

PUBLISHER_SECRET = "fleetdns-host-publisher"  # region.hostAccess.publisherSecret's default

# A test's webhook flags the chart has a value for (the rest go to region.publisher.webhook.extraArgs).
_WEBHOOK_VALUES = {
    "--max-request-bytes": ("region", "publisher", "webhook", "maxRequestBytes"),
    "--etcd-max-txn-ops": ("region", "etcd", "maxTxnOps"),
    "--dnsendpoint-namespace": ("region", "hostAccess", "dnsEndpointNamespace"),
    "--dnsendpoint-label-filter": ("region", "publisher", "labelFilter"),
    "--log-level": ("logLevel",),
    "--log-format": ("logFormat",),
}
_EXTERNALDNS_VALUES = {"--interval": ("region", "publisher", "externalDNS", "interval"),
                       "--label-filter": ("region", "publisher", "labelFilter")}


def publisher_values(region: str, zone: str, etcd_endpoints: list[str], prefix: str, ports: dict[str, int],
                     webhook_args: Sequence[str] = (), env: dict[str, str] | None = None,
                     externaldns_args: Sequence[str] = (), etcd_tls: bool = False,
                     etcd_user: EtcdPasswordUser | None = None) -> dict[str, Any]:
    """The region role's values for one publisher pod (webhook + ExternalDNS) on loopback; ``etcd_tls``: etcd's
    client certificate from the Secret ``ETCD_CLIENT_SECRET``; ``etcd_user``: the webhook's etcd user and password
    (from the Secret ``ETCD_USER_SECRET``)."""
    webhook_given, webhook_extra = split_flags(list(webhook_args), _WEBHOOK_VALUES,
                                               {"--max-request-bytes": int, "--etcd-max-txn-ops": int})
    edns_given, edns_extra = split_flags(list(externaldns_args), _EXTERNALDNS_VALUES)
    base = {"listenAddress": "127.0.0.1",
            "region": {"enabled": True, "name": region, "zone": zone, "prober": {"enabled": False},
                       "etcd": {"external": {"endpoints": list(etcd_endpoints)},
                                "tls": {"enabled": etcd_tls, "clientSecret": ETCD_CLIENT_SECRET}, "prefix": prefix},
                       "publisher": {
                           "webhook": {"port": ports["webhook"], "healthPort": ports["health"],
                                       "relayPort": ports["relay"], "extraArgs": webhook_extra,
                                       "extraEnv": [{"name": k, "value": v} for k, v in sorted((env or {}).items())]
                                       + (etcd_user.extra_env() if etcd_user else [])},
                           "externalDNS": {"metricsPort": ports["externaldns"], "extraArgs": edns_extra}}}}
    return merge(base, webhook_given, edns_given)


class WebhookProvider:
    """The webhook provider as a child process, ready once it negotiates and etcd answers.

    With ``host_kubeconfig`` (a region's webhook): the chart's ``webhook`` container of the publisher pod, the host
    kubeconfig as its Secret, ``domain_filter`` the region's zone, ``extra_args`` and ``env`` as chart values (or
    ``extraArgs``, ``extraEnv``); ``pod`` then also runs ExternalDNS (``Region``). Without: a plain ExternalDNS
    webhook (no host relay, no lag check, any domain filter), a configuration the chart does not render, with
    ``python -m webhook_provider`` and these flags, for the tests of the program itself."""

    def __init__(self, etcd_endpoints: list[str], workdir: Path, domain_filter: str | None = None,
                 prefix: str = "/skydns/", extra_args: list[str] | None = None, name: str = "webhook",
                 env: dict[str, str] | None = None, host_kubeconfig: Path | None = None, region: str = "",
                 host_relay: bool = True, externaldns_args: Sequence[str] = (), chart: Path = CHART,
                 etcd_tls: EtcdClientTLS | None = None, etcd_user: EtcdPasswordUser | None = None) -> None:
        """``host_kubeconfig``: the host cluster, for the lag check and (``host_relay``) the relay of ExternalDNS's
        connection; ``externaldns_args``: the pod's ExternalDNS flags, as values or its ``extraArgs``; ``etcd_tls``:
        the client certificate (region.etcd.tls) of a region's webhook; ``etcd_user``: its etcd user and password
        (``extraEnv``, the password from a Secret)."""
        self.port = free_port()
        self.health_port = free_port()
        self.relay_port = free_port() if host_kubeconfig is not None and host_relay else None
        self.pod: LocalPod | None = None
        self.externaldns_metrics_port = free_port()
        if host_kubeconfig is not None:
            if not domain_filter or not region:
                raise ValueError("a region's webhook needs its zone (domain_filter) and region name")
            ports = {"webhook": self.port, "health": self.health_port, "relay": self.relay_port or free_port(),
                     "externaldns": self.externaldns_metrics_port}
            # Without the relay (host_relay false, a comparison the chart does not render) the webhook relays nothing.
            webhook_args = [*(extra_args or []), *([] if host_relay else ["--host-relay-listen="])]
            rendered = render(publisher_values(region, domain_filter, etcd_endpoints, prefix, ports, webhook_args, env,
                                               externaldns_args, etcd_tls=etcd_tls is not None, etcd_user=etcd_user),
                              chart)
            secrets: dict[str, Mapping[str, Path | str]] = {PUBLISHER_SECRET: {"kubeconfig": Path(host_kubeconfig)}}
            if etcd_tls is not None:
                secrets[ETCD_CLIENT_SECRET] = etcd_tls.secret()
            if etcd_user is not None:
                secrets[ETCD_USER_SECRET] = etcd_user.secret()
            self.pod = LocalPod(rendered, "fleetdns-publisher", name, workdir / f"{name}-pod", secrets=secrets)
            argv, environment = self.pod.process("webhook")
            self.process = ManagedProcess(name, argv, workdir / f"{name}.log", env=environment, inherit_env=False)
            self.client = WebhookClient(self.url, f"http://127.0.0.1:{self.health_port}")
            return
        args = [
            sys.executable, "-m", "webhook_provider",
            f"--etcd-endpoints={','.join(etcd_endpoints)}",
            f"--prefix={prefix}",
            f"--listen=127.0.0.1:{self.port}",
            f"--health-listen=127.0.0.1:{self.health_port}",
            *([f"--domain-filter={domain_filter}"] if domain_filter else []),
            *(extra_args or []),
        ]
        self.process = ManagedProcess(name, args, workdir / f"{name}.log", env=env)
        self.client = WebhookClient(self.url, f"http://127.0.0.1:{self.health_port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60, wait_for_etcd: bool = True) -> WebhookProvider:
        """Start; wait until it negotiates and (unless told not to, e.g. etcd is down on purpose) is ready."""
        self.process.start()
        self.process.wait_until(lambda: self._ready(wait_for_etcd), timeout, "negotiating")
        return self

    def _ready(self, wait_for_etcd: bool) -> bool:
        probe = WebhookClient(self.url, f"http://127.0.0.1:{self.health_port}", timeout=1)
        return probe.negotiate().status_code == 200 and (not wait_for_etcd or probe.ready() == 200)

    def kill(self) -> None:
        """SIGKILL: a crashed webhook (and with it ExternalDNS's relay to the host); ``start`` runs it again in place,
        on the same ports."""
        self.process.kill()

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
        ``nameserver_address``: CoreDNS answers on that address's port 53 only (what the parent's glue names)."""
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
                                       extra_args=[f"--dnsendpoint-label-filter={self.label_filter}"],
                                       externaldns_args=[f"--label-filter={self.label_filter}", *self.sync,
                                                         *self.externaldns_args]).start()
        name = f"external-dns-{self.name}"
        if self.host_relay:
            assert self.webhook.pod is not None
            self.externaldns = ExternalDNS.of_pod(self.webhook.pod, self.webhook.externaldns_metrics_port,
                                                  self.workdir, name).start()
            return self
        # ExternalDNS straight to the host (the lag check alone): a comparison the chart does not render.
        self.externaldns = ExternalDNS(self.host_kubeconfig, [
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
        ], workdir=self.workdir, name=name).start()
        return self

    def _new_coredns(self) -> RegionalCoreDNS:
        self._generation += 1
        workdir = self.workdir / ("coredns" if self._generation == 1 else f"coredns-{self._generation}")
        return regional_coredns(self.zone, self.etcd.endpoints, workdir, f"coredns-{self.name}", region=self.name,
                                geoip_db=self.geoip_db, nameserver_address=self.nameserver_address)

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
