"""Real CoreDNS started with a given Corefile, answering on a loopback UDP/TCP port; the regional one (the shipped
Corefile, or the one ``fleetdns-corefile`` renders for a region's views) runs with its zone-file sidecar, as in
production: both containers of the chart's CoreDNS pod, with the arguments and environment the chart renders."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import requests

from fleetdns.dnsview import DNSView, region_view_name
from rig.binaries import binary
from rig.chartwiring import CHART, LocalPod, render
from rig.ports import DNS_PORT, free_port
from rig.process import ManagedProcess
from rig.scrape import scrape
from rig.secure_etcd import ETCD_CLIENT_SECRET, ETCD_USER_SECRET, EtcdClientTLS, EtcdPasswordUser
from serving.corefile import Layout, render_corefile, served_views
from serving.zonefile import zone_file_name

START_TIMEOUT = 20.0
CHECKED_AFTER_SECONDS = 3.0  # the Corefile's reload plugin checks every 2 s (serving.corefile.RELOAD_INTERVAL)


class CoreDNS:
    """CoreDNS whose Corefile is ``corefile`` with ``{port}`` replaced by the DNS port chosen here."""

    def __init__(self, corefile: str, workdir: Path | None = None, host: str = "127.0.0.1",
                 name: str = "coredns", env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.host = host
        self.name = name
        self.port = port or free_port(host, udp_too=True)
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="fleetdns-coredns-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.corefile_path = self.workdir / "Corefile"
        if corefile:  # none: the caller points corefile_path at its own (the chart's ConfigMap volume)
            self.corefile_path.write_text(corefile.replace("{port}", str(self.port)))
        self.env = env
        self.argv = [binary("coredns"), "-conf", str(self.corefile_path)]
        self.inherit_env = True
        self.process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = START_TIMEOUT) -> CoreDNS:
        self.process = ManagedProcess(self.name, self.argv, self.workdir / "coredns.log", env=self.env,
                                      inherit_env=self.inherit_env).start()
        self.process.wait_until(self._answers, timeout, "answering DNS")
        return self

    def _answers(self) -> bool:
        query = dns.message.make_query("fleetdns-rig-probe.invalid.", dns.rdatatype.A)
        dns.query.udp(query, self.host, port=self.port, timeout=0.3)
        return True  # any reply, even NXDOMAIN or REFUSED, means the server is up

    def kill(self) -> None:
        """SIGKILL CoreDNS alone (a regional one's sidecar keeps running); ``start`` runs it again on the same port."""
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> CoreDNS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def etcd_corefile(zone: str, etcd_endpoints: list[str], path: str = "/skydns", extra: str = "") -> str:
    """A minimal Corefile serving ``zone`` from etcd, for tests and the rig (``{port}`` left in place)."""
    return (
        f"{zone}:{{port}} {{\n"
        f"    etcd {{\n"
        f"        path {path}\n"
        f"        endpoint {' '.join(etcd_endpoints)}\n"
        f"    }}\n"
        f"{extra}"
        f"    errors\n"
        f"}}\n"
    )


REGION_COREFILE = Path(__file__).resolve().parents[1] / "coredns" / "Corefile"


def shipped_corefile() -> str:
    """coredns/Corefile as shipped (the ``file`` plugin reading the sidecar's zone file)."""
    return REGION_COREFILE.read_text()


def etcd_cached_corefile(zone: str, etcd_endpoints: list[str], path: str = "/skydns", cache: int | None = 1,
                         cache_capacity: int = 10_000) -> str:
    """The Corefile shipped before the zone file, for comparisons: ``etcd`` read on every query, or through
    ``cache N`` (``None``: no cache), with the same rewrite, weights, probes and metrics. ``{port}`` is left in
    place and the weight file and probe addresses come from the environment ``regional_coredns`` sets: run it as
    ``regional_coredns(..., corefile=etcd_cached_corefile(...))``."""
    if cache is not None and cache < 1:
        raise ValueError(f"cache lifetime must be at least 1 s (None: no cache), got {cache}")
    cache_block = (f"    cache {cache} {{\n        success {cache_capacity}\n        denial {cache_capacity}\n    }}\n"
                   if cache is not None else "")
    return (
        f"{zone}:{{port}} {{\n"
        f"    rewrite name suffix {zone} {zone}\n"
        f"    etcd {{\n        path {path}\n        endpoint {' '.join(etcd_endpoints)}\n    }}\n"
        f"{cache_block}"
        "    loadbalance weighted {$FLEETDNS_WEIGHT_FILE} {\n        reload 1s\n    }\n"
        "    health {$FLEETDNS_HEALTH_ADDR}\n"
        "    ready {$FLEETDNS_READY_ADDR}\n"
        "    prometheus {$FLEETDNS_METRICS_ADDR}\n"
        "    errors\n"
        "}\n"
    )


class ZoneFilesSidecar:
    """``python -m serving.zonefiles`` keeping the zone files of ``zones`` (in ``zone_dir``; one more per
    view of ``views`` in ``zone_dir/<view>/``, the default one overlaid by ``default_view``) and the weight file in
    step with the etcd prefix; ready once it rendered every file from a live mirror."""

    def __init__(self, etcd_endpoints: list[str], prefix: str, zones: list[str], zone_dir: Path, weight_file: Path,
                 workdir: Path, name: str = "zonefiles", extra_args: list[str] | None = None,
                 views: Sequence[str] = (), default_view: str = "") -> None:
        self.zone_dir = zone_dir
        self.weight_file = weight_file
        self.views = tuple(views)
        self.default_view = default_view
        self.health_port = free_port()
        args = [
            sys.executable, "-m", "serving.zonefiles",
            f"--etcd-endpoints={','.join(etcd_endpoints)}", f"--prefix={prefix}", f"--zone={','.join(zones)}",
            f"--zone-dir={zone_dir}", f"--weight-file={weight_file}", f"--health-listen=127.0.0.1:{self.health_port}",
            "--interval=100ms", "--log-format=text",
            *([f"--views={','.join(self.views)}"] if self.views else []),
            *([f"--default-view={default_view}"] if default_view else []),
            *(extra_args or []),
        ]
        self.process = ManagedProcess(name, args, workdir / f"{name}.log")

    @classmethod
    def of_pod(cls, pod: LocalPod, health_port: int, name: str, log: Path) -> ZoneFilesSidecar:
        """The chart's ``zonefiles`` container of ``pod`` (its health port ``health_port``, from the values)."""
        sidecar = cls.__new__(cls)
        argv, env = pod.process("zonefiles")
        flags = {word.partition("=")[0]: word.partition("=")[2] for word in argv[1:]}
        sidecar.zone_dir = Path(flags["--zone-dir"])
        sidecar.weight_file = Path(flags["--weight-file"])
        sidecar.views = tuple(v for v in flags.get("--views", "").split(",") if v)
        sidecar.default_view = flags.get("--default-view", "")
        sidecar.health_port = health_port
        sidecar.process = ManagedProcess(name, argv, log, env=env, inherit_env=False)
        return sidecar

    def zone_file(self, zone: str, view: str = "") -> Path:
        """``db.<zone>`` (the catch-all's: default records overlaid by ``default_view``), or a view's file."""
        return (self.zone_dir / view if view else self.zone_dir) / zone_file_name(zone)

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def start(self) -> ZoneFilesSidecar:
        """Start (again, after ``stop``); the log file is appended to."""
        if not self.process.running:
            self.process.start()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        self.process.wait_until(self.ready, timeout, "ready (zone and weight files rendered from etcd)")

    def ready(self) -> bool:
        return requests.get(self.health_url + "/readyz", timeout=1).status_code == 200

    def metrics(self) -> dict[str, float]:
        return scrape(self.health_url + "/metrics")

    def kill(self) -> None:
        """SIGKILL: a crashed sidecar (CoreDNS keeps serving the files it left); ``start`` runs it again in place."""
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()


class RegionalCoreDNS(CoreDNS):
    """CoreDNS from coredns/Corefile plus its zone-file sidecar: the sidecar starts first and CoreDNS once the
    sidecar is ready (as the pod's readiness gates traffic in production); both stop together. ``conf``: the
    Corefile the sidecar renders (``--corefile``), run instead of ``corefile``."""

    def __init__(self, corefile: str, workdir: Path, host: str, name: str, sidecar: ZoneFilesSidecar,
                 port: int | None = None, conf: Path | None = None) -> None:
        super().__init__(corefile, workdir, host, name, port=port)
        self.sidecar = sidecar
        if conf is not None:
            self.corefile_path = conf

    def start(self, timeout: float = START_TIMEOUT) -> RegionalCoreDNS:
        try:
            self.sidecar.start().wait_ready(timeout)
            super().start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        super().stop()
        self.sidecar.stop()

    def corefile_views(self) -> list[str]:
        """The views with a block in the Corefile CoreDNS runs, in block order."""
        return [line.split()[1] for line in self.corefile_path.read_text().splitlines() if line.startswith("    view ")]

    def corefile_loaded(self, since_log_offset: int) -> bool:
        """Whether CoreDNS runs the Corefile on disk now: it started a configuration ("Running configuration") after
        ``since_log_offset`` (the log's size when that file was seen), or the file is older than a reload check
        (every 2 s exactly, no jitter: a change of the Corefile is loaded within that, unless CoreDNS refused it)."""
        assert self.process is not None
        with open(self.process.log_path, "rb") as log:
            log.seek(since_log_offset)
            if b"Running configuration SHA512" in log.read():
                return True
        return time.time() - self.corefile_path.stat().st_mtime > CHECKED_AFTER_SECONDS

    def log_offset(self) -> int:
        assert self.process is not None
        return self.process.log_path.stat().st_size


GEOIP_SECRET = "fleetdns-geoip"  # the rig's stand-in Secret for region.geoip (key GeoLite2-City.mmdb)


def regional_coredns(zone: str, etcd_endpoints: list[str], workdir: Path, name: str, host: str = "127.0.0.1",
                     etcd_path: str = "skydns", corefile: str | None = None, views: Sequence[DNSView] = (),
                     region: str | None = None, geoip_db: Path | None = None, chart: Path = CHART,
                     nameserver_address: str = "", etcd_tls: EtcdClientTLS | None = None,
                     etcd_user: EtcdPasswordUser | None = None) -> RegionalCoreDNS:
    """The chart's CoreDNS pod (Deployment fleetdns-coredns: CoreDNS and its zone-file sidecar) on loopback, against
    ``etcd_endpoints`` (region.etcd.external.endpoints); the zone files in ``workdir/zones`` (the pod's ``zones``
    emptyDir). As the chart runs it, the sidecar renders the Corefile from the DNSViews the webhook keeps in etcd and
    CoreDNS reloads it (``docs/design/views.md`` §7).

    ``region``: the catch-all block answers with the region's view (the sidecar's ``--default-view=region-<region>``;
    without one the region is named ``rig``); ``geoip_db``: the MaxMind database views by country or continent need
    (the region.geoip Secret); ``nameserver_address``: answer on that address's port 53 only (every block binds it,
    the chart's ``region.coredns.bindAddresses``), where a resolver following the parent's glue asks, views and all (in
    a cluster the Service maps 53 to the container port; here CoreDNS runs on 53 itself); ``etcd_tls``: the
    sidecar's etcd client certificate (region.etcd.tls); ``etcd_user``: its etcd user and password
    (``region.coredns.zonefiles.extraEnv``, the password from a Secret).

    Two configurations the chart does not render, for the serving tests and benchmarks: ``views``, a fixed set of
    DNSViews served from a Corefile ``fleetdns-corefile`` renders (the sidecar's ``--views``), and ``corefile``,
    another Corefile (``{port}`` is the DNS port) run with the same environment and sidecar, for comparisons
    (``etcd_cached_corefile``)."""
    workdir = Path(workdir)
    if views or corefile is not None:
        return _fixed_corefile_coredns(zone, etcd_endpoints, workdir, name, host, etcd_path, corefile, views, region,
                                       geoip_db)
    ports = {key: free_port(host) for key in ("health", "ready", "metrics", "zonefiles")}
    dns_port = free_port(host, udp_too=True)
    zonefiles: dict = {"healthPort": ports["zonefiles"]}
    zone_dir = workdir / "zones"
    if etcd_user is not None:
        zonefiles["extraEnv"] = etcd_user.extra_env()
    region_values: dict = {
        "enabled": True, "name": region or "rig", "zone": zone,
        "etcd": {"external": {"endpoints": list(etcd_endpoints)},
                 "tls": {"enabled": etcd_tls is not None, "clientSecret": ETCD_CLIENT_SECRET},
                 "prefix": f"/{etcd_path.strip('/')}/"},
        "coredns": {"containerPort": dns_port, "bindAddresses": [nameserver_address] if nameserver_address else [],
                    "healthPort": ports["health"],
                    "readyPort": ports["ready"], "metricsPort": ports["metrics"], "zonefiles": zonefiles},
        "prober": {"enabled": False},
    }
    if geoip_db is not None:
        region_values["geoip"] = {"secretName": GEOIP_SECRET}
    # logFormat text: the sidecar's log as people (and the serving tests) read it
    rendered = render({"listenAddress": host, "logFormat": "text", "region": region_values}, chart)
    secrets: dict[str, Mapping[str, Path | str]] = {GEOIP_SECRET: {"GeoLite2-City.mmdb": geoip_db}} if geoip_db else {}
    if etcd_tls is not None:
        secrets[ETCD_CLIENT_SECRET] = etcd_tls.secret()
    if etcd_user is not None:
        secrets[ETCD_USER_SECRET] = etcd_user.secret()
    pod = LocalPod(rendered, "fleetdns-coredns", name, workdir / "pod", secrets=secrets,
                   directories={"zones": zone_dir})
    sidecar = ZoneFilesSidecar.of_pod(pod, ports["zonefiles"], f"{name}-zonefiles", workdir / f"{name}-zonefiles.log")
    argv, env = pod.process("coredns")
    if nameserver_address:  # the Service's 53 -> containerPort, done by running on 53 (as root, unlike the pod)
        host, dns_port, env = nameserver_address, DNS_PORT, {**env, "FLEETDNS_DNS_PORT": str(DNS_PORT)}
    server = RegionalCoreDNS("", workdir, host, name, sidecar, port=dns_port,
                             conf=Path(argv[argv.index("-conf") + 1]))
    server.argv, server.env, server.inherit_env = argv, env, False
    return server


def _fixed_corefile_coredns(zone: str, etcd_endpoints: list[str], workdir: Path, name: str, host: str,
                            etcd_path: str, corefile: str | None, views: Sequence[DNSView], region: str | None,
                            geoip_db: Path | None) -> RegionalCoreDNS:
    """CoreDNS on a Corefile fixed at start (static ``views``, or ``corefile``), with its sidecar, both configured
    by hand as the production Corefile expects (its environment variables)."""
    zone_dir = workdir / "zones"
    zone_dir.mkdir(parents=True, exist_ok=True)
    weight_file = workdir / "weights"
    served, _ = served_views(views)
    sidecar = ZoneFilesSidecar(etcd_endpoints, f"/{etcd_path}/", [zone], zone_dir, weight_file, workdir,
                               name=f"{name}-zonefiles", views=[view.name for view in served],
                               default_view=region_view_name(region) if region else "")
    env = {
        "FLEETDNS_ZONE": zone,
        "FLEETDNS_ZONE_DIR": str(zone_dir),
        "FLEETDNS_WEIGHT_FILE": str(weight_file),
        "FLEETDNS_HEALTH_ADDR": f"{host}:{free_port(host)}",
        "FLEETDNS_READY_ADDR": f"{host}:{free_port(host)}",
        "FLEETDNS_METRICS_ADDR": f"{host}:{free_port(host)}",
    }
    if corefile is not None:
        text = corefile
    else:
        text = render_corefile(served, Layout(geoip_db=str(geoip_db) if geoip_db else "", region=region or ""))
    server = RegionalCoreDNS(text.replace("{$FLEETDNS_DNS_PORT}", "{port}"), workdir, host, name, sidecar)
    server.env = {**env, "FLEETDNS_DNS_PORT": str(server.port)}
    return server


def dns_answers(host: str, port: int, name: str, rdtype: str, timeout: float = 2.0) -> set[str]:
    """The answer records of type ``rdtype`` CoreDNS gives for ``name``, as presentation text."""
    response = dns.query.udp(dns.message.make_query(name, rdtype), host, port=port, timeout=timeout)
    wanted = dns.rdatatype.from_text(rdtype)
    return {rr.to_text() for rrset in response.answer if rrset.rdtype == wanted for rr in rrset}


class EditableZone:
    """A zone a test can edit while a real CoreDNS serves it (``file`` plugin, reloaded every 100 ms): A and
    AAAA records per name, NXDOMAIN with an SOA for every other name (as a real authoritative server).
    Stands in for a cloud provider's load-balancer hostnames (``lb-….elb.amazonaws.com``)."""

    def __init__(self, zone: str, ttl: int = 300, workdir: Path | None = None, host: str = "127.0.0.1") -> None:
        self.zone = zone.rstrip(".")
        self.ttl = ttl
        self.records: dict[str, tuple[str, ...]] = {}
        self._serial = 1
        self.server = CoreDNS(
            f"{self.zone}:{{port}} {{\n    file db.zone {{\n        reload 100ms\n    }}\n    errors\n}}\n",
            workdir, host, name="coredns-zone")
        self.server.corefile_path.write_text(self.server.corefile_path.read_text().replace(
            "db.zone", str(self.server.workdir / "db.zone")))
        self._write()

    @property
    def address(self) -> str:
        return self.server.address

    def set(self, name: str, *addresses: str, wait: float = 10.0) -> None:
        """Serve exactly ``addresses`` (IPv4 and IPv6) at ``name`` (none: NXDOMAIN); returns once CoreDNS does."""
        name = name.rstrip(".").lower()
        if addresses:
            self.records[name] = tuple(addresses)
        else:
            self.records.pop(name, None)
        self._serial += 1
        self._write()
        if self.server.process is not None:
            self.server.process.wait_until(lambda: self._serves(name, frozenset(addresses)), wait, f"serving {name}")

    def _serves(self, name: str, addresses: frozenset[str]) -> bool:
        got = {a for rdtype in ("A", "AAAA") for a in dns_answers(self.server.host, self.server.port, name, rdtype)}
        return got == addresses

    def _write(self) -> None:
        lines = [f"$ORIGIN {self.zone}.", f"$TTL {self.ttl}",
                 f"@ IN SOA ns.{self.zone}. hostmaster.{self.zone}. {self._serial} 7200 3600 1209600 1",
                 f"@ IN NS ns.{self.zone}.", f"ns IN A {self.server.host}"]
        for name, addresses in sorted(self.records.items()):
            for address in addresses:
                lines.append(f"{name}. IN {'AAAA' if ':' in address else 'A'} {address}")
        path = self.server.workdir / "db.zone"
        temporary = path.with_suffix(".tmp")
        temporary.write_text("\n".join(lines) + "\n")
        temporary.replace(path)

    def start(self) -> EditableZone:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> EditableZone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
