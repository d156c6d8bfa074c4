"""What the command prints: tables for people (colour only on a terminal), JSON or YAML for scripts."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import yaml

FORMATS = ("table", "json", "yaml")
_ESCAPES = re.compile(r"\033\[[0-9;]*m")
_COLOURS = {"created": "32", "updated": "32", "deleted": "33", "left": "36", "kept": "36", "refused": "31",
            "warning": "33", "error": "31", "ok": "32"}


def colour(text: str, key: str, stream: TextIO) -> str:
    """``text`` in the colour for ``key`` when ``stream`` is a terminal (and NO_COLOR is unset), else as is."""
    code = _COLOURS.get(key)
    if not code or not stream.isatty() or os.environ.get("NO_COLOR"):
        return text
    return f"\033[{code}m{text}\033[0m"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], stream: TextIO = sys.stdout,
          colour_column: int | None = None) -> None:
    """Columns padded to their widest cell (colour codes take no width); ``colour_column``'s cells coloured by their
    own text."""
    cells = [[colour(str(c), str(c), stream) if i == colour_column else str(c) for i, c in enumerate(row)]
             for row in rows]
    widths = [max([len(h), *(_visible(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        padded = [cell + " " * (width - _visible(cell)) for cell, width in zip(row, widths, strict=True)]
        stream.write("  ".join(padded).rstrip() + "\n")


def _visible(text: str) -> int:
    return len(_ESCAPES.sub("", text))


def document(data: Any, fmt: str, stream: TextIO = sys.stdout) -> None:
    if fmt == "json":
        stream.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    else:
        stream.write(yaml.safe_dump(data, sort_keys=False))
