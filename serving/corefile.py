"""``python -m serving.corefile`` / ``fleetdns-corefile``: a region's Corefile, rendered from the DNSViews.

One server block per served DNSView (``fleetdns.dnsview.accept_views``: a view whose clientCIDRs overlap an
earlier one's is left out, as the aggregator leaves it out), in block order (docs/design/views.md §1: views by
clientCIDRs, then by countries, then by continents, each by name; CoreDNS gives a query to the first block whose
``view`` expression matches), then the catch-all block without a view: the region's own view. Each block serves its
view's zone file, which ``fleetdns-zonefiles`` renders: ``<zone-dir>/<view>/db.<zone>``; the catch-all
``<zone-dir>/db.<zone>`` (overlaid by ``--default-view=region-<region>``). Without DNSViews it renders
``coredns/Corefile`` as shipped. ``--print-views`` prints the sidecar's ``--views`` instead.

Stock plugins only: ``view`` (``incidr(client_ip(), ...)``, ``metadata('geoip/country/code') in [...]``),
``geoip DB { edns-subnet }`` and ``metadata`` in blocks that match by GeoIP (the block's metadata is collected before
its ``view`` expression runs, so the expression sees the GeoIP of the EDNS client subnet, else of the source).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fleetdns.config import ConfigError, add_flag, exit_on_config_error
from fleetdns.dnsname import InvalidDNSNameError, is_dns_label, normalize_name
from fleetdns.dnsview import DNSView, DNSViewError, accept_views, parse_dns_view, region_view_name
from serving.zonefile import zone_file_name

DNS_VIEW_KIND = "DNSView"
DNS_VIEW_GROUP = "fleetdns.io"
_PLACEHOLDER = re.compile(r"\{\$([A-Z0-9_]+)\}")
# What each environment placeholder of the defaults means (listed in the Corefile's header when used).
_ENVIRONMENT = {
    "FLEETDNS_ZONE": "zone to answer, e.g. gslb.example.com",
    "FLEETDNS_DNS_PORT": "port for UDP and TCP (53 in production)",
    "FLEETDNS_ZONE_DIR": "the sidecar's --zone-dir: db.<zone> for the region, <view>/db.<zone> per view",
    "FLEETDNS_WEIGHT_FILE": "the weight file the sidecar writes (its --weight-file; one for every block)",
    "FLEETDNS_HEALTH_ADDR": "HOST:PORT of /health",
    "FLEETDNS_READY_ADDR": "HOST:PORT of /ready",
    "FLEETDNS_METRICS_ADDR": "HOST:PORT of the Prometheus metrics",
    "FLEETDNS_GEOIP_DB": "the MaxMind City database (GeoLite2-City, GeoIP2-City) the geoip blocks read",
}


RELOAD_INTERVAL = "2s"  # CoreDNS's reload plugin refuses less (plugin/reload/setup.go: minInterval)


class CorefileError(ValueError):
    """DNSViews that cannot be rendered; the message names the file, the object and the field."""


@dataclass(frozen=True)
class Layout:
    """Where the region's CoreDNS finds its files and listens: literal values or ``{$ENV}`` placeholders."""

    zone: str = "{$FLEETDNS_ZONE}"
    dns_port: str = "{$FLEETDNS_DNS_PORT}"
    zone_dir: str = "{$FLEETDNS_ZONE_DIR}"
    weight_file: str = "{$FLEETDNS_WEIGHT_FILE}"
    health_addr: str = "{$FLEETDNS_HEALTH_ADDR}"
    ready_addr: str = "{$FLEETDNS_READY_ADDR}"
    metrics_addr: str = "{$FLEETDNS_METRICS_ADDR}"
    geoip_db: str = ""  # a MaxMind City database; required when a served view matches by country or continent
    region: str = ""  # only named in the header (the sidecar's --default-view is region-<region>)
    bind: tuple[str, ...] = ()  # the addresses every block listens on (the bind plugin); none: every address

    def bind_line(self) -> str:
        return f"    bind {' '.join(self.bind)}\n" if self.bind else ""

    def zone_file(self, view: str = "") -> str:
        directory = f"{self.zone_dir}/{view}" if view else self.zone_dir
        return f"{directory}/{zone_file_name(self.zone)}"


def uses_geoip(view: DNSView) -> bool:
    return bool(view.countries or view.continents)


def parse_bind(flag: str, value: str) -> tuple[str, ...]:
    """Comma-separated IP addresses CoreDNS listens on (the bind plugin), in order, once each; empty: every address
    (a hostNetwork pod on a node with several interfaces listens only where clients are meant to ask)."""
    addresses: dict[str, None] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            addresses[str(ipaddress.ip_address(item))] = None
        except ValueError:
            raise ConfigError(flag, value, f"{item!r} is not an IP address (give addresses, comma-separated)") from None
    return tuple(addresses)


def block_order(views: Iterable[DNSView]) -> tuple[DNSView, ...]:
    """Views by clientCIDRs first, then by countries, then by continents, each by name (views.md §1): the most
    specific matcher a client can fall under wins."""
    def rank(view: DNSView) -> tuple[int, str]:
        return (0 if view.client_cidrs else 1 if view.countries else 2), view.name

    return tuple(sorted(views, key=rank))


def served_views(views: Iterable[DNSView]) -> tuple[tuple[DNSView, ...], dict[str, str]]:
    """The views that get a block, in block order, and {refused view: why} (overlapping clientCIDRs)."""
    accepted, refused = accept_views(views)
    return block_order(accepted), refused


def view_expression(view: DNSView) -> str:
    """The ``view`` plugin's expression: any of the view's matchers (OR)."""
    terms = [f"incidr(client_ip(), '{network}')" for network in view.client_cidrs]
    if view.countries:
        terms.append(f"metadata('geoip/country/code') in [{', '.join(repr(code) for code in view.countries)}]")
    if view.continents:
        terms.append(f"metadata('geoip/continent/code') in [{', '.join(repr(code) for code in view.continents)}]")
    return " || ".join(terms)


def render_corefile(views: Sequence[DNSView], layout: Layout | None = None) -> str:
    """The Corefile: a block per view in the order given (``served_views``), then the catch-all.

    Raises CorefileError when a view matches by GeoIP and ``layout.geoip_db`` is empty."""
    layout = layout or Layout()
    geo = [view.name for view in views if uses_geoip(view)]
    if geo and not layout.geoip_db:
        raise CorefileError(f"DNSView {', '.join(geo)} matches by countries or continents: give the MaxMind City "
                            "database (GeoLite2-City or GeoIP2-City format) with --geoip-db")
    return _header(views, layout) + "".join(_view_block(view, layout) for view in views) + _catch_all(views, layout)


def _header(views: Sequence[DNSView], layout: Layout) -> str:
    lines = ["# FleetDNS regional CoreDNS: serves the global zone from zone files that its fleetdns-zonefiles sidecar",
             "# renders from this region's etcd, where the webhook provider (fed by ExternalDNS) keeps the records.",
             "# Stock plugins only. Rendered by fleetdns-corefile (serving/corefile.py) from the DNSViews:"]
    if views:
        names = [view.name for view in views]
        default_view = region_view_name(layout.region) if layout.region else "region-<region>"
        lines.append(f"# a block per view, the first that matches answers: {', '.join(names)}; then the catch-all")
        lines.append("# block: the region's own view. fleetdns-zonefiles --corefile renders this file live; a sidecar")
        lines.append("# serving a copy rendered by hand runs with")
        lines.append(f"#   --views={','.join(names)} --default-view={default_view}")
    else:
        lines.append("# none here, so one block answers every client with the region's view (the sidecar's")
        lines.append("# --default-view=region-<region>; without it, the default records).")
    used = dict.fromkeys(name for value in vars(layout).values() for name in _PLACEHOLDER.findall(str(value)))
    if used:
        lines.append("# Values in {$...} come from the environment, so one file serves every region:")
        width = max(len(name) for name in used) + 3
        lines.extend(f"#   {name.ljust(width)}{_ENVIRONMENT.get(name, '')}".rstrip() for name in used)
    lines += ["# Start CoreDNS once the sidecar is ready (the pod's readiness gates traffic): before its first files,",
              "# the zone answers SERVFAIL. The plugins run in CoreDNS's fixed order (file answers; loadbalance sees",
              "# every reply), not in the order written here. coredns/README.md says why each one is here."]
    return "\n".join(lines) + "\n"


def _view_block(view: DNSView, layout: Layout) -> str:
    matchers = [f"clientCIDRs {', '.join(str(network) for network in view.client_cidrs)}" if view.client_cidrs else "",
                f"countries {', '.join(view.countries)}" if view.countries else "",
                f"continents {', '.join(view.continents)}" if view.continents else ""]
    geoip = (f"    geoip {layout.geoip_db} {{\n        edns-subnet\n    }}\n    metadata\n" if uses_geoip(view) else "")
    return (f"# DNSView {view.name}: {'; '.join(m for m in matchers if m)}\n"
            f"{layout.zone}:{layout.dns_port} {{\n"
            f"{layout.bind_line()}"
            f"    view {view.name} {{\n        expr {view_expression(view)}\n    }}\n"
            f"{geoip}"
            f"    file {layout.zone_file(view.name)} {{\n        reload 100ms\n    }}\n"
            f"    loadbalance weighted {layout.weight_file} {{\n        reload 1s\n    }}\n"
            f"    prometheus {layout.metrics_addr}\n"
            "    errors\n"
            "}\n")


def _catch_all(views: Sequence[DNSView], layout: Layout) -> str:
    who = "Every other client" if views else "Every client"
    return (f"# {who}: the region's view (db.<zone>, overlaid by the sidecar's --default-view).\n"
            f"{layout.zone}:{layout.dns_port} {{\n"
            f"{layout.bind_line()}"
            "    # The zone in memory, replaced when the file's SOA serial differs (checked every 100 ms: an\n"
            "    # unchanged serial costs opening the file and parsing its first lines). A file that cannot be\n"
            "    # parsed keeps the last good zone. Each view's block does the same with its view's file.\n"
            f"    file {layout.zone_file()} {{\n        reload 100ms\n    }}\n"
            "    # Which address comes first: by the webhook/weights the weight file holds; uniform for other names.\n"
            f"    loadbalance weighted {layout.weight_file} {{\n        reload 1s\n    }}\n"
            f"    health {layout.health_addr}\n"
            f"    ready {layout.ready_addr}\n"
            "    # The whole file is loaded again when it changes, checked every 2 s (the plugin's shortest interval;\n"
            "    # no jitter: each replica has its own copy). fleetdns-zonefiles --corefile rewrites it as DNSViews\n"
            "    # come and go; a file CoreDNS refuses leaves the running configuration in place.\n"
            f"    reload {RELOAD_INTERVAL} 0s\n"
            f"    prometheus {layout.metrics_addr}\n"
            "    errors\n"
            "}\n")


# --- reading DNSViews ------------------------------------------------------------------------------------------

def load_dns_views(sources: Iterable[tuple[str, str]]) -> list[DNSView]:
    """DNSViews from YAML texts (name, text): DNSView objects, Lists of them (``kubectl get dnsviews -o yaml``),
    several documents per text. CorefileError names the text, the document, the item and the field."""
    views: dict[str, tuple[DNSView, str]] = {}
    for source, text in sources:
        try:
            documents = list(yaml.safe_load_all(text))
        except yaml.YAMLError as error:
            raise CorefileError(f"{source}: not YAML: {error}") from None
        for where, obj in _objects(source, documents):
            name = (obj.get("metadata") or {}).get("name") if isinstance(obj.get("metadata"), dict) else None
            try:
                view = parse_dns_view(obj)
            except DNSViewError as error:
                raise CorefileError(f"{where}: DNSView {name!r}: {error}") from None
            if view.name in views:
                raise CorefileError(f"{where}: DNSView {view.name!r} is given twice (also {views[view.name][1]})")
            views[view.name] = (view, where)
    return [view for view, _ in views.values()]


def _objects(source: str, documents: list[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for index, document in enumerate(documents, 1):
        where = f"{source}: document {index}"
        if document is None:
            continue
        if not isinstance(document, dict):
            raise CorefileError(f"{where}: expected a Kubernetes object (a DNSView or a List of them)")
        kind = document.get("kind")
        if isinstance(kind, str) and kind.endswith("List"):
            items = document.get("items") or []
            if not isinstance(items, list):
                raise CorefileError(f"{where}: items must be a list")
            for position, item in enumerate(items):
                yield from _dns_view(f"{where}, items[{position}]", item)
        else:
            yield from _dns_view(where, document)


def _dns_view(where: str, obj: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(obj, dict):
        raise CorefileError(f"{where}: expected a DNSView object")
    kind, api_version = obj.get("kind"), str(obj.get("apiVersion") or "")
    if kind != DNS_VIEW_KIND or api_version.split("/")[0] != DNS_VIEW_GROUP:
        raise CorefileError(f"{where}: expected kind {DNS_VIEW_KIND} of {DNS_VIEW_GROUP}, got kind {kind!r} "
                            f"apiVersion {api_version!r}")
    yield where, obj


# --- command line ----------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleetdns-corefile", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="YAML with DNSViews (objects, Lists, `kubectl get dnsviews -o yaml`); '-' reads stdin")
    defaults = Layout()
    add_flag(parser, "--region", "FLEETDNS_REGION", "", "the region (named in the header; the sidecar's "
             "--default-view is region-<region>)")
    add_flag(parser, "--zone", None, defaults.zone, "zone to answer")
    add_flag(parser, "--dns-port", None, defaults.dns_port, "UDP and TCP port")
    add_flag(parser, "--zone-dir", None, defaults.zone_dir, "the sidecar's --zone-dir")
    add_flag(parser, "--weight-file", None, defaults.weight_file, "the sidecar's --weight-file")
    add_flag(parser, "--geoip-db", "FLEETDNS_GEOIP_DB", "",
             "MaxMind City database (.mmdb); required when a view matches by countries or continents")
    add_flag(parser, "--health-addr", None, defaults.health_addr, "HOST:PORT of /health")
    add_flag(parser, "--ready-addr", None, defaults.ready_addr, "HOST:PORT of /ready")
    add_flag(parser, "--metrics-addr", None, defaults.metrics_addr, "HOST:PORT of the metrics")
    add_flag(parser, "--bind", None, "", "IP addresses every block listens on, comma-separated (the bind plugin); "
             "default: every address")
    parser.add_argument("--output", "-o", default="-", help="where to write the Corefile; default: stdout")
    parser.add_argument("--print-views", action="store_true",
                        help="print the served views in block order, comma-separated (the sidecar's --views), "
                             "instead of the Corefile")
    return parser


def _layout(args: argparse.Namespace) -> Layout:
    zone = args.zone.strip()
    if not _PLACEHOLDER.fullmatch(zone):
        try:
            zone = normalize_name(zone)
        except InvalidDNSNameError as error:
            raise ConfigError("--zone", args.zone, str(error)) from None
    region = args.region.strip()
    if region and not is_dns_label(region):
        raise ConfigError("--region", args.region, "must be a DNS label (lower-case letters, digits and '-')")
    geoip_db = args.geoip_db.strip()
    if geoip_db and not _PLACEHOLDER.search(geoip_db) and not os.access(geoip_db, os.R_OK):
        raise ConfigError("--geoip-db", args.geoip_db, "does not exist or is not readable (CoreDNS would not start)")
    for flag, value in (("--dns-port", args.dns_port), ("--zone-dir", args.zone_dir),
                        ("--weight-file", args.weight_file), ("--health-addr", args.health_addr),
                        ("--ready-addr", args.ready_addr), ("--metrics-addr", args.metrics_addr)):
        if not value.strip() or any(c.isspace() or c in "{}" for c in _PLACEHOLDER.sub("", value.strip())):
            raise ConfigError(flag, value, "must be one word (no spaces or braces other than {$VARIABLE})")
    return Layout(zone, args.dns_port.strip(), args.zone_dir.strip().rstrip("/") or "/", args.weight_file.strip(),
                  args.health_addr.strip(), args.ready_addr.strip(), args.metrics_addr.strip(), geoip_db, region,
                  parse_bind("--bind", args.bind))


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return "<stdin>", sys.stdin.read()
    try:
        return path, Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise CorefileError(f"{path}: cannot be read: {error}") from None


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    layout = _layout(args)
    try:
        views, refused = served_views(load_dns_views(_read(path) for path in args.files))
        for name, why in sorted(refused.items()):
            print(f"warning: DNSView {name!r} gets no block: {why}", file=sys.stderr)
        if args.print_views:
            text = ",".join(view.name for view in views) + "\n"
        else:
            if layout.geoip_db and not any(uses_geoip(view) for view in views):
                print("warning: --geoip-db is not used: no served DNSView matches by countries or continents",
                      file=sys.stderr)
            text = render_corefile(views, layout)
    except CorefileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


def main() -> None:
    exit_on_config_error(lambda: run())


if __name__ == "__main__":
    main()
