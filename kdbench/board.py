"""A leaderboard as data: the JSON contract of :mod:`kdbench.leaderboard` in dataclasses.

What :func:`kdbench.run` and :func:`kdbench.read_board` return, and what
:meth:`Board.load` reads back from a ``<benchmark>.json`` file. Values are in the metric's
own units (fractions for accuracy), as in the JSON file; ``per_seed`` maps each seed to its
final test value, so that seed ``k`` of a row and of the baseline can be paired.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Teacher:
    name: str
    value: float | None
    """Its final test metric (``None`` when it has none, e.g. not finished)."""
    kind: str
    """In words: ``cnn1d, trained by kdbench``, ``sklearn lda``..."""


@dataclass(frozen=True)
class Baseline:
    """The student trained alone: the reference every row is compared with."""

    seeds: tuple[int, ...]
    values: tuple[float, ...]
    mean: float | None
    std: float | None
    ci95: tuple[float | None, float | None] | None
    train: float | None = None
    """Mean final metric on the training split (less validation)."""
    val_gain: float | None = None
    """Mean rise of its validation metric over the last quarter of its epochs."""

    def per_seed(self) -> dict[int, float]:
        return dict(zip(self.seeds, self.values, strict=True))


@dataclass(frozen=True)
class Row:
    """One method row: its values per seed and its comparison with the baseline."""

    method: str
    """The row's label (``kd``, ``kd[T=4]``, ``kd-soft``)."""
    uses: str
    """The method plugin it runs."""
    params: dict[str, Any]
    grid: dict[str, Any]
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    mean: float | None
    std: float | None
    ci95: tuple[float | None, float | None] | None
    delta: float | None = None
    """Mean of the paired differences, method − baseline (``None`` without a baseline)."""
    delta_ci95: tuple[float | None, float | None] | None = None
    p: dict[str, float | None] = field(default_factory=dict)
    """Two-sided p-values: ``paired_t`` (the primary test), ``wilcoxon``, ``welch``,
    ``mannwhitney``."""
    p_holm: float | None = None
    """The primary test's p-value after the board's correction (Holm or BH)."""
    hedges_g: float | None = None
    prob_improvement: float | None = None
    verdict: str | None = None
    """``better``, ``worse`` or ``no evidence``; ``None`` without a baseline to compare with."""
    seeds_needed: dict[str, Any] | None = None
    note: str | None = None
    published: float | None = None

    def per_seed(self) -> dict[int, float]:
        return dict(zip(self.seeds, self.values, strict=True))


@dataclass(frozen=True)
class Failure:
    method: str
    seed: int
    error: str


@dataclass(frozen=True)
class Board:
    """A leaderboard: the teacher, the baseline and the method rows, best first."""

    benchmark: str
    metric: str
    higher_is_better: bool
    correction: str
    alpha: float
    family: int
    """How many comparisons the correction runs over."""
    teacher: Teacher
    baseline: Baseline
    rows: tuple[Row, ...]
    failed: tuple[Failure, ...]
    warnings: tuple[str, ...]
    tuning: str
    smoke: int
    """Batches per epoch of a ``--smoke`` board (never a result), else 0."""
    data: dict[str, Any] = field(repr=False, compare=False)
    """The JSON contract itself, every field (:mod:`kdbench.leaderboard`)."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Board:
        t, b = data["teacher"], data["baseline"]
        return cls(
            benchmark=data["benchmark"], metric=data["metric"],
            higher_is_better=bool(data["higher_is_better"]), correction=data["correction"],
            alpha=float(data["alpha"]), family=int(data["family"]),
            teacher=Teacher(t["name"], t.get("value"), t.get("kind") or t["name"]),
            baseline=Baseline(tuple(b["seeds"]), tuple(b["values"]), b.get("mean"),
                              b.get("std"), _pair(b.get("ci95")), b.get("train"),
                              b.get("val_gain")),
            rows=tuple(_row(r) for r in data["rows"]),
            failed=tuple(Failure(f["method"], int(f["seed"]), f["error"])
                         for f in data.get("failed", [])),
            warnings=tuple(data.get("warnings", [])), tuning=data.get("tuning", ""),
            smoke=int(data.get("smoke") or 0), data=data)

    @classmethod
    def load(cls, path: str | Path) -> Board:
        """The board in a ``<benchmark>.json`` file that ``kdbench run`` wrote."""
        return cls.from_json(json.loads(Path(path).read_text()))

    def row(self, method: str) -> Row:
        """The row labelled ``method``; ``KeyError`` naming the rows when there is none."""
        for row in self.rows:
            if row.method == method:
                return row
        raise KeyError(f"no row {method!r} on board {self.benchmark!r}; rows: "
                       f"{', '.join(r.method for r in self.rows) or 'none'}")

    def per_seed(self) -> dict[str, dict[int, float]]:
        """``{"baseline": {seed: value}, row: {seed: value}, ...}``: every final value."""
        return {"baseline": self.baseline.per_seed(),
                **{row.method: row.per_seed() for row in self.rows}}

    def terminal(self) -> str:
        """The table ``kdbench run`` prints."""
        from kdbench import leaderboard

        return leaderboard.terminal(self.data)

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per row (teacher, baseline, then the ranked methods), the columns
        of the CSV file; ``pandas.DataFrame(board.records())`` makes a table of it."""
        from kdbench import leaderboard

        return leaderboard.table_rows(self.data)


def _pair(values: list[float | None] | None) -> tuple[float | None, float | None] | None:
    return None if values is None else (values[0], values[1])


def _row(r: dict[str, Any]) -> Row:
    p = r.get("p") or {}
    return Row(method=r["method"], uses=r.get("uses", r["method"]), params=r.get("params", {}),
               grid=r.get("grid", {}), seeds=tuple(r["seeds"]), values=tuple(r["values"]),
               mean=r.get("mean"), std=r.get("std"), ci95=_pair(r.get("ci95")),
               delta=r.get("delta"), delta_ci95=_pair(r.get("delta_ci95")),
               p={k: (None if v is None or not math.isfinite(v) else v) for k, v in p.items()},
               p_holm=r.get("p_holm"), hedges_g=r.get("hedges_g"),
               prob_improvement=r.get("prob_improvement"), verdict=r.get("verdict"),
               seeds_needed=r.get("seeds_needed"), note=r.get("note"),
               published=r.get("published"))
