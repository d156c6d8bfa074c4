"""Where a secret shows up that it must not: component logs, every API object a server holds (Secrets aside, which
are where secrets belong), Events, status, and metrics pages. Used after runs that exercised each secret."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from fleetdns.kubeapi import KubeClient

SECRET_HOLDERS = {("", "secrets")}  # (group, resource) whose objects hold secrets by design


def _resources(api: KubeClient) -> Iterator[tuple[str, str]]:
    """(list path, "group/resource") of every listable top-level resource the server serves."""
    versions = [("", "api/v1")]
    versions += [(group["name"], f"apis/{group['preferredVersion']['groupVersion']}")
                 for group in api.get("/apis").get("groups", [])]
    for group, prefix in versions:
        for resource in api.get(f"/{prefix}").get("resources", []):
            if "/" in resource["name"] or "list" not in resource.get("verbs", ()):
                continue
            if (group, resource["name"]) in SECRET_HOLDERS:
                continue
            yield f"/{prefix}/{resource['name']}", f"{group or 'core'}/{resource['name']}"


def in_api_objects(servers: Mapping[str, KubeClient], secrets: Mapping[str, str]) -> list[str]:
    """``server: group/resource namespace/name holds <secret name>`` for every object that holds a secret."""
    found = []
    for server, api in servers.items():
        for path, resource in _resources(api):
            for item in api.get(path).get("items") or []:
                text = json.dumps(item)
                meta = item.get("metadata") or {}
                found += [f"{server}: {resource} {meta.get('namespace', '')}/{meta.get('name')} holds {label}"
                          for label, value in secrets.items() if value in text]
    return found


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
