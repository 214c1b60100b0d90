"""Benchmark files written by kdbench: TOML for the values a benchmark file holds.

Python reads TOML (``tomllib``) but has no writer; a benchmark file needs only tables,
lists, strings, numbers and booleans, so these few lines do instead of a dependency.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kdbench.errors import KdbenchError

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def key(name: str) -> str:
    """``name`` as a TOML key: bare when it can be, else quoted."""
    return name if _BARE.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def value(item: Any) -> str:
    """``item`` (bool, int, float, str, or a list or table of them) as a TOML value; a
    ``None`` in a table is left out (TOML has no null)."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int | float):
        return repr(item)
    if isinstance(item, str):
        return json.dumps(item, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(item, list | tuple):
        return "[" + ", ".join(value(v) for v in item) + "]"
    if isinstance(item, dict):
        return "{" + ", ".join(f"{key(k)} = {value(v)}" for k, v in item.items()
                               if v is not None) + "}"
    raise KdbenchError(f"cannot write {item!r} to a benchmark file")


def dump(doc: dict[str, Any], table: tuple[str, ...] = ()) -> str:
    """TOML for a document of tables, lists and scalars: a table's own keys first, then
    its sub-tables as ``[a.b]`` sections."""
    lines = [f"{key(k)} = {value(v)}" for k, v in doc.items()
             if v is not None and not isinstance(v, dict)]
    subtables = [(k, v) for k, v in doc.items() if isinstance(v, dict)]
    if table and (lines or not subtables):  # [methods] alone says nothing its rows do not
        lines.insert(0, "[" + ".".join(key(k) for k in table) + "]")
    text = "\n".join(lines) + "\n" if lines else ""
    for name, sub in subtables:
        text += ("\n" if text else "") + dump(sub, (*table, name))
    return text
