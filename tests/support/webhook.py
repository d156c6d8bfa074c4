"""The webhook provider's tests: its process on the session etcd, records as ExternalDNS sends them, and the etcd
states the planner works on (``{key: value}``, committed by ``apply_plans``)."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fleetdns.skydns.encoding import decode_entry
from fleetdns.skydns.records import StoredEntry, endpoints_of
from rig import EtcdServer
from rig.region import WebhookProvider
from webhook_provider.changes import Changes, parse_changes
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.planner import NamePlan, plan_changes

PREFIX = "/skydns/"
EVERYTHING = DomainFilter()


@contextlib.contextmanager
def running_webhook(etcd: EtcdServer, workdir: Path, tag: str, **options: Any) -> Iterator[tuple[WebhookProvider, str]]:
    """A webhook on ``etcd`` under a prefix of its own (``/<tag><random>/``); ``options`` as WebhookProvider takes
    them (domain_filter, name, extra_args)."""
    prefix = f"/{tag}{uuid.uuid4().hex[:8]}/"
    server = WebhookProvider(etcd.endpoints, workdir, prefix=prefix, **options).start()
    yield server, prefix
    server.stop()


def a_record(name: str, *targets: str, **extra: object) -> dict:
    """An A endpoint as ExternalDNS sends it."""
    return {"dnsName": name, "recordType": "A", "targets": list(targets), **extra}


def stored(key: str, value: dict | str, revision: int = 1) -> StoredEntry:
    """One etcd key as the webhook reads it (``value``: its JSON, or a dict to encode)."""
    raw = value if isinstance(value, str) else json.dumps(value)
    return decode_entry(PREFIX, key, raw.encode(), revision)


def entries_of(state: dict[str, str], revision: int = 1) -> list[StoredEntry]:
    return [stored(key, value, revision) for key, value in sorted(state.items())]


def endpoints_in(state: dict[str, str]) -> list[dict]:
    """The endpoints the webhook would list for ``state``, as JSON."""
    records = [r for entry in entries_of(state) for r in entry.records]
    return [e.to_json() for e in endpoints_of(records)]


def changes(**lists: list[dict]) -> Changes:
    """A changes document (create, updateOld, updateNew, delete) as the webhook parses it, no domain filter."""
    return parse_changes(lists, EVERYTHING)


def planned(state: dict[str, str], revision: int = 1, **lists: list[dict]) -> list[NamePlan]:
    """The plans for ``lists`` against ``state`` (each key at mod ``revision``)."""
    return plan_changes(entries_of(state, revision), changes(**lists), PREFIX)


def apply_plans(state: dict[str, str], plans: list[NamePlan]) -> dict[str, str]:
    """What etcd holds after the plans' operations (a pure stand-in for committing them)."""
    after = dict(state)
    for plan in plans:
        for key in plan.deletes:
            after.pop(key, None)
        after.update(plan.puts)
    return after
