"""The intents' DNSEndpoints on the host: create, update or delete one only when it is ours
(aggregator/registry/ownership.py), each write conditional on the resourceVersion ownership was decided on, so an
object replaced meanwhile is looked at again, never overwritten.

What was written last is kept until the cache shows it: it is fresher than the cache until the write's watch event
arrives, and comparing with the older cache would write twice.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from aggregator.metrics import AggregatorMetrics
from aggregator.model import DNSEndpointObject, IntentKey, parse_dns_endpoint
from aggregator.registry.ownership import Ownership, conflict_message, owner_references, ownership
from aggregator.render.records import render_dns_endpoint
from aggregator.sources.base import Source
from aggregator.sources.intent import Intent
from fleetdns.apipaths import DNS_ENDPOINTS
from fleetdns.endpoint import Endpoint
from fleetdns.kubeapi import KubeClient, KubeError

logger = logging.getLogger("aggregator.reconciler")  # the reconciler's log lines, as before this class was split out
Records = tuple[dict[str, Any], ...]


class DNSEndpointCache(Protocol):
    def dns_endpoint(self, namespace: str, name: str) -> DNSEndpointObject | None:
        """The DNSEndpoint as the cache last saw it (None: not there, or not seen yet); foreign ones too."""
        ...


class DNSEndpoints:
    """Writes the intents' DNSEndpoints and remembers what it wrote."""

    def __init__(self, cache: DNSEndpointCache, host: KubeClient, metrics: AggregatorMetrics) -> None:
        self.cache = cache
        self.host = host
        self.metrics = metrics
        self._desired: dict[IntentKey, Records] = {}  # last rendered DNSEndpoint records
        self._written: dict[IntentKey, DNSEndpointObject] = {}  # last DNSEndpoint written, until the cache has it

    def desired(self, key: IntentKey) -> Records | None:
        """The records last rendered for the intent; None when it was never written (or is gone)."""
        return self._desired.get(key)

    def observed(self, key: IntentKey, seen: DNSEndpointObject | None) -> None:
        """The cache saw the intent's DNSEndpoint change: once it has our write (or anything after it,
        or its deletion), the cache is the fresher view again."""
        written = self._written.get(key)
        if written is not None and (seen is None or _caught_up(seen.resource_version, written.resource_version)):
            self._written.pop(key, None)

    def forget_writes(self) -> None:
        """Leadership gained: another replica may have written since, so the cache is the truth again."""
        self._written.clear()

    def forget(self, key: IntentKey) -> None:
        """The intent is gone and its DNSEndpoint deleted (or not ours)."""
        self._desired.pop(key, None)
        self._written.pop(key, None)

    def write(self, source: Source[Any], intent: Intent, endpoints: list[Endpoint]) -> str:
        """Create or update the intent's DNSEndpoint; returns the NameConflict message (and writes nothing)
        when its name is held by an object that is not ours."""
        key = intent.key
        name = source.dns_endpoint_name(key.name)
        path = DNS_ENDPOINTS.path(key.namespace, name)
        body = render_dns_endpoint(key, name, source.intent_resource, intent.uid, endpoints)
        records = tuple(body["spec"]["endpoints"])
        existing = self._current(key, name)
        for attempt in range(2):
            if existing is None:
                try:
                    self._remember(key, self.host.create(DNS_ENDPOINTS.path(key.namespace), body))
                except KubeError as error:
                    if error.status != 409 or attempt:
                        raise
                    existing = self._read(path)  # there already, unseen by the cache
                    continue
                self._desired[key] = records
                self._count_write("create", key, len(endpoints))
                return ""
            owner = ownership(existing, key, source.intent_resource, intent.uid)
            if owner is Ownership.FOREIGN:
                self._desired.pop(key, None)
                return conflict_message(existing)
            self._desired[key] = records
            if owner is Ownership.OURS and existing.endpoints == records:  # ours: labels and owner already match
                return ""
            patch = {"metadata": {"labels": body["metadata"]["labels"],
                                  "ownerReferences": owner_references(existing, key, source.intent_resource,
                                                                      intent.uid),
                                  "resourceVersion": existing.resource_version},
                     "spec": body["spec"]}
            try:
                self._remember(key, self.host.merge_patch(path, patch))
            except KubeError as error:
                if error.status not in (404, 409) or attempt:
                    raise
                existing = self._read(path)  # changed or deleted since we looked: decide again
                continue
            if owner is Ownership.PREVIOUS:
                logger.info("adopted the DNSEndpoint of an earlier object of this intent",
                            extra={"intent": str(key), "dnsendpoint": f"{key.namespace}/{name}"})
            self._count_write("update", key, len(endpoints))
            return ""
        raise KubeError(409, "Conflict", f"DNSEndpoint {key.namespace}/{name} changed while being written")

    def delete(self, key: IntentKey, source: Source[Any]) -> None:
        """The intent is gone (from a cache that has listed): its DNSEndpoint goes too, if it is ours. The
        delete is conditional on the UID and resourceVersion ownership was decided on."""
        name = source.dns_endpoint_name(key.name)
        path = DNS_ENDPOINTS.path(key.namespace, name)
        existing = self._current(key, name)
        for attempt in range(2):
            if existing is None or ownership(existing, key, source.intent_resource, None) is not Ownership.OURS:
                return
            preconditions = {"resourceVersion": existing.resource_version} | ({"uid": existing.uid}
                                                                               if existing.uid else {})
            try:
                self.host.request("DELETE", path, body={"apiVersion": "v1", "kind": "DeleteOptions",
                                                        "preconditions": preconditions})
            except KubeError as error:
                if error.status == 404:
                    return
                if error.status != 409 or attempt:
                    raise
                existing = self._read(path)
                continue
            self._count_write("delete", key, 0)
            return

    def _current(self, key: IntentKey, name: str) -> DNSEndpointObject | None:
        """The cache, unless what we wrote last is newer (its watch event has not arrived yet)."""
        cached = self.cache.dns_endpoint(key.namespace, name)
        written = self._written.get(key)
        if written is None:
            return cached
        if cached is not None and _caught_up(cached.resource_version, written.resource_version):
            self._written.pop(key, None)
            return cached
        return written

    def _read(self, path: str) -> DNSEndpointObject | None:
        """The object as the API server holds it now (the cache had not seen it, or it changed meanwhile)."""
        found = self.host.get_if_exists(path)
        return None if found is None else parse_dns_endpoint(found)

    def _remember(self, key: IntentKey, written: dict[str, Any]) -> None:
        """Keep what we wrote, so a reconcile before its watch event compares with it, not the older cache."""
        self._written[key] = parse_dns_endpoint(written)

    def _count_write(self, operation: str, key: IntentKey, records: int) -> None:
        self.metrics.dnsendpoint_writes.labels(operation).inc()
        logger.info("DNSEndpoint written", extra={"intent": str(key), "operation": operation, "records": records})


def _caught_up(seen: str, written: str) -> bool:
    """Whether a cache showing resourceVersion ``seen`` already has the write that returned ``written``.
    API servers hand out etcd revisions; for versions that are not numbers, trust the cache (at worst
    one redundant write)."""
    try:
        return int(seen) >= int(written)
    except ValueError:
        return True
