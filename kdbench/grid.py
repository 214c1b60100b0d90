"""Parameter grids in a benchmark file: one ``[methods]`` table, several leaderboard rows.

A list given for a parameter whose type is a single value is a grid::

    [methods.kd]
    T = [1, 2, 4, 8]        # four rows: kd[T=1], kd[T=2], kd[T=4], kd[T=8]
    alpha = [0.5, 0.9]      # with T: eight rows, kd[T=1 alpha=0.5] ... kd[T=8 alpha=0.9]

Several list-valued keys give the cartesian product, in the order the keys appear in the
table (the first key varies slowest). A parameter whose type is itself a list or tuple
(``milestones``) is not a grid: a list there keeps its meaning. Each point is checked
against the parameter's type and range like a single value (:func:`kdbench.params.build`,
called by :mod:`kdbench.spec`). A row's label has no comma, since ``--methods a,b`` splits
on commas; ``--methods kd`` picks every row of the ``kd`` table.
"""

from __future__ import annotations

import dataclasses
import itertools
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from kdbench.errors import SpecError
from kdbench.params import check


@dataclass(frozen=True)
class Point:
    """One row of a grid: its label, the table's values with one value per grid key, and the
    grid's coordinates (``{"T": 1.0}``; empty for a table without a grid)."""

    label: str
    values: dict[str, Any]
    grid: dict[str, Any] = field(default_factory=dict)


def expand(table: str, values: dict[str, Any], params: type | None, where: str = "") -> list[Point]:
    """The rows of the ``[methods.<table>]`` table with ``values`` (``method`` removed),
    whose method's parameters are the dataclass ``params`` (``None``: it takes none).

    A grid key's values are converted to its type here (``1`` to ``1.0`` for a float), so
    that ``[1, 1.0]`` is seen as one value twice; their range is checked by the caller.
    """
    keys = grid_keys(values, params)
    if not keys:
        return [Point(table, dict(values))]
    hints = typing.get_type_hints(params)
    axes = []
    for key in keys:
        items = values[key]
        if not items:
            raise SpecError(f"{where}{key} = [] names no value; give one value or a list of "
                            "values to compare")
        converted = [check(hints[key], item, f"{where}{key}") for item in items]
        seen: list[str] = []
        for item in converted:
            text = compact(item)
            if text in seen:
                raise SpecError(f"{where}{key} lists {text} twice; list each value once")
            seen.append(text)
        axes.append(converted)
    points = []
    for combination in itertools.product(*axes):
        coordinates = dict(zip(keys, combination, strict=True))
        label = f"{table}[{' '.join(f'{k}={compact(v)}' for k, v in coordinates.items())}]"
        points.append(Point(label, {**values, **coordinates}, coordinates))
    return points


def grid_keys(values: dict[str, Any], params: type | None) -> list[str]:
    """The keys of ``values`` that hold a grid: a list for a parameter of ``params`` whose type
    does not take a list. Unknown keys are left to :func:`kdbench.params.build` to refuse."""
    if params is None or not dataclasses.is_dataclass(params):
        return []
    hints = typing.get_type_hints(params)
    names = {f.name for f in dataclasses.fields(params) if f.init}
    return [key for key, value in values.items()
            if key in names and isinstance(value, list) and not takes_list(hints[key])]


def takes_list(hint: Any) -> bool:
    """Whether a value of type ``hint`` may itself be a list (a tuple, a list, ``Any``)."""
    if hint is Any or hint in (list, tuple):
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(takes_list(arm) for arm in typing.get_args(hint))
    return origin in (list, tuple)


def compact(value: Any) -> str:
    """A grid value as a label shows it: ``1`` for 1.0, ``0.5``, ``1e-05``, ``true``, ``mse``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def selected(name: str, label: str, table: str) -> bool:
    """Whether ``--methods`` entry ``name`` picks the row ``label`` of ``[methods.<table>]``:
    by its own label, or by its table's name for every row of a grid."""
    return name in (label, table)
