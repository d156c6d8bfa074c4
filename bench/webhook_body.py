"""What one large POST costs the webhook: time and peak memory of POST /records and /adjustendpoints by body size.

ExternalDNS sends every change of a sync loop in one POST (the first sync of a region: every name and its TXT
ownership record), within a 15 s client timeout (v0.21+: 5 s read + 10 s write); a timeout, like any 4xx, makes
it exit. This measures, against a real etcd, a fresh webhook process per request (so its peak RSS, VmHWM, is that
request's) on an empty prefix (the first sync: the mirror then holds everything written, as in production):

- ``externaldns`` bodies: per name the A endpoint with the labels ExternalDNS's planner sets (owner, resource)
  and its TXT ownership endpoint ``a-<name>`` (label ``ownedRecord``), as v0.22 sends them (~180 bytes/endpoint);
- ``dense`` bodies: minimal A endpoints (``dnsName``, ``recordType``, ``targets``; ~80 bytes/endpoint), the most
  endpoints a body of a given size can carry, hence the most memory per byte.

Run: ``make bench-webhook-body`` (``python -m bench.webhook_body``). Results go to docs/benchmarks-webhook-body.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests

from bench.machine import machine
from rig import EtcdServer
from rig.binaries import REPO_ROOT
from rig.etcd import EtcdCluster
from rig.region import WebhookProvider
from rig.webhook_client import MEDIA_TYPE
from webhook_provider.settings import DEFAULT_MAX_REQUEST_BYTES

ZONE = "bench.example.org"
OWNER = "fleetdns-bench-region"
DOC = REPO_ROOT / "docs" / "benchmarks-webhook-body.md"
CLIENT_TIMEOUT_S = 15.0  # ExternalDNS's webhook client: read 5 s + write 10 s
SHAPES = ("externaldns", "dense")
PEAK_GOAL_MB = 1536  # the largest accepted body; the container's memory limit (2Gi) derives from it


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def externaldns_endpoints(names: int) -> list[dict]:
    """Per name its A endpoint and TXT ownership endpoint, as ExternalDNS v0.22's TXT registry creates them."""
    out: list[dict] = []
    for index in range(names):
        name = f"app-{index}.{ZONE}"
        resource = f"crd/team-{index % 97}/app-{index}"
        out.append({"dnsName": name, "targets": [f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"],
                    "recordType": "A", "labels": {"owner": OWNER, "resource": resource}})
        out.append({"dnsName": f"a-app-{index}.{ZONE}",
                    "targets": [f'"heritage=external-dns,external-dns/owner={OWNER},external-dns/resource={resource}"'],
                    "recordType": "TXT", "labels": {"ownedRecord": name}})
    return out


def dense_endpoints(count: int) -> list[dict]:
    return [{"dnsName": f"n{index}.{ZONE}", "recordType": "A",
             "targets": [f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"]} for index in range(count)]


def endpoints_for(shape: str, max_bytes: int) -> list[dict]:
    """As many ``create`` endpoints of that shape as a POST /records body of at most ``max_bytes`` holds."""
    make = externaldns_endpoints if shape == "externaldns" else dense_endpoints
    per = len(encode("/records", make(1000))) / (2000 if shape == "externaldns" else 1000)
    count = int(max_bytes / per)
    while True:
        endpoints = make(count // 2 if shape == "externaldns" else count)
        if len(encode("/records", endpoints)) <= max_bytes:
            return endpoints
        count = int(count * 0.998)


def encode(route: str, endpoints: list[dict]) -> bytes:
    """The body as ExternalDNS's Go encoder writes it (compact)."""
    return json.dumps({"create": endpoints} if route == "/records" else endpoints, separators=(",", ":")).encode()


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


@dataclass
class Run:
    shape: str
    route: str
    endpoints: int
    body_mb: float
    status: int
    seconds: float
    rss_before_mb: float
    peak_mb: float
    rss_after_mb: float


def measure(etcd: EtcdCluster, workdir: Path, shape: str, route: str, endpoints: list[dict]) -> Run:
    """One request to a fresh webhook process on a fresh prefix; its peak RSS is that request's."""
    body = encode(route, endpoints)
    prefix = f"/body{uuid.uuid4().hex[:8]}/"
    webhook = WebhookProvider(etcd.endpoints, workdir, domain_filter=ZONE, prefix=prefix, name="webhook-body").start()
    try:
        assert webhook.process.proc is not None
        pid = webhook.process.proc.pid
        requests.get(webhook.url + "/records", headers={"Accept": MEDIA_TYPE}, timeout=30)  # warm: mirror listed
        before = status_kb(pid, "VmRSS") / 1024
        began = time.perf_counter()
        response = requests.post(webhook.url + route, data=body, headers={"Content-Type": MEDIA_TYPE,
                                                                           "Accept": MEDIA_TYPE}, timeout=600)
        seconds = time.perf_counter() - began
        run = Run(shape, route, len(endpoints), len(body) / 1e6, response.status_code, seconds, before,
                  status_kb(pid, "VmHWM") / 1024, status_kb(pid, "VmRSS") / 1024)
    finally:
        webhook.stop()
    progress(f"{shape:11} {route:17} {run.endpoints:>8,} endpoints {run.body_mb:6.1f} MB -> {run.status} in "
             f"{run.seconds:6.2f} s, RSS {run.rss_before_mb:.0f} MB before, peak {run.peak_mb:.0f} MB, "
             f"{run.rss_after_mb:.0f} MB after")
    return run


def over_limit_status(etcd: EtcdCluster, workdir: Path, limit: int) -> int:
    """The answer to a body one byte over the limit (the production default)."""
    webhook = WebhookProvider(etcd.endpoints, workdir, domain_filter=ZONE, prefix=f"/body{uuid.uuid4().hex[:8]}/",
                              name="webhook-body-over").start()
    try:
        body = b'{"create":[' + b" " * (limit - len(b'{"create":[]}') + 1) + b"]}"
        return requests.post(webhook.url + "/records", data=body, headers={"Content-Type": MEDIA_TYPE},
                             timeout=60).status_code
    finally:
        webhook.stop()


def write_doc(runs: list[Run], args: argparse.Namespace, over_status: int) -> str:
    rows = "\n".join(
        f"| {r.shape} | `POST {r.route}` | {r.endpoints:,} | {r.body_mb:.1f} MB | {r.status} | {r.seconds:.2f} s "
        f"| {r.rss_before_mb:.0f} MB | {r.peak_mb:.0f} MB | {r.rss_after_mb:.0f} MB |" for r in runs)
    at_limit = [r for r in runs if r.body_mb * 1e6 > 0.99 * args.limit]
    worst = max(at_limit, key=lambda r: r.peak_mb)
    verdict = "met" if worst.peak_mb <= PEAK_GOAL_MB else "NOT MET"
    text = f"""# Webhook benchmark: one large POST

Latest run: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M')} UTC by `make bench-webhook-body`
(`python -m bench.webhook_body`), webhook with its default `--max-request-bytes={args.limit}`
({args.limit / 2**20:g} MiB).

| body | request | endpoints | body | status | time | RSS before | peak RSS (VmHWM) | RSS after |
|---|---|---|---|---|---|---|---|---|
{rows}

- **Bound**: the largest accepted body peaks at {worst.peak_mb:.0f} MB ({worst.shape}, `POST {worst.route}`);
  goal ≤ {PEAK_GOAL_MB} MB (the figure the webhook container's memory limit is derived from): {verdict}.
  A body one byte larger: {over_status}.
- ExternalDNS gives a POST {CLIENT_TIMEOUT_S:g} s (read + write timeout) and exits on a timeout; compare the
  times above with it (`webhook_provider/README.md`, "Request size and memory", draws the conclusions).
- The peak of a POST /records on an empty prefix includes the mirror of everything it wrote (it stays: the
  zone's steady-state cost, "RSS after"); /adjustendpoints writes nothing.

Before issue 14's changes (same machine, same day, 32 MiB default limit; parsing held the body's bytes, the
decoded JSON, the parsed endpoints and their canonical forms at once): dense 16.5 MB `POST /records` peaked at
711 MB and `/adjustendpoints` at 311 MB; ExternalDNS-shaped 17.8 MB at 443 MB and 223 MB; with the changes, a
32 MiB body (the old limit) still peaked at 1,297 MB (dense, 111 s) and 746 MB (ExternalDNS-shaped, 44 s).

## Machine
{machine()}; Python {platform.python_version()}. etcd from `rig.EtcdServer` (`--unsafe-no-fsync`,
`--max-txn-ops=128`), everything on loopback, sharing the machine with whatever else ran (load average
{args.load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end: times above a load of 2 on 2 cores are
inflated accordingly; memory is not).

## Method
- One real etcd; for every request a new webhook process (`python -m webhook_provider`, as in production, with
  its default limit) on a new, empty prefix, first asked GET /records (so the mirror is listed and the process
  warm); `RSS before` is its VmRSS then. The body is sent once with ExternalDNS's headers (`POST /records`:
  `{{"create": [...]}}`; `POST /adjustendpoints`: the same endpoints as an array), timed until the whole answer
  arrived; `peak RSS` is the process's VmHWM right after the answer, `RSS after` its VmRSS.
- Bodies: `externaldns` = per name the A endpoint with labels `owner` and `resource` and its TXT ownership
  endpoint `a-<name>` (label `ownedRecord`), as ExternalDNS v0.22 with `--registry=txt` creates them on a first
  sync (about 200 bytes per endpoint); `dense` = minimal A endpoints (about 80 bytes: the most endpoints per byte
  ExternalDNS sends, e.g. with `--registry=noop`). Sizes: {', '.join(f'{f:g}' for f in args.fractions)} of the
  limit, the last filled to within 0.2 % of it. Then a body one byte over the limit.
"""
    DOC.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0],
                        help="body sizes as fractions of the limit, per shape (1 = the largest accepted body)")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    parser.add_argument("--limit", type=int, default=DEFAULT_MAX_REQUEST_BYTES, help=argparse.SUPPRESS)
    parser.add_argument("--skip-adjust", action="store_true")
    args = parser.parse_args()
    args.load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="fleetdns-bench-body-"))
    progress(f"work directory {workdir}; limit {args.limit:,} bytes; peak goal {PEAK_GOAL_MB} MB")
    runs: list[Run] = []
    with EtcdServer(workdir / "etcd") as etcd:
        for shape in args.shapes:
            for fraction in args.fractions:
                endpoints = endpoints_for(shape, int(args.limit * fraction))
                runs.append(measure(etcd, workdir, shape, "/records", endpoints))
                if not args.skip_adjust:
                    runs.append(measure(etcd, workdir, shape, "/adjustendpoints", endpoints))
        over_status = over_limit_status(etcd, workdir, args.limit)
        progress(f"a body one byte over the limit: {over_status}")
    print(write_doc(runs, args, over_status))
    progress(f"results written to {DOC.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
