"""The chart's wiring, run here: ``helm template`` of charts/fleetdns with the rig's values, and what the kubelet does
for one of its pods (volumes as local directories, the environment resolved, ``$(VAR)`` expanded, the command found)
so each FleetDNS container starts as a local process with the command, arguments and environment the chart renders.

A path the chart gives a process lives in one of the container's volume mounts, and becomes the same path under that
volume's local directory; a path under no mount is refused here, naming the container and the path, as the process
would not find it in a pod. ``helm template`` runs once per distinct set of values in a process (cached).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rig.binaries import binary
from rig.helm import CHART, NAMESPACE, helm
from rig.process import RigError

RELEASE = "fleetdns"
# The images' own binaries by their path's file name (the chart names them by path), run as the rig's binaries.
THIRD_PARTY = {"coredns": "coredns", "external-dns": "external-dns", "etcd": "etcd"}
# Values that look like absolute paths but are etcd key prefixes, by flag or variable.
NOT_FILE_PATHS = frozenset({"--prefix", "WEBHOOK_PREFIX", "ZONEFILES_PREFIX",
                            "--views-prefix", "ZONEFILES_VIEWS_PREFIX"})
# What the image's environment holds besides the chart's variables (Dockerfile ENV), and what the rig passes on from
# its own (PATH finds ip/setpriv; HOME and TMPDIR as a container has them).
IMAGE_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
PASSED_ON = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ")

Values = Mapping[str, Any]


class ChartWiringError(RigError):
    """The rendered chart cannot run as given: a missing Secret, a path under no mount, an unknown command..."""


@dataclass(frozen=True)
class Volume:
    name: str
    kind: str  # secret, configMap or emptyDir
    source: str  # the Secret's or ConfigMap's name ("" for emptyDir)


@dataclass(frozen=True)
class Mount:
    volume: Volume
    path: str  # mountPath inside the container


@dataclass(frozen=True)
class ContainerWiring:
    """One container of a rendered workload, as the chart wrote it."""

    workload: str  # Kind/name
    name: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[Mapping[str, Any], ...]  # EnvVar objects
    mounts: tuple[Mount, ...]
    automount_token: bool  # the pod gets its ServiceAccount's token (its own cluster's credentials)

    @property
    def title(self) -> str:
        return f"{self.workload} container {self.name}"


@dataclass(frozen=True)
class RenderedChart:
    documents: tuple[Mapping[str, Any], ...]
    values: str  # the values, as JSON (for messages)

    def workload(self, name: str) -> Mapping[str, Any]:
        for doc in self.documents:
            if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet") and doc["metadata"]["name"] == name:
                return doc
        raise ChartWiringError(f"the chart rendered no workload {name} with values {self.values}")

    def container(self, workload: str, name: str) -> ContainerWiring:
        doc = self.workload(workload)
        pod = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: _volume(v) for v in pod.get("volumes") or []}
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            if container["name"] != name:
                continue
            title = f"{doc['kind']}/{workload} container {name}"
            if not container.get("command"):
                raise ChartWiringError(f"{title} names no command: the image's entry point would run unseen")
            mounts = []
            for mount in container.get("volumeMounts") or []:
                if mount["name"] not in volumes:
                    raise ChartWiringError(f"{title} mounts volume {mount['name']!r}, which the pod does not have")
                mounts.append(Mount(volumes[mount["name"]], mount["mountPath"].rstrip("/") or "/"))
            return ContainerWiring(f"{doc['kind']}/{workload}", name, tuple(container["command"]),
                                   tuple(str(a) for a in container.get("args") or ()),
                                   tuple(container.get("env") or ()), tuple(mounts),
                                   pod.get("automountServiceAccountToken", True) is not False)
        raise ChartWiringError(f"{doc['kind']}/{workload} has no container {name}")

    def config_map(self, name: str) -> Mapping[str, str]:
        for doc in self.documents:
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == name:
                return doc.get("data") or {}
        raise ChartWiringError(f"the chart rendered no ConfigMap {name} with values {self.values}")


def _volume(spec: Mapping[str, Any]) -> Volume:
    if "secret" in spec:
        return Volume(spec["name"], "secret", spec["secret"]["secretName"])
    if "configMap" in spec:
        return Volume(spec["name"], "configMap", spec["configMap"]["name"])
    if "emptyDir" in spec:
        return Volume(spec["name"], "emptyDir", "")
    raise ChartWiringError(f"volume {spec['name']}: the rig plays only Secret, ConfigMap and emptyDir volumes: {spec}")


_RENDERED: dict[tuple[str, str], RenderedChart] = {}
_RENDER_LOCK = threading.Lock()


def render(values: Values, chart: Path = CHART) -> RenderedChart:
    """``helm template`` of ``chart`` (release fleetdns in fleetdns-system) with ``values``, parsed; once per distinct
    values in this process. A value the schema refuses or a template that fails raises ChartWiringError with helm's
    message."""
    text = json.dumps(values, sort_keys=True)
    key = (str(chart), text)
    with _RENDER_LOCK:
        if key not in _RENDERED:
            _RENDERED[key] = _helm_template(chart, text)
        return _RENDERED[key]


def _helm_template(chart: Path, values: str) -> RenderedChart:
    run = helm("template", RELEASE, str(chart), "--namespace", NAMESPACE, values=json.loads(values), timeout=60)
    if run.returncode != 0:
        errors = "\n".join(line for line in run.stderr.splitlines() if "level=INFO" not in line)
        raise ChartWiringError(f"helm template {chart} refused values {values}:\n{errors}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    documents = tuple(doc for doc in yaml.load_all(run.stdout, Loader=loader) if doc)
    return RenderedChart(documents, values)


def merge(*layers: Values) -> dict[str, Any]:
    """Values layered as ``helm -f a -f b`` does: mappings merged key by key, anything else replaced."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
    return out


def split_flags(args: list[str] | tuple[str, ...], known: Mapping[str, tuple[str, ...]],
                convert: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """A test's ``--flag=value`` arguments as chart values where the chart has one (``known``: flag -> value path;
    ``convert``: flag -> function to the value's type) and the rest as ``extraArgs``."""
    values: dict[str, Any] = {}
    extra: list[str] = []
    for arg in args:
        flag, has_value, value = arg.partition("=")
        if has_value and flag in known:
            path = known[flag]
            node = values
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = (convert or {}).get(flag, str)(value)
        else:
            extra.append(arg)
    return values, extra


def as_bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ChartWiringError(f"expected true or false, got {value!r}")
    return value.lower() == "true"


class LocalPod:
    """One pod of the rendered chart on this machine: each volume a local directory, each container's argv and
    environment as the kubelet would give them.

    ``secrets``: Secret name -> key -> a file (copied) or its text, the rig's stand-in for the cluster's Secrets;
    ``directories``: volume name -> where that volume lives (default ``workdir/volumes/<volume>``);
    ``kubeconfig``: the pod's own cluster, for a pod that mounts its ServiceAccount token (the in-cluster config
    becomes ``KUBECONFIG``)."""

    def __init__(self, rendered: RenderedChart, workload: str, name: str, workdir: Path, *,
                 secrets: Mapping[str, Mapping[str, Path | str]] | None = None,
                 directories: Mapping[str, Path] | None = None, kubeconfig: Path | None = None) -> None:
        self.rendered = rendered
        self.workload = workload
        self.name = name
        self.workdir = Path(workdir)
        self.secrets = dict(secrets or {})
        self.directories = dict(directories or {})
        self.kubeconfig = kubeconfig
        self._materialized: dict[str, Path] = {}

    def container(self, name: str) -> ContainerWiring:
        return self.rendered.container(self.workload, name)

    def volume_dir(self, volume: Volume) -> Path:
        """The volume's local directory, its files written the first time (Secret and ConfigMap volumes are read-only
        snapshots, as projected volumes)."""
        if volume.name in self._materialized:
            return self._materialized[volume.name]
        directory = Path(self.directories.get(volume.name, self.workdir / "volumes" / volume.name))
        directory.mkdir(parents=True, exist_ok=True)
        if volume.kind == "secret":
            if volume.source not in self.secrets:
                raise ChartWiringError(f"{self.workload}: volume {volume.name} needs Secret {volume.source}, which the "
                                       f"rig was not given (the pod would not start); given: {sorted(self.secrets)}")
            for key, content in self.secrets[volume.source].items():
                if isinstance(content, Path):
                    shutil.copyfile(content, directory / key)
                else:
                    (directory / key).write_text(content)
        elif volume.kind == "configMap":
            for key, text in self.rendered.config_map(volume.source).items():
                (directory / key).write_text(text)
        self._materialized[volume.name] = directory
        return directory

    def local_path(self, container: ContainerWiring, path: str, where: str) -> Path:
        """Where ``path`` (inside ``container``) is on this machine; ChartWiringError if no mount holds it."""
        best: Mount | None = None
        for mount in container.mounts:
            if (path == mount.path or path.startswith(mount.path.rstrip("/") + "/")) and \
                    (best is None or len(mount.path) > len(best.path)):
                best = mount
        if best is None:
            mounts = ", ".join(f"{m.path} ({m.volume.name})" for m in container.mounts) or "none"
            raise ChartWiringError(f"{container.title}: {where} names {path}, which is under no volume mount of the "
                                   f"container (mounts: {mounts}): the process would not find it in a pod")
        relative = path[len(best.path):].lstrip("/")
        directory = self.volume_dir(best.volume)
        return directory / relative if relative else directory

    def environment(self, container: ContainerWiring) -> dict[str, str]:
        """The container's variables as the kubelet sets them: in order, ``$(VAR)`` of earlier ones expanded,
        ``valueFrom`` resolved, paths moved to their volumes' local directories."""
        env: dict[str, str] = {}
        for var in container.env:
            name = var["name"]
            if "valueFrom" in var:
                value = self._value_from(container, name, var["valueFrom"])
            else:
                value = expand(str(var.get("value", "")), env)
            if value.startswith("/") and name not in NOT_FILE_PATHS:
                value = str(self.local_path(container, value, f"variable {name}"))
            env[name] = value
        if container.automount_token:
            if self.kubeconfig is None:
                raise ChartWiringError(f"{container.title} mounts its ServiceAccount token: the rig must give the pod "
                                       "its cluster's kubeconfig")
            env.setdefault("KUBECONFIG", str(self.kubeconfig))  # the in-cluster config's stand-in
        return env

    def _value_from(self, container: ContainerWiring, name: str, source: Mapping[str, Any]) -> str:
        if "fieldRef" in source:
            field = source["fieldRef"]["fieldPath"]
            fields = {"metadata.name": self.name, "metadata.namespace": NAMESPACE, "status.podIP": "127.0.0.1",
                      "status.hostIP": "127.0.0.1", "spec.nodeName": "localhost"}
            if field not in fields:
                raise ChartWiringError(f"{container.title}: variable {name} reads field {field}, unknown to the rig")
            return fields[field]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = self.secrets.get(ref["name"], {})
            if ref["key"] not in secret:
                if ref.get("optional"):
                    return ""
                raise ChartWiringError(f"{container.title}: variable {name} needs key {ref['key']} of Secret "
                                       f"{ref['name']}, which the rig was not given")
            content = secret[ref["key"]]
            return content.read_text() if isinstance(content, Path) else content
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            data = self.rendered.config_map(ref["name"])
            if ref["key"] not in data:
                raise ChartWiringError(f"{container.title}: variable {name}: ConfigMap {ref['name']} has no "
                                       f"{ref['key']}")
            return data[ref["key"]]
        raise ChartWiringError(f"{container.title}: variable {name}: the rig cannot resolve {source}")

    def argv(self, container: ContainerWiring, env: Mapping[str, str]) -> list[str]:
        """The command and arguments, ``$(VAR)`` expanded; the command a console script of this virtualenv or one of
        the rig's binaries; every path moved to its volume's local directory."""
        words = [expand(word, env) for word in (*container.command, *container.args)]
        out = [program(container, words[0])]
        for word in words[1:]:
            flag, has_value, value = word.partition("=")
            if word.startswith("-") and has_value and value.startswith("/") and flag not in NOT_FILE_PATHS:
                word = f"{flag}={self.local_path(container, value, f'argument {flag}')}"
            elif word.startswith("/"):
                word = str(self.local_path(container, word, "an argument"))
            out.append(word)
        return out

    def process(self, container_name: str) -> tuple[list[str], dict[str, str]]:
        """(argv, environment) of one container, the environment complete (nothing inherited but ``PASSED_ON``)."""
        container = self.container(container_name)
        env = self.environment(container)
        argv = self.argv(container, env)
        inherited = {key: os.environ[key] for key in PASSED_ON if key in os.environ}
        return argv, {**inherited, **IMAGE_ENV, **env}


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined variables replaced, ``$$`` an escaped ``$``, undefined references
    left as written."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))
    return _REFERENCE.sub(replace, text)


def program(container: ContainerWiring, command: str) -> str:
    """A console script (by name: the chart runs the image's PATH) as this virtualenv's script, so the real entry point
    runs; an image's binary (by path) as the rig's binary of that name."""
    if "/" not in command:
        script = Path(sys.executable).parent / command
        if not script.exists():
            raise ChartWiringError(f"{container.title} runs {command}, which is not a console script of "
                                   f"{script.parent} (pyproject.toml [project.scripts]; `make venv`)")
        return str(script)
    name = Path(command).name
    if name not in THIRD_PARTY:
        raise ChartWiringError(f"{container.title} runs {command}: neither a console script nor a binary the rig has")
    return binary(THIRD_PARTY[name])
