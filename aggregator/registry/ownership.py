"""Which DNSEndpoints are ours to change: pure decisions over the parsed object (ExternalDNS's "registry"
stage, for the objects the aggregator writes).

Ours means both: our labels naming the intent (kind and name), and an ownerReference to the intent.
A DNSEndpoint whose ownerReference names the same intent (group, kind, name) with another UID was
written for a previous incarnation of the intent (deleted and created again, e.g. ``kubectl replace
--force`` or a GitOps re-sync): only one object of a name exists at a time, so that owner is gone and
nobody else can claim the DNSEndpoint; it is adopted (its reference moved to the new UID) rather than
deleted and re-created, which would withdraw the records from DNS for a moment. Anything else that
holds the name is foreign: never patched, never deleted; the intent reports ``NameConflict``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from aggregator.model import DNSEndpointObject, IntentKey, OwnerReference
from aggregator.render.records import intent_owner
from fleetdns.apipaths import DNS_ENDPOINTS, Resource
from fleetdns.labels import LABEL_INTENT_KIND, LABEL_INTENT_NAME


class Ownership(StrEnum):
    OURS = "Ours"  # our labels and a reference to this intent's UID
    PREVIOUS = "PreviousIncarnation"  # our labels and a reference to an earlier object of the same intent
    FOREIGN = "Foreign"  # anything else: left alone


def _names_intent(ref: OwnerReference, key: IntentKey, owner: Resource) -> bool:
    return ref.group == owner.group and ref.kind == owner.kind and ref.name == key.name


def ownership(obj: DNSEndpointObject, key: IntentKey, owner: Resource, uid: str | None) -> Ownership:
    """Whether ``obj`` belongs to intent ``key`` (UID ``uid``; None when the intent is gone, so that any
    incarnation of it counts: none of them exists any more)."""
    if obj.labels.get(LABEL_INTENT_KIND) != str(key.kind) or obj.labels.get(LABEL_INTENT_NAME) != key.name:
        return Ownership.FOREIGN
    if any(ref.controller and not _names_intent(ref, key, owner) for ref in obj.owners):
        return Ownership.FOREIGN  # another controller manages it
    refs = [ref for ref in obj.owners if _names_intent(ref, key, owner)]
    if not refs:
        return Ownership.FOREIGN
    if uid is None or any(ref.uid == uid for ref in refs):
        return Ownership.OURS
    return Ownership.PREVIOUS


def owner_references(obj: DNSEndpointObject | None, key: IntentKey, owner: Resource,
                     uid: str) -> list[dict[str, Any]]:
    """The ownerReferences to write: the intent's (its UID now), plus any others the object already has."""
    ours = intent_owner(key, owner, uid)
    kept = [ref for ref in (obj.owners if obj is not None else ()) if not _names_intent(ref, key, owner)]
    return [ref.to_json() for ref in kept] + [ours.to_json()]


def describe(obj: DNSEndpointObject) -> str:
    """Who holds the name, for the NameConflict message."""
    where = f"{DNS_ENDPOINTS.kind} {obj.namespace}/{obj.name}"
    if not obj.owners:
        return f"{where} (no owner)"
    owners = ", ".join(f"{ref.kind} {obj.namespace}/{ref.name} uid {ref.uid}" for ref in obj.owners)
    return f"{where} (owned by {owners})"


def conflict_message(obj: DNSEndpointObject) -> str:
    return (f"{describe(obj)} already exists and was not written for this intent; it is left untouched and "
            "nothing is published: delete or rename that object to publish this intent")
