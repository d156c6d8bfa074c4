"""The bodies of POST /records (ExternalDNS's Changes, both spellings) and /adjustendpoints, parsed at the edge.

Only a body that is not a Changes document (or endpoint array) raises: ExternalDNS exits on any 4xx, so an
endpoint that cannot be stored is set aside as ``Skipped`` and the rest of the batch still applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from fleetdns.endpoint import Endpoint, EndpointFormatError, iter_endpoints, json_type
from webhook_provider.domain_filter import DomainFilter
from webhook_provider.validation import DroppedProperty, Rejection, Storable, existing_endpoint, storable_endpoint

# v0.17+ sends camelCase and omits empty lists; up to v0.16 the keys were capitalised and empty lists null.
_SPELLINGS = {
    "create": ("create", "Create"),
    "update_old": ("updateOld", "UpdateOld"),
    "update_new": ("updateNew", "UpdateNew"),
    "delete": ("delete", "Delete"),
}


@dataclass(frozen=True)
class Skipped:
    """One endpoint of a request that is not applied; ``path`` says where it was (``create[3]``)."""

    path: str
    rejection: Rejection


@dataclass(frozen=True)
class Trimmed:
    """A property left out of an endpoint that is applied without it; ``path`` says where (``create[3]``)."""

    path: str
    dropped: DroppedProperty


@dataclass(frozen=True)
class Changes:
    """Canonical endpoints to apply; ``update_old[i]`` pairs with ``update_new[i]``; ``skipped`` is never written;
    ``trimmed`` lists the properties left out of endpoints that are applied."""

    create: tuple[Endpoint, ...] = ()
    update_old: tuple[Endpoint, ...] = ()
    update_new: tuple[Endpoint, ...] = ()
    delete: tuple[Endpoint, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    trimmed: tuple[Trimmed, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.create or self.update_old or self.update_new or self.delete)

    def counts(self) -> dict[str, int]:
        return {"create": len(self.create), "update": len(self.update_new), "delete": len(self.delete)}


def parse_changes(data: Any, domain_filter: DomainFilter, *, consume: bool = False) -> Changes:
    """Raises EndpointFormatError (with its JSON path) only for a malformed document; bad endpoints are skipped.

    ``consume`` (a request body nobody else holds): each endpoint's JSON in ``data`` is released as soon as it is
    judged, so the largest request holds about one copy of its endpoints at a time (the decoded tree shrinks
    while the canonical endpoints grow).
    """
    if not isinstance(data, dict):
        raise EndpointFormatError("$", "expected a Changes object")
    lists = {field_name: _endpoint_list(data, spellings) for field_name, spellings in _SPELLINGS.items()}
    old_key, olds = lists["update_old"]
    new_key, news = lists["update_new"]
    if len(olds) != len(news):
        raise EndpointFormatError("updateOld", f"updateOld has {len(olds)} endpoints but updateNew has {len(news)}; "
                                               "they must pair up")
    skipped: list[Skipped] = []
    trimmed: list[Trimmed] = []

    def keep(key: str, index: int, verdict: Endpoint | Storable | Rejection) -> Endpoint | None:
        if isinstance(verdict, Rejection):
            skipped.append(Skipped(f"{key}[{index}]", verdict))
            return None
        if isinstance(verdict, Storable):
            trimmed.extend(Trimmed(f"{key}[{index}]", dropped) for dropped in verdict.dropped)
            return verdict.endpoint
        return verdict

    create_key, creates = lists["create"]
    create = [e for i, raw in enumerate(iter_endpoints(creates, create_key, consume=consume))
              if (e := keep(create_key, i, storable_endpoint(raw, domain_filter))) is not None]
    delete_key, deletes = lists["delete"]
    delete = [e for i, raw in enumerate(iter_endpoints(deletes, delete_key, consume=consume))
              if (e := keep(delete_key, i, existing_endpoint(raw, domain_filter))) is not None]
    update_old: list[Endpoint] = []
    update_new: list[Endpoint] = []
    pairs = zip(iter_endpoints(olds, old_key, consume=consume), iter_endpoints(news, new_key, consume=consume),
                strict=True)
    for index, (old, new) in enumerate(pairs):
        # Judge the new side first: it is what would be written. A skipped pair leaves the old record in place.
        new_verdict = keep(new_key, index, storable_endpoint(new, domain_filter))
        old_verdict = keep(old_key, index, existing_endpoint(old, domain_filter)) if new_verdict is not None else None
        if new_verdict is not None and old_verdict is not None:
            update_old.append(old_verdict)
            update_new.append(new_verdict)
    return Changes(create=tuple(create), update_old=tuple(update_old), update_new=tuple(update_new),
                   delete=tuple(delete), skipped=tuple(skipped), trimmed=tuple(trimmed))


def _endpoint_list(data: dict[str, Any], spellings: tuple[str, str]) -> tuple[str, list[Any]]:
    """The JSON list under whichever spelling is present, and that key (for paths in logs and errors)."""
    present = [key for key in spellings if data.get(key) is not None]
    if len(present) > 1:
        raise EndpointFormatError(present[1], f"both {present[0]!r} and {present[1]!r} given")
    if not present:
        return spellings[0], []
    items = data[present[0]]
    if not isinstance(items, list):
        raise EndpointFormatError(present[0], f"expected an array of endpoints, got {json_type(items)}")
    return present[0], items


def set_aside(changes: Changes, refuse: Callable[[Endpoint], Rejection | None]) -> Changes:
    """``changes`` without the endpoints to write (create, updateNew) that ``refuse`` rejects, which join
    ``skipped``: for judgements that need more than the document (the etcd size limit, ``planner.too_large``).

    As in ``parse_changes``, a pair whose new side is refused is skipped whole (the old record stays). The path
    names the list only: indices of the document are not kept once it is parsed.
    """
    skipped: list[Skipped] = []

    def kept(path: str, endpoint: Endpoint) -> bool:
        rejection = refuse(endpoint)
        if rejection is not None:
            skipped.append(Skipped(path, rejection))
        return rejection is None

    create = tuple(endpoint for endpoint in changes.create if kept("create", endpoint))
    pairs = [(old, new) for old, new in zip(changes.update_old, changes.update_new, strict=True)
             if kept("updateNew", new)]
    if not skipped:
        return changes
    return replace(changes, create=create, update_old=tuple(old for old, _ in pairs),
                   update_new=tuple(new for _, new in pairs), skipped=(*changes.skipped, *skipped))
