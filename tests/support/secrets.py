"""Where a secret shows up that it must not: component logs, every API object a server holds (Secrets aside, which
are where secrets belong), Events, status, and metrics pages. Used after runs that exercised each secret."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fleetdns.kubeapi import KubeClient
from rig.waiting import wait_for
from tests.support.access import served_kinds

SECRET_HOLDERS = {("", "secrets")}  # (group, resource) whose objects hold secrets by design


def in_api_objects(servers: Mapping[str, KubeClient], secrets: Mapping[str, str],
                   homes: Mapping[str, Sequence[str]] = MappingProxyType({})) -> list[str]:
    """``server: group/resource namespace/name holds <secret name>`` for every object of every listable resource the
    server serves (Secrets aside) that holds a secret; ``homes``: secret name -> the field where the user wrote it
    (e.g. ``("spec", "healthCheck", "httpGet", "httpHeaders")``), the one place that secret may be."""
    found = []
    for server, api in servers.items():
        for kind in sorted(served_kinds(api), key=lambda k: k.list_path):
            if not kind.preferred or "/" in kind.resource or "list" not in kind.verbs or \
                    (kind.group, kind.resource) in SECRET_HOLDERS:
                continue
            for item in _listed(api, kind.list_path).get("items") or []:
                meta = item.get("metadata") or {}
                where = f"{server}: {kind.group or 'core'}/{kind.resource} " \
                        f"{meta.get('namespace', '')}/{meta.get('name')}"
                found += [f"{where} holds {label}" for label, value in secrets.items()
                          if value in json.dumps(_without(item, homes.get(label, ())))]
    return found


def _listed(api: KubeClient, path: str) -> dict[str, Any]:
    """The list at ``path``, asked again while the server answers 429 (a CRD's cache filling after a restart)."""
    return wait_for(lambda: api.get(path), 30, what=f"a list of {path}")


def _without(item: Mapping[str, Any], path: Sequence[str]) -> Mapping[str, Any]:
    """``item`` with the field at ``path`` left out (as it is when it has no such field)."""
    if not path or path[0] not in item:
        return item
    head, rest = path[0], path[1:]
    if not rest:
        return {key: value for key, value in item.items() if key != head}
    child = item[head]
    return {**item, head: _without(child, rest)} if isinstance(child, Mapping) else item


def in_files(paths: Iterable[Path], secrets: Mapping[str, str]) -> list[str]:
    """``<file> holds <secret name>`` for every file that holds a secret."""
    found = []
    for path in paths:
        text = path.read_text(errors="replace")
        found += [f"{path} holds {label}" for label, value in secrets.items() if value in text]
    return found


def in_pages(pages: Mapping[str, str], secrets: Mapping[str, str]) -> list[str]:
    """``<page> holds <secret name>`` for every page (a metrics scrape, by name) that holds a secret."""
    return [f"{name} holds {label}" for name, text in pages.items() for label, value in secrets.items()
            if value in text]
