"""Resuming a watch across a host API server restart without the client re-listing.

A restarted API server's watch cache starts at the present, so a watch from an older resourceVersion X gets
410 Expired and client-go re-lists after its backoff, which doubles with each restart in a two-minute window
(0.8 s, 1.6 s, 3.2 s ...). etcd still holds X (until compaction), so the relay lists the objects as they were at
X (``resourceVersionMatch=Exact``, read from etcd) and as they are now at R, sends the difference as the watch
events the client missed, and watches on from R: the same events a watch from X would have delivered, in
resourceVersion order, except that several changes of one object arrive as one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode

WATCH_ONLY_PARAMS = ("watch", "resourceVersion", "resourceVersionMatch", "timeoutSeconds", "allowWatchBookmarks",
                     "sendInitialEvents", "limit", "continue")


def resume_version(query: str) -> str | None:
    """The resourceVersion a watch resumes from, or None when it is not a resume (a fresh or initial-events
    watch, which the host serves from any state)."""
    params = parse_qs(query)
    version = params.get("resourceVersion", [""])[0]
    if not version or version == "0" or params.get("sendInitialEvents", [""])[0] == "true":
        return None
    return version


def list_query(query: str, resource_version: str | None) -> str:
    """The watch's own selectors as a list request: at exactly ``resource_version``, or now (None)."""
    params = {key: values[-1] for key, values in parse_qs(query).items() if key not in WATCH_ONLY_PARAMS}
    if resource_version is not None:
        params.update(resourceVersion=resource_version, resourceVersionMatch="Exact")
    return urlencode(params)


def watch_query(query: str, resource_version: str) -> str:
    """The client's watch, from ``resource_version`` instead."""
    params = {key: values[-1] for key, values in parse_qs(query).items()}
    params["resourceVersion"] = resource_version
    return urlencode(params)


def _object_key(item: dict[str, Any]) -> tuple[str, str]:
    metadata = item.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _version(item: dict[str, Any]) -> int:
    try:
        return int((item.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _with_kind(item: dict[str, Any], listing: dict[str, Any]) -> dict[str, Any]:
    """List items may leave out apiVersion and kind; watch events always carry them."""
    kind = str(listing.get("kind") or "")
    return {"apiVersion": listing.get("apiVersion"), "kind": kind.removesuffix("List"), **item}


def missed_events(before: dict[str, Any], now: dict[str, Any]) -> list[dict[str, Any]]:
    """The watch events that take a client holding ``before`` (a list response) to ``now`` (a later one):
    ADDED and MODIFIED in resourceVersion order, then DELETED stamped with ``now``'s resourceVersion."""
    old = {_object_key(item): item for item in before.get("items") or []}
    new = {_object_key(item): item for item in now.get("items") or []}
    events = []
    for key, item in sorted(new.items(), key=lambda pair: _version(pair[1])):
        previous = old.get(key)
        if previous is None:
            events.append({"type": "ADDED", "object": _with_kind(item, now)})
        elif _version(previous) != _version(item):
            events.append({"type": "MODIFIED", "object": _with_kind(item, now)})
    now_version = str((now.get("metadata") or {}).get("resourceVersion") or "")
    for key, item in sorted(old.items()):
        if key not in new:
            gone = _with_kind(item, before)
            gone["metadata"] = {**(gone.get("metadata") or {}), "resourceVersion": now_version}
            events.append({"type": "DELETED", "object": gone})
    return events
