"""Invalid objects generated from a CRD's own schema: every constraint of every field a valid object holds, broken
one at a time (wrong type, outside the enum, below the minimum, above the maximum, too long, too short, too many
items, too few, not matching the pattern, a required field missing), each with the path the refusal must name."""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

WRONG_TYPE = {"string": 12345, "integer": "twelve", "number": "twelve", "boolean": "yes", "array": {"not": "a list"},
              "object": ["not", "an", "object"]}
JUNK = "Not valid! \u00e9*"


@dataclass(frozen=True)
class Mutation:
    """One broken constraint: what was done, at which field path (``spec.hosts[0]``), and the object that results."""

    what: str
    path: str
    obj: dict[str, Any]

    @property
    def parent(self) -> str:
        """The path of the object holding the field (a rule on that object may be the one that refuses it)."""
        return re.sub(r"(\[[^\]]*\])?\.[^.\[]+$|\[[^\]]*\]$", "", self.path)


def crd_schema(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the CRD, its served version's openAPIV3Schema)."""
    crd = yaml.safe_load(path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("served", True))
    return crd, version["schema"]["openAPIV3Schema"]


def _violations(schema: dict[str, Any], value: Any) -> Iterator[tuple[str, Any]]:
    """(what, bad value) for each constraint ``schema`` puts on a field that now holds ``value``."""
    kind = schema.get("type")
    if kind in WRONG_TYPE and not schema.get("x-kubernetes-int-or-string"):
        yield f"not a {kind}", WRONG_TYPE[kind]
    if "enum" in schema:
        yield "outside the enum", "NotOneOfThem"
    if "minimum" in schema:
        yield "below the minimum", schema["minimum"] - 1
    if "maximum" in schema:
        yield "above the maximum", schema["maximum"] + 1
    if kind == "string":
        if "maxLength" in schema:
            yield "too long", "a" * (schema["maxLength"] + 1)
        if schema.get("minLength", 0) >= 1:
            yield "empty", ""
        if "pattern" in schema and not re.fullmatch(schema["pattern"], JUNK):
            yield "not matching the pattern", JUNK
    if kind == "array" and isinstance(value, list) and value:
        if "maxItems" in schema:
            yield "too many items", [copy.deepcopy(value[0])] * (schema["maxItems"] + 1)
        if schema.get("minItems", 0) >= 1:
            yield "no items", []


def _set(root: dict[str, Any], steps: list[str | int], value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(root)
    node: Any = obj
    for step in steps[:-1]:
        node = node[step]
    node[steps[-1]] = value
    return obj


def _drop(root: dict[str, Any], steps: list[str | int], key: str) -> dict[str, Any]:
    obj = copy.deepcopy(root)
    node: Any = obj
    for step in steps:
        node = node[step]
    del node[key]
    return obj


def _path(steps: list[str | int]) -> str:
    text = ""
    for step in steps:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def mutations(schema: dict[str, Any], valid: dict[str, Any]) -> Iterator[Mutation]:
    """Every single-constraint break of ``valid`` under ``spec`` (the fields the object holds, at any depth)."""
    def walk(node_schema: dict[str, Any], value: Any, steps: list[str | int]) -> Iterator[Mutation]:
        if steps:
            for what, bad in _violations(node_schema, value):
                yield Mutation(what, _path(steps), _set(valid, steps, bad))
        if isinstance(value, dict):
            for key in node_schema.get("required", ()):
                if key in value:
                    yield Mutation("a required field missing", _path([*steps, key]), _drop(valid, steps, key))
            properties = node_schema.get("properties") or {}
            extra = node_schema.get("additionalProperties")
            for key, child in value.items():
                child_schema = properties.get(key) or (extra if isinstance(extra, dict) else None)
                if child_schema is not None:
                    yield from walk(child_schema, child, [*steps, key])
        elif isinstance(value, list) and value and isinstance(node_schema.get("items"), dict):
            yield from walk(node_schema["items"], value[0], [*steps, 0])

    yield from walk(schema["properties"]["spec"], valid["spec"], ["spec"])


def combined(schema: dict[str, Any], valid: dict[str, Any], rng: random.Random, count: int) -> Iterator[Mutation]:
    """``count`` objects with two or three breaks each, drawn at random (``make soak``): the refusal must name one."""
    singles = [m for m in mutations(schema, valid) if m.what != "a required field missing"]
    for _ in range(count):
        picked = rng.sample(singles, min(len(singles), rng.choice((2, 3))))
        obj = copy.deepcopy(valid)
        applied = []
        for mutation in picked:
            steps = _steps(mutation.path)
            if _holds_path(obj, steps):
                obj = _set(obj, steps, _get(mutation.obj, steps))
                applied.append(mutation)
        if applied:
            yield Mutation(" + ".join(m.what for m in applied), " | ".join(m.path for m in applied), obj)


def _steps(path: str) -> list[str | int]:
    steps: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        steps.append(int(part[1:-1]) if part.startswith("[") else part)
    return steps


def _holds_path(obj: Any, steps: list[str | int]) -> bool:
    """Whether ``obj`` still has the containers ``steps`` go through (an earlier break may have replaced one)."""
    node = obj
    for step in steps:
        if not _has(node, step):
            return False
        node = node[step]
    return True


def _has(node: Any, step: str | int) -> bool:
    if isinstance(step, int):
        return isinstance(node, list) and step < len(node)
    return isinstance(node, dict) and step in node


def _get(obj: Any, steps: list[str | int]) -> Any:
    for step in steps:
        obj = obj[step]
    return obj
