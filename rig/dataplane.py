"""The rig's data plane: member VIPs with a stand-in ingress controller each, and prober regions that reach
them (and the host API) through network namespaces, over paths that can be slowed and cut for real.

Layout (``<run>`` is the test process's pid and the data plane's number in it, so concurrent runs and
data planes never meet)::

    fdns-<run>-lb           lo: each member's VIPs, 198.18.<n>.1 and 2001:db8:f:<n>::1 (n = 1, 2, ...);
                            the region's addresses routed back via dl<i>
       rg<i> ==veth== lb0   one veth pair per region (10.254.<i>.0/30, fd00:f:0:<i>::/64): its addresses
       dl<i> <-delay-> dl0  one delaying forwarder per region (rig/delay.py) between two TUN devices
    fdns-<run>-<region>     routes 198.18.0.0/16 and 2001:db8:f::/48 via dl0 from its veth addresses; the
                            host API relay on 127.0.0.1:<host API port>; the region's prober

Latency is real: every packet between a region and a VIP passes through the region's forwarder, which holds
it for half the extra round trip set for that (region, member) pair each way (``path_delays``,
``set_path_delay``; none by default), so a prober there measures a slower connect because the path is
slower. The kernel has no ``netem``, and a TCP relay could not delay a handshake.

The stand-in ingress processes stay in the root namespace (they watch their member's API server on
127.0.0.1) with their listeners created in the LB namespace. ``cut_from_vips`` blackholes the LB
namespace's route back to the region (``heal`` points it at the forwarder again): the region's SYNs arrive
and every answer vanishes, so its checks time out as through a dead path (a blackhole on the region's own
side would fail them at once with EINVAL, which no real partition does). ``cut_from_api`` pauses the
region's API relays (connections refused, open ones reset): the prober's, and the publisher's if the region's
DNS stack reaches the host through ``publisher_kubeconfig`` (that stack runs on the root namespace's loopback,
so its path to the host is a relay there of its own). The kernel here has no dummy interfaces, so VIPs live on
the LB namespace's lo.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from rig.certs import CertificateAuthority
from rig.delay import DelayedPath
from rig.ingress import IngressControl, StandInIngress
from rig.netns import Endpoint, NetworkNamespace, Relay, remove_stale, veth
from rig.ports import free_port
from rig.prober import ProberProcess
from rig.process import RigError, stop_together

_NUMBERS = itertools.count(1)
VIP_V4 = "198.18.0.0/16"
VIP_V6 = "2001:db8:f::/48"
REGION_TUN = "dl0"  # the region's end of its delaying forwarder; the LB end is dl<index>


@dataclass(frozen=True)
class RegionLink:
    """One region's namespace and its veth addresses (``address`` is what the stand-ins see as the client)."""

    name: str
    netns: NetworkNamespace
    index: int
    address: str  # IPv4 of the region's end
    address6: str
    lb_address: str  # the LB end of its veth
    lb_address6: str


def member_vips(index: int) -> tuple[str, str]:
    """The IPv4 and IPv6 VIP of the member at ``index`` (0-based)."""
    if not 0 <= index < 254:
        raise ValueError(f"member index {index}: the rig has room for 254 members")
    return f"198.18.{index + 1}.1", f"2001:db8:f:{index + 1:x}::1"


class DataPlane:
    """LB namespace + one stand-in ingress per member + one namespace (veth, API relay) per prober region."""

    def __init__(self, workdir: Path, members: Mapping[str, Path | None], regions: Sequence[str] = (),
                 host_api: tuple[str, int] | None = None,
                 path_delays: Mapping[tuple[str, str], float] | None = None) -> None:
        """``members``: name -> kubeconfig of its API server (None: every app counts as ready);
        ``host_api``: (address, port) of the host API server, relayed into each region;
        ``path_delays``: (region, member) -> extra round trip in seconds from the start (default none)."""
        self.workdir = workdir
        self.member_kubeconfigs = dict(members)
        self.region_names = tuple(regions)
        self.host_api = host_api
        self.ca = CertificateAuthority.create("fleetdns-rig-ingress-ca")
        self.ca_path = workdir / "ingress-ca.crt"
        self.number = next(_NUMBERS)
        self.lb = NetworkNamespace(f"{self.number}-lb")
        self.regions: dict[str, RegionLink] = {}
        self.ingresses: dict[str, StandInIngress] = {}
        self.api_relays: dict[str, Relay] = {}  # region -> the prober's path to the host API
        self.publisher_relays: dict[str, Relay] = {}  # region -> its DNS stack's path (publisher_kubeconfig)
        self.probers: dict[str, ProberProcess] = {}
        self._member_cuts: dict[str, set[str]] = {}  # region -> members whose VIPs it is cut from
        self._vips = {name: member_vips(i) for i, name in enumerate(self.member_kubeconfigs)}
        self.paths: dict[str, DelayedPath] = {}  # region -> its delaying forwarder
        self._delays: dict[tuple[str, str], float] = {}
        for (region, member), seconds in (path_delays or {}).items():
            self._delays[region, member] = self._valid_delay(region, member, seconds)

    # start / stop ------------------------------------------------------------
    def start(self) -> DataPlane:
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.ca.write(self.ca_path, self.workdir / "ingress-ca.key")
            remove_stale()
            self.lb.create()
            for v4, v6 in self._vips.values():
                self.lb.add_address(f"{v4}/32")
                self.lb.add_address(f"{v6}/128")
            for index, region in enumerate(self.region_names):
                self._add_region(index, region)
            for region, path in self.paths.items():  # forwarders' start-ups overlap
                path.wait_ready()
                self._route_through(self.regions[region])
            self.ingresses = {name: StandInIngress(name, self.workdir, list(self._vips[name]), netns=self.lb.name,
                                                   kubeconfig=kubeconfig, ca=self.ca)
                              for name, kubeconfig in self.member_kubeconfigs.items()}
            for ingress in self.ingresses.values():
                ingress.start(wait=False)  # start-ups overlap
            for ingress in self.ingresses.values():
                ingress.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _add_region(self, index: int, region: str) -> None:
        netns = NetworkNamespace(f"{self.number}-{region}").create()
        v6 = ipaddress.IPv6Network(f"fd00:f:0:{index:x}::/64")  # str() of its hosts: as the stand-ins write them
        link = RegionLink(region, netns, index, f"10.254.{index}.2", str(v6[2]), f"10.254.{index}.1", str(v6[1]))
        veth(self.lb, f"rg{index}", netns, "lb0")
        self.lb.add_address(f"{link.lb_address}/30", f"rg{index}")
        self.lb.add_address(f"{link.lb_address6}/64", f"rg{index}")
        netns.add_address(f"{link.address}/30", "lb0")
        netns.add_address(f"{link.address6}/64", "lb0")
        self.regions[region] = link
        mtu = re.search(r"\bmtu (\d+)", netns.ip("link", "show", "lb0"))
        self.paths[region] = DelayedPath(region, netns, REGION_TUN, self.lb, f"dl{index}", self.workdir,
                                         mtu=int(mtu.group(1)) if mtu else 1500,
                                         rtts=self._rtts(region)).start(wait=False)
        if self.host_api is not None:
            host, port = self.host_api
            self.api_relays[region] = Relay(Endpoint(netns.name, "127.0.0.1", port), Endpoint(None, host, port),
                                            name=f"api-{region}").start()

    def _route_through(self, link: RegionLink) -> None:
        """The region reaches the VIPs through its forwarder, from its veth addresses (what the stand-ins see)."""
        link.netns.set_device_route(VIP_V4, REGION_TUN, link.address)
        link.netns.set_device_route(VIP_V6, REGION_TUN, link.address6)
        self._route_back(link)

    def _route_back(self, link: RegionLink) -> None:
        """Replies to the region go back through its forwarder (replacing a cut's blackhole: same route key)."""
        device = self.paths[link.name].lb_device
        self.lb.set_device_route(f"{link.address}/32", device)
        self.lb.set_device_route(f"{link.address6}/128", device)

    def stop(self) -> None:
        """Probers, stand-ins, relays, forwarders, then this run's namespaces; each step runs even if one before
        failed."""
        processes: list[Callable[[], object]] = [
            *(p.stop for p in self.probers.values()), *(i.stop for i in self.ingresses.values()),
            *(r.stop for r in [*self.api_relays.values(), *self.publisher_relays.values()]),
            *(p.stop for p in self.paths.values()),
        ]
        steps: list[Callable[[], object]] = [
            lambda: stop_together(processes),  # independent processes: their graceful stops overlap
            *(link.netns.delete for link in self.regions.values()),
            self.lb.delete,
        ]
        failures = []
        for step in steps:
            try:
                step()
            except Exception as error:  # noqa: BLE001 - the rest must still be cleaned up
                failures.append(error)
        if failures:
            raise RigError(f"data plane stop: {len(failures)} step(s) failed, first: {failures[0]!r}")

    def __enter__(self) -> DataPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # members and apps ----------------------------------------------------------
    def vips(self, member: str) -> tuple[str, str]:
        """(IPv4, IPv6) VIP of ``member``'s load balancer."""
        return self._vips[member]

    def ingress(self, member: str) -> IngressControl:
        return self.ingresses[member].control

    def register_app(self, member: str, host: str, namespace: str, service: str,
                     expect_ready: bool | None = None, timeout: float = 15.0,
                     header: tuple[str, str] | None = None) -> None:
        """Route ``host`` at ``member``'s VIP to Service ``namespace/service``; with ``expect_ready``, return
        once the stand-in's view of its EndpointSlices agrees (ready, or 503), so the first request is certain.
        ``header``: (name, value) the app requires of every request (401 without it)."""
        control = self.ingress(member)
        control.register(host, namespace, service, header)
        if expect_ready is None:
            return
        deadline = time.monotonic() + timeout
        while ((answer := control.answer(host)) == 503) == expect_ready:  # 503: no ready endpoint
            if time.monotonic() > deadline:
                raise RigError(f"stand-in of {member} answers {answer} for {host} after {timeout:g}s, expected "
                               f"{'its endpoints ready' if expect_ready else '503'}: is the EndpointSlice of "
                               f"{namespace}/{service} on {member} as expected?")
            time.sleep(0.02)

    def wait_checked(self, host: str, members: Sequence[str] | None = None, timeout: float = 60.0) -> None:
        """Until every prober region has checked ``host`` at each member's VIP (the stand-in saw a request from each
        region's address). An intent is published on readiness before its first check; a failure that lands
        before that check is the check's first result, not a change a test or the demo should time."""
        clients = {link.address for link in self.regions.values()}
        wanted = list(members) if members is not None else list(self.ingresses)
        deadline = time.monotonic() + timeout
        while True:
            missing = {m: sorted(clients - set(self.ingress(m).stats().host(host).clients)) for m in wanted}
            if not any(missing.values()):
                return
            if time.monotonic() > deadline:
                raise RigError(f"{host} not checked by every region within {timeout:g}s; not yet from: {missing}")
            time.sleep(0.1)

    def set_app_status(self, member: str, host: str, status: int | None, delay: float = 0.0) -> None:
        """Make the app answer ``status`` (None: route normally again), endpoints untouched."""
        self.ingress(member).set_answer(host, status, delay)

    # regions -------------------------------------------------------------------
    def netns(self, region: str) -> NetworkNamespace:
        return self.regions[region].netns

    def set_path_delay(self, region: str, member: str, seconds: float) -> None:
        """Make the path from ``region`` to ``member``'s VIPs (both) ``seconds`` slower per round trip (0: no
        extra delay). Packets read after this returns get it; packets already on the way keep theirs, and
        none overtakes them, so a new connection sees the new delay at most one old delay later."""
        seconds = self._valid_delay(region, member, seconds)
        self.paths[region].set_rtts(dict.fromkeys(self.vips(member), seconds))
        self._delays[region, member] = seconds

    def path_delay(self, region: str, member: str) -> float:
        """The extra round trip set between ``region`` and ``member``'s VIPs (seconds)."""
        self._valid_delay(region, member, 0.0)
        return self._delays.get((region, member), 0.0)

    def _valid_delay(self, region: str, member: str, seconds: float) -> float:
        if region not in self.region_names:
            raise ValueError(f"path delay {region} -> {member}: no region {region!r}; regions: "
                             f"{', '.join(self.region_names) or 'none'}")
        if member not in self._vips:
            raise ValueError(f"path delay {region} -> {member}: no member {member!r}; members: "
                             f"{', '.join(self._vips) or 'none'}")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) \
                or seconds < 0:
            raise ValueError(f"path delay {region} -> {member}: {seconds!r} is not a round trip in seconds (>= 0)")
        return float(seconds)

    def _rtts(self, region: str) -> dict[str, float]:
        """The forwarder's view of ``region``'s delays: per VIP address."""
        return {vip: seconds for (r, member), seconds in self._delays.items() if r == region
                for vip in self.vips(member)}

    def cut_from_vips(self, region: str, member: str | None = None) -> None:
        """The region's packets to every VIP (or only ``member``'s) still leave, but nothing comes back: connects
        time out, as on a real partition."""
        link = self.regions[region]
        if member is None:
            self.lb.add_blackhole(f"{link.address}/32")
            self.lb.add_blackhole(f"{link.address6}/128")
            return
        for vip, client in zip(self.vips(member), (link.address, link.address6), strict=True):
            self.lb.add_blackhole_rule(vip, client)
        self._member_cuts.setdefault(region, set()).add(member)

    def cut_from_api(self, region: str) -> None:
        """The region loses the host API: new connections refused, open ones (watches, Lease renewals) reset; its
        prober's, and its DNS stack's if that goes through ``publisher_kubeconfig``."""
        self.api_relays[region].pause()
        if region in self.publisher_relays:
            self.publisher_relays[region].pause()

    def heal(self, region: str) -> None:
        """Undo every cut of the region (whichever were made); its path delays stay as they were."""
        link = self.regions[region]
        self._route_back(link)
        for member in self._member_cuts.pop(region, set()):
            for vip, client in zip(self.vips(member), (link.address, link.address6), strict=True):
                self.lb.remove_blackhole_rule(vip, client)
        for relays in (self.api_relays, self.publisher_relays):
            if region in relays:
                relays[region].resume()

    def region_kubeconfig(self, region: str, host_kubeconfig: Path) -> Path:
        """``host_kubeconfig`` pointed at the region's API relay (same port, so the server certificate,
        issued for 127.0.0.1, verifies)."""
        if self.host_api is None:
            raise ValueError("the data plane was built without host_api: no relay into the regions")
        return self._kubeconfig_at(host_kubeconfig, self.host_api[1], self.workdir / f"kubeconfig-{region}")

    def publisher_kubeconfig(self, region: str, host_kubeconfig: Path) -> Path:
        """``host_kubeconfig`` pointed at a relay of the region's own on the root namespace's loopback, for the
        region's DNS stack (webhook and, through its relay, ExternalDNS), so that ``cut_from_api`` cuts the whole
        region off the host, not only its prober."""
        if self.host_api is None or region not in self.api_relays:
            raise ValueError(f"no host API path for region {region!r}: the data plane was built without host_api "
                             f"or without that region (regions: {', '.join(self.region_names) or 'none'})")
        if region not in self.publisher_relays:
            host, port = self.host_api
            self.publisher_relays[region] = Relay(Endpoint(None, "127.0.0.1", free_port()), Endpoint(None, host, port),
                                                  name=f"publisher-api-{region}").start()
        return self._kubeconfig_at(host_kubeconfig, self.publisher_relays[region].listen.port,
                                   self.workdir / f"kubeconfig-publisher-{region}")

    @staticmethod
    def _kubeconfig_at(host_kubeconfig: Path, port: int, path: Path) -> Path:
        """A copy of ``host_kubeconfig`` whose server is 127.0.0.1:``port`` (the host's certificate, issued for
        127.0.0.1, verifies on any port)."""
        config = yaml.safe_load(host_kubeconfig.read_text())
        for cluster in config.get("clusters") or []:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def start_prober(self, region: str, host_kubeconfig: Path, args: Sequence[str] = (), *,
                     wait_ready: bool = True, timeout: float = 60.0) -> ProberProcess:
        """The region's prober in its namespace, talking to the host API through the region's relay."""
        if region in self.probers and self.probers[region].process.running:
            raise ValueError(f"a prober for region {region} is already running")
        prober = ProberProcess(region, self.region_kubeconfig(region, host_kubeconfig), self.workdir,
                               netns=self.netns(region), args=list(args))
        self.probers[region] = prober
        return prober.start(timeout=timeout, wait_ready=wait_ready)
