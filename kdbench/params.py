"""Hyperparameters: a dataclass filled from a benchmark file, with checked names, types and
ranges.

A params dataclass declares what its values may be, so that a bad value is refused when the
benchmark file is read, not after every run has failed:

* the type of each field (``float``, ``int``, ``Literal["a", "b"]``, ``tuple[int, ...]``);
  floats must be finite everywhere (TOML allows ``nan`` and ``inf``);
* a range per field, with :func:`bounded` (or ``dataclasses.field(metadata={"range": ...})``
  with a :class:`Range` or a closed ``(low, high)`` pair, ``None`` for no bound)::

      @dataclass(frozen=True)
      class KDParams:
          T: float = bounded(4.0, low=0, low_open=True)     # T > 0
          alpha: float = bounded(0.9, low=0, high=1)        # alpha in [0, 1]

  A range applies to every item of a tuple field and is skipped for a ``None`` value;
* checks across fields, in the dataclass's ``__post_init__``: a ``ValueError`` raised there
  reaches the user as a :class:`SpecError` with the same message, prefixed by where;
* a search space per field, for ``kdbench tune`` (:mod:`kdbench.tuning`), with
  ``bounded(..., search=...)`` (or ``metadata={"search": ...}``)::

      T: float = bounded(4.0, low=0, low_open=True, search=LogUniform(1, 16))
      alpha: float = bounded(0.9, low=0, high=1, search=Uniform(0, 1))
      beta: float = bounded(8.0, low=0, search=Around(10))     # [beta / 10, beta * 10], log

  :class:`LogUniform`, :class:`Uniform` and :class:`Choice` are fixed spaces; :class:`Around`
  and :class:`Multiples` are relative to the value the benchmark file gives (else the
  default), so a loss weight is searched around what the row would run with. A relative
  space is cut to the field's range and is skipped for a value of 0 (a term switched off
  stays off). Fields without ``search`` are never tuned: structural choices (stages,
  kernels, connectors) stay as the benchmark file says. :func:`search_space` resolves the
  declarations of a dataclass into fixed spaces.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kdbench.errors import SpecError

MAX_EPOCHS = 100_000
"""More epochs than any benchmark needs, for a recipe or a method's stage: a larger number is
a typo that would train for ever."""


@dataclass(frozen=True)
class Range:
    """The values a number may take: ``low <= x <= high``, ``<`` on an open side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None
                    and (value >= self.high if self.high_open else value > self.high))

    def __str__(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {high}"
        return "any number"


@dataclass(frozen=True)
class LogUniform:
    """Values in ``[low, high]``, uniform in log scale (``0 < low < high``)."""

    low: float
    high: float


@dataclass(frozen=True)
class Uniform:
    """Values in ``[low, high]``, uniform."""

    low: float
    high: float


@dataclass(frozen=True)
class Choice:
    """One of ``values``."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Around:
    """:class:`LogUniform` over ``[v / factor, v * factor]`` around the row's value ``v``."""

    factor: float = 10.0


@dataclass(frozen=True)
class Multiples:
    """:class:`Choice` of ``round(v * f)`` for each ``f`` of ``factors``, for an int field
    (epochs) with the row's value ``v``."""

    factors: tuple[float, ...] = (0.5, 1.0, 2.0)


Search = LogUniform | Uniform | Choice | Around | Multiples
"""What ``bounded(..., search=...)`` takes."""
Space = LogUniform | Uniform | Choice
"""A resolved search space: fixed bounds or values."""


def bounded(default: Any, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, search: Search | None = None,
            smoke: float | None = None) -> Any:
    """A dataclass field with ``default`` whose values must lie in a :class:`Range`;
    :func:`build` enforces it (``[methods.kd] T must be > 0, got -1.0``). ``search`` declares
    the field tunable, over that space (:func:`search_space`). ``smoke`` caps the field in a
    ``--smoke`` run (:func:`smoke_caps`): a size of work (data impressions, optimisation
    steps) that a check of the pipeline does not need in full."""
    metadata: dict[str, Any] = {"range": Range(low, high, low_open, high_open)}
    if search is not None:
        metadata["search"] = search
    if smoke is not None:
        metadata["smoke"] = smoke
    return dataclasses.field(default=default, metadata=metadata)


def smoke_caps(cls: type | None) -> dict[str, Any]:
    """The ``smoke`` cap of each field of dataclass ``cls`` that declares one."""
    if cls is None or not dataclasses.is_dataclass(cls):
        return {}
    return {f.name: f.metadata["smoke"] for f in dataclasses.fields(cls) if "smoke" in f.metadata}


def search_space(cls: type, values: Any = None) -> dict[str, Space]:
    """The fixed search space of each tunable field of dataclass ``cls``, relative spaces
    resolved against ``values`` (an instance or a dict; the defaults where absent).

    A space is cut to the field's range (``Around(10)`` of a weight in ``[0, 1]`` stays in
    it); a relative space of a value of 0 gives nothing (the field is left as it is), and
    so does a space that the cut leaves empty or single-valued.
    """
    if values is not None and not isinstance(values, dict):
        values = dataclasses.asdict(values)
    values = values or {}
    hints = typing.get_type_hints(cls)
    space: dict[str, Space] = {}
    for f in dataclasses.fields(cls):
        declared = f.metadata.get("search")
        if declared is None:
            continue
        value = values.get(f.name, f.default)
        resolved = _resolve(declared, value, range_of(f) or Range(), hints[f.name] is int)
        if resolved is not None:
            space[f.name] = resolved
    return space


def _resolve(declared: Search, value: Any, bounds: Range, integer: bool) -> Space | None:
    if isinstance(declared, Around | Multiples) and not (
            isinstance(value, int | float) and not isinstance(value, bool) and value > 0):
        return None
    if isinstance(declared, Around):
        declared = LogUniform(value / declared.factor, value * declared.factor)
    elif isinstance(declared, Multiples):
        declared = Choice(tuple(dict.fromkeys(max(1, round(value * f)) for f in declared.factors)))
    if isinstance(declared, Choice):
        kept = tuple(v for v in declared.values if not isinstance(v, int | float) or v in bounds)
        return Choice(tuple(int(v) for v in kept) if integer else kept) if len(kept) > 1 else None
    low = declared.low if bounds.low is None else max(declared.low, bounds.low)
    high = declared.high if bounds.high is None else min(declared.high, bounds.high)
    low, high = (math.ceil(low), math.floor(high)) if integer else (float(low), float(high))
    if not low < high or (isinstance(declared, LogUniform) and low <= 0):
        return None
    return type(declared)(low, high)


def range_of(f: dataclasses.Field) -> Range | None:
    """The declared range of a dataclass field: a :class:`Range`, or a closed ``(low, high)``."""
    declared = f.metadata.get("range")
    if declared is None or isinstance(declared, Range):
        return declared
    low, high = declared
    return Range(low, high)


def _number(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) and value == value else str(value)


def suggestion(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` when ``name`` looks like a misspelt choice, else ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def build(cls: type, values: dict[str, Any], where: str = "") -> Any:
    """An instance of dataclass ``cls`` from ``values``.

    Unknown keys, missing required ones, values of the wrong type and values out
    of a field's declared range (:func:`bounded`) raise :class:`SpecError` naming
    the key and what is allowed; so does a ``ValueError`` from ``__post_init__``.
    An ``int`` is accepted for a ``float`` field; a ``list`` for a ``tuple`` field.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in values:
        if key not in fields:
            raise SpecError(
                f"{where}unknown parameter {key!r}{suggestion(key, fields)}; "
                f"allowed: {', '.join(fields) or 'none'}"
            )
    for key, f in fields.items():
        if key not in values and f.default is dataclasses.MISSING \
                and f.default_factory is dataclasses.MISSING:
            raise SpecError(f"{where}missing parameter {key!r}, which has no default; set it")
    kwargs = {key: check(hints[key], value, f"{where}{key}") for key, value in values.items()}
    try:
        params = cls(**kwargs)
    except ValueError as error:  # a check across fields in __post_init__
        raise SpecError(f"{where}{error}") from None
    for key, f in fields.items():
        declared = range_of(f)
        if declared is not None:
            in_range(declared, getattr(params, key), f"{where}{key}",
                     default="" if key in values else " (its default)")
    return params


def in_range(declared: Range, value: Any, where: str, default: str = "") -> None:
    """:class:`SpecError` unless ``value`` (each item of a tuple or list) lies in ``declared``."""
    items = value if isinstance(value, tuple | list) else (value,)
    for item in items:
        if item is None or isinstance(item, bool) or not isinstance(item, int | float):
            continue
        if item not in declared:
            got = f"{item!r} in {list(value)!r}" if items is value else repr(item)
            raise SpecError(f"{where} must be {declared}, got {got}{default}")


def check(hint: Any, value: Any, where: str) -> Any:
    """``value`` converted to ``hint`` where that is lossless; :class:`SpecError` otherwise."""
    ok, converted = _convert(hint, value)
    if not ok:
        if not_finite(value):
            raise SpecError(f"{where} must be a finite number, got {value!r} "
                            "(TOML's nan and inf are not allowed)")
        raise SpecError(f"{where} must be {describe(hint)}, got {short_repr(value)}")
    return converted


def not_finite(value: Any) -> bool:
    """Whether ``value`` is, or holds (in lists, tuples and tables), a nan or an infinity."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list | tuple):
        return any(not_finite(v) for v in value)
    if isinstance(value, dict):
        return any(not_finite(v) for v in value.values())
    return False


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to one short line: a user's value may be a whole table."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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
        # float(10**400) overflows; nan and inf are refused as a user's number.
        ok = ok and (isinstance(value, float) or abs(value) < 2**1023) and math.isfinite(value)
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
