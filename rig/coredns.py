"""Real CoreDNS started with a given Corefile, answering on a loopback UDP/TCP port."""

from __future__ import annotations

import tempfile
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

from rig.binaries import binary
from rig.ports import free_port
from rig.process import ManagedProcess

START_TIMEOUT = 20.0


class CoreDNS:
    """CoreDNS whose Corefile is ``corefile`` with ``{port}`` replaced by the DNS port chosen here."""

    def __init__(self, corefile: str, workdir: Path | None = None, host: str = "127.0.0.1",
                 name: str = "coredns", env: dict[str, str] | None = None) -> None:
        self.host = host
        self.name = name
        self.port = free_port(host, udp_too=True)
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="fleetdns-coredns-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.corefile_path = self.workdir / "Corefile"
        self.corefile_path.write_text(corefile.replace("{port}", str(self.port)))
        self.env = env
        self.process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = START_TIMEOUT) -> CoreDNS:
        self.process = ManagedProcess(self.name, [binary("coredns"), "-conf", str(self.corefile_path)],
                                      self.workdir / "coredns.log", env=self.env).start()
        self.process.wait_until(self._answers, timeout, "answering DNS")
        return self

    def _answers(self) -> bool:
        query = dns.message.make_query("fleetdns-rig-probe.invalid.", dns.rdatatype.A)
        dns.query.udp(query, self.host, port=self.port, timeout=0.3)
        return True  # any reply, even NXDOMAIN or REFUSED, means the server is up

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


def regional_coredns(zone: str, etcd_endpoints: list[str], workdir: Path, name: str, host: str = "127.0.0.1",
                     etcd_path: str = "skydns") -> CoreDNS:
    """CoreDNS run from the project's production Corefile (coredns/Corefile), configured by environment."""
    env = {
        "FLEETDNS_ZONE": zone,
        "FLEETDNS_ETCD_PATH": etcd_path,
        "FLEETDNS_ETCD_URLS": " ".join(etcd_endpoints),
        "FLEETDNS_HEALTH_ADDR": f"{host}:{free_port(host)}",
        "FLEETDNS_READY_ADDR": f"{host}:{free_port(host)}",
        "FLEETDNS_METRICS_ADDR": f"{host}:{free_port(host)}",
    }
    server = CoreDNS(REGION_COREFILE.read_text().replace("{$FLEETDNS_DNS_PORT}", "{port}"), workdir, host, name, env)
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
