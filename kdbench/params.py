"""Hyperparameters: a dataclass filled from a benchmark file, with checked names and types."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable
from typing import Any

from kdbench.errors import SpecError


def suggestion(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` when ``name`` looks like a misspelt choice, else ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def build(cls: type, values: dict[str, Any], where: str = "") -> Any:
    """An instance of dataclass ``cls`` from ``values``.

    Unknown keys and values of the wrong type raise :class:`SpecError` naming
    the key, the expected type and the allowed keys. An ``int`` is accepted
    for a ``float`` field; a ``list`` for a ``tuple`` field.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in values:
        if key not in fields:
            raise SpecError(
                f"{where}unknown parameter {key!r}{suggestion(key, fields)}; "
                f"allowed: {', '.join(fields) or 'none'}"
            )
    kwargs = {key: check(hints[key], value, f"{where}{key}") for key, value in values.items()}
    return cls(**kwargs)


def check(hint: Any, value: Any, where: str) -> Any:
    """``value`` converted to ``hint`` where that is lossless; :class:`SpecError` otherwise."""
    ok, converted = _convert(hint, value)
    if not ok:
        raise SpecError(f"{where} must be {describe(hint)}, got {value!r}")
    return converted


def _convert(hint: Any, value: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            ok, converted = _convert(arm, value)
            if ok:
                return True, converted
        return False, None
    if origin is typing.Literal:
        return value in typing.get_args(hint), value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else None
    if hint is str:
        return isinstance(value, str), value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            return False, None
        args = typing.get_args(hint)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        elif origin is list:
            args = (args[0] if args else Any,) * len(value)
        elif len(args) != len(value):
            return False, None
        items = [_convert(a, v) for a, v in zip(args, value, strict=True)]
        if not all(ok for ok, _ in items):
            return False, None
        return True, origin(v for _, v in items)
    if origin is dict or hint is dict:
        return isinstance(value, dict), value
    return isinstance(value, hint), value


def describe(hint: Any) -> str:
    """A type hint in words: ``float``, ``one of 'sgd', 'adam'``, ``list of int``."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(hint))
    if origin in (tuple, list):
        args = typing.get_args(hint)
        return f"a list of {describe(args[0])}" if args else "a list"
    if hint is type(None):
        return "none"
    return getattr(hint, "__name__", str(hint))


def as_dict(params: Any) -> dict[str, Any]:
    """The fields of a params dataclass (``{}`` for ``None``), as plain TOML/JSON values."""
    if params is None:
        return {}
    out = {}
    for key, value in dataclasses.asdict(params).items():
        out[key] = list(value) if isinstance(value, tuple) else value
    return out
