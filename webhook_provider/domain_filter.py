"""Which names this provider serves: ExternalDNS's domain-filter rules, and their negotiation JSON."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fleetdns.dnsname import to_unicode


def _normalize(domain: str) -> str:
    """As ExternalDNS compares names: no trailing dot, punycode decoded, lower case."""
    return to_unicode(domain.strip().rstrip(".").lower())


def _matches_any(filters: tuple[str, ...], name: str) -> bool:
    # ".example.com" matches only names below it; "example.com" matches itself and names below it.
    for domain_filter in filters:
        if domain_filter.startswith("."):
            if name.endswith(domain_filter):
                return True
        elif name == domain_filter or name.endswith("." + domain_filter):
            return True
    return False


@dataclass(frozen=True)
class DomainFilter:
    """Either include/exclude domain lists or include/exclude regexes, never both (refused at start)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    regex_include: str = ""
    regex_exclude: str = ""

    @classmethod
    def from_lists(cls, include: list[str], exclude: list[str]) -> DomainFilter:
        def prepare(items: list[str]) -> tuple[str, ...]:
            return tuple(sorted({_normalize(item) for item in items if _normalize(item)}))

        return cls(include=prepare(include), exclude=prepare(exclude))

    @classmethod
    def from_regex(cls, include: str, exclude: str) -> DomainFilter:
        return cls(regex_include=include, regex_exclude=exclude)

    @property
    def is_regex(self) -> bool:
        return bool(self.regex_include or self.regex_exclude)

    @property
    def matches_everything(self) -> bool:
        return not (self.include or self.exclude or self.regex_include or self.regex_exclude)

    def match(self, name: str) -> bool:
        if self.matches_everything:
            return True
        candidate = _normalize(name)
        if self.is_regex:
            if self.regex_exclude and re.search(self.regex_exclude, candidate):
                return False
            return not self.regex_include or re.search(self.regex_include, candidate) is not None
        included = not self.include or _matches_any(self.include, candidate)
        return included and not _matches_any(self.exclude, candidate)

    def to_json(self) -> dict[str, Any]:
        """The negotiation body ExternalDNS decodes (``{}`` means every name)."""
        if self.is_regex:
            out: dict[str, Any] = {}
            if self.regex_include:
                out["regexInclude"] = self.regex_include
            if self.regex_exclude:
                out["regexExclude"] = self.regex_exclude
            return out
        out = {}
        if self.include:
            out["include"] = list(self.include)
        if self.exclude:
            out["exclude"] = list(self.exclude)
        return out
