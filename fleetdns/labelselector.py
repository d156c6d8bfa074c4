"""Kubernetes label selectors (``metav1.LabelSelector``: ``matchLabels`` and ``matchExpressions``), parsed once
and matched against labels: the one home of selector semantics (DiscoveryRules, Domain namespace selectors).

As the API defines them: every requirement must hold; ``{}`` selects everything; ``NotIn`` and
``DoesNotExist`` hold for an object without the key. An absent optional selector is ``EVERYTHING``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class SelectorError(ValueError):
    """A selector that cannot be matched; the message names the field."""


class Operator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True)
class Requirement:
    """One ``matchExpressions`` entry (``matchLabels`` entries become ``In`` with one value)."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator is Operator.EXISTS:
            return self.key in labels
        if self.operator is Operator.DOES_NOT_EXIST:
            return self.key not in labels
        present = self.key in labels and labels[self.key] in self.values
        return present if self.operator is Operator.IN else not present

    def __str__(self) -> str:
        if self.operator is Operator.EXISTS:
            return self.key
        if self.operator is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        values = ",".join(sorted(self.values))
        if self.operator is Operator.IN and len(self.values) == 1:
            return f"{self.key}={values}"
        return f"{self.key} {'in' if self.operator is Operator.IN else 'notin'} ({values})"


@dataclass(frozen=True)
class LabelSelector:
    """A parsed selector: all requirements must hold (none: everything)."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    @property
    def selects_everything(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        """kubectl's ``-l`` syntax (also what a member API server's ``labelSelector`` parameter takes)."""
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = LabelSelector()


def parse_label_selector(raw: Any, field: str) -> LabelSelector:
    """``metav1.LabelSelector`` JSON → LabelSelector (None: ``EVERYTHING``); SelectorError names ``field``."""
    if raw is None:
        return EVERYTHING
    if not isinstance(raw, dict):
        raise SelectorError(f"{field} must be an object with matchLabels and/or matchExpressions")
    requirements: list[Requirement] = []
    match_labels = raw.get("matchLabels") or {}
    if not isinstance(match_labels, dict):
        raise SelectorError(f"{field}.matchLabels must be a map of label keys to values")
    for key, value in sorted(match_labels.items()):
        if not isinstance(value, str):
            raise SelectorError(f"{field}.matchLabels[{key!r}] must be a string, not {value!r}")
        requirements.append(Requirement(str(key), Operator.IN, frozenset({value})))
    expressions = raw.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise SelectorError(f"{field}.matchExpressions must be a list")
    for index, expression in enumerate(expressions):
        requirements.append(_requirement(expression, f"{field}.matchExpressions[{index}]"))
    return LabelSelector(tuple(requirements))


def _requirement(raw: Any, field: str) -> Requirement:
    if not isinstance(raw, dict):
        raise SelectorError(f"{field} must be an object with key, operator and values")
    key, operator_raw, values = raw.get("key"), raw.get("operator"), raw.get("values") or []
    if not isinstance(key, str) or not key:
        raise SelectorError(f"{field}.key is required")
    try:
        operator = Operator(str(operator_raw))
    except ValueError:
        raise SelectorError(f"{field}.operator must be one of {', '.join(Operator)}, not {operator_raw!r}") from None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SelectorError(f"{field}.values must be a list of strings")
    if operator in (Operator.IN, Operator.NOT_IN) and not values:
        raise SelectorError(f"{field}.values must not be empty for operator {operator}")
    if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and values:
        raise SelectorError(f"{field}.values must be empty for operator {operator}")
    return Requirement(key, operator, frozenset(values))
