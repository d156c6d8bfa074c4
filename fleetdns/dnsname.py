"""DNS names: the one place that validates, normalises and splits them."""

from __future__ import annotations

import contextlib
import re

MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
# Letters, digits, hyphen; underscore for service labels (_sip._tcp, _acme-challenge); "*" as a whole
# label for wildcards. Anything else is refused before it can reach etcd.
_LABEL = re.compile(r"^(\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)$")


class InvalidDNSNameError(ValueError):
    """A name that cannot be served; the message says which label is wrong and why."""


def normalize_name(name: str) -> str:
    """Lower-case, no trailing dot, validated: the form every module compares and stores."""
    if not isinstance(name, str):
        raise InvalidDNSNameError(f"DNS name must be a string, got {type(name).__name__}")
    candidate = name.strip().rstrip(".").lower()
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
        if not _LABEL.match(label):
            raise InvalidDNSNameError(
                f"DNS name {name!r}: label {label!r} may hold only letters, digits, '-' and '_' "
                "(and not start or end with '-'), or be a lone '*'"
            )
        if label == "*" and index != 0:
            raise InvalidDNSNameError(f"DNS name {name!r}: '*' is only allowed as the leftmost label")
    return candidate


def is_valid_name(name: str) -> bool:
    try:
        normalize_name(name)
    except InvalidDNSNameError:
        return False
    return True


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
