"""DNS names: the one place that validates, normalises and splits them."""

from __future__ import annotations

import contextlib
import re

MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
# ExternalDNS's TXT registry (v0.22, no --txt-prefix/--txt-suffix) keeps its ownership record of each
# name at ``<type>-<first label>.<rest>`` (registry/mapper ToTXTName): ``a-``, ``aaaa-`` or ``cname-`` for
# what FleetDNS publishes. The longest of these prefixes must still fit a label and a name.
REGISTRY_PREFIX_MAX = len("cname-")
MAX_PUBLISHED_LABEL_LENGTH = MAX_LABEL_LENGTH - REGISTRY_PREFIX_MAX  # 57, for the first label
MAX_PUBLISHED_NAME_LENGTH = MAX_NAME_LENGTH - REGISTRY_PREFIX_MAX  # 247
# Letters, digits, hyphen; underscore for service labels (_sip._tcp, _acme-challenge); "*" as a whole
# label for wildcards. Anything else is refused before it can reach etcd. Every pattern here is used with
# fullmatch: ``$`` also matches before a trailing newline, so ``match`` accepted ``app\n`` as a label.
_LABEL = re.compile(r"\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# Kubernetes object names (RFC 1123), as the API server and our CRDs check them: stricter than a published name
_OBJECT_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_OBJECT_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class InvalidDNSNameError(ValueError):
    """A name that cannot be served; the message says which label is wrong and why."""


def fold_name(name: str) -> str:
    """Lower-case, no surrounding blanks, no trailing dot, not validated: a name read from a member object, comparable
    with others before it is checked where it would be published (``check_publishable``)."""
    return name.strip().rstrip(".").lower()


def normalize_name(name: str) -> str:
    """Lower-case, no trailing dot, validated: the form every module compares and stores."""
    if not isinstance(name, str):
        raise InvalidDNSNameError(f"DNS name must be a string, got {type(name).__name__}")
    candidate = fold_name(name)
    if not candidate:
        raise InvalidDNSNameError("DNS name is empty")
    if len(candidate) > MAX_NAME_LENGTH:
        raise InvalidDNSNameError(f"DNS name {name!r} is {len(candidate)} characters long (limit {MAX_NAME_LENGTH})")
    labels = candidate.split(".")
    for index, label in enumerate(labels):
        if not label:
            raise InvalidDNSNameError(f"DNS name {name!r} has an empty label")
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidDNSNameError(f"DNS name {name!r}: label {label!r} is longer than {MAX_LABEL_LENGTH}")
        if not _LABEL.fullmatch(label):
            raise InvalidDNSNameError(
                f"DNS name {name!r}: label {label!r} may hold only letters, digits, '-' and '_' "
                "(and not start or end with '-'), or be a lone '*'"
            )
        if label == "*" and index != 0:
            raise InvalidDNSNameError(f"DNS name {name!r}: '*' is only allowed as the leftmost label")
    return candidate


def normalize_stored_name(name: str) -> str:
    """``normalize_name``, also accepting the names versions before issue 14 stored: a label may end in one
    newline (their pattern's ``$`` matched before it). Only to find such records again and remove them."""
    try:
        return normalize_name(name)
    except InvalidDNSNameError:
        folded = fold_name(name)
        labels = folded.split(".")
        if not any(label.endswith("\n") for label in labels):
            raise
        normalize_name(".".join(label.removesuffix("\n") for label in labels))  # valid but for the newlines
        return folded


def is_stored_name(name: str) -> bool:
    """Whether ``normalize_stored_name`` accepts it: a name one of our records may be stored under."""
    try:
        normalize_stored_name(name)
    except InvalidDNSNameError:
        return False
    return True


def check_publishable(name: str) -> str:
    """The normalised name if FleetDNS can publish it through ExternalDNS to stock CoreDNS, else
    InvalidDNSNameError saying what to change.

    Beyond ``normalize_name``: no ``*`` label (the CoreDNS etcd plugin reads ``*`` as a query wildcard,
    not a zone wildcard), and room for the registry's ``cname-`` prefix in the first label and the name.
    """
    candidate = normalize_name(name)
    labels = candidate.split(".")
    if "*" in labels:
        raise InvalidDNSNameError(
            f"DNS name {name!r} is a wildcard, which stock CoreDNS cannot serve (its etcd plugin reads '*' as a "
            "query wildcard, not a zone wildcard): list each host explicitly")
    if len(labels[0]) > MAX_PUBLISHED_LABEL_LENGTH:
        raise InvalidDNSNameError(
            f"DNS name {name!r}: first label {labels[0]!r} is {len(labels[0])} characters; at most "
            f"{MAX_PUBLISHED_LABEL_LENGTH} leave room for ExternalDNS's TXT registry prefix 'cname-': shorten it")
    if len(candidate) > MAX_PUBLISHED_NAME_LENGTH:
        raise InvalidDNSNameError(
            f"DNS name {name!r} is {len(candidate)} characters; at most {MAX_PUBLISHED_NAME_LENGTH} leave room for "
            "ExternalDNS's TXT registry prefix 'cname-': use shorter labels")
    return candidate


def is_valid_name(name: str) -> bool:
    try:
        normalize_name(name)
    except InvalidDNSNameError:
        return False
    return True


def is_dns_label(value: str) -> bool:
    """An RFC 1123 label: a namespace, a Lease, a region, and a Domain as every intent's ``domainRef`` names it."""
    return bool(_OBJECT_LABEL.fullmatch(value))


def is_dns_subdomain(value: str) -> bool:
    """An RFC 1123 subdomain: most objects' names (a MemberCluster, hence a failover target)."""
    return bool(_OBJECT_SUBDOMAIN.fullmatch(value))


def is_within(name: str, domain: str) -> bool:
    """True when ``name`` equals ``domain`` or is below it (both already normalised)."""
    return name == domain or name.endswith("." + domain)


def labels_reversed(name: str) -> list[str]:
    """``app.example.com`` -> ``["com", "example", "app"]`` (the SkyDNS key order)."""
    return name.split(".")[::-1]


def name_from_reversed(labels: list[str]) -> str:
    return ".".join(reversed(labels))


def to_unicode(name: str) -> str:
    """Punycode labels decoded, as ExternalDNS's domain filter compares names."""
    labels = []
    for label in name.split("."):
        decoded = label
        if label.startswith("xn--"):
            with contextlib.suppress(UnicodeError):  # undecodable: matching uses the ASCII form
                decoded = label.encode("ascii").decode("idna")
        labels.append(decoded)
    return ".".join(labels)


def join(*parts: str) -> str:
    """Join name fragments (``"api", "svc", "example.com"``), skipping empty ones."""
    return ".".join(part.strip(".") for part in parts if part and part.strip("."))
