"""kdbench: a benchmark harness for knowledge distillation.

The Python API (:mod:`kdbench.api`) is importable from here: ``kdbench.run``,
``kdbench.read_board``, ``kdbench.plan``, ``kdbench.tune``, ``kdbench.compare`` and
``kdbench.Board``. They load on first use, so ``import kdbench`` (which every plugin does
for :data:`hookimpl`) costs no torch, scipy or MLflow import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("kdbench")
"""Marker for plugin hook implementations: ``@kdbench.hookimpl``."""

_API = {"run": "kdbench.api", "read_board": "kdbench.api", "plan": "kdbench.api",
        "tune": "kdbench.api", "compare": "kdbench.api", "Result": "kdbench.api",
        "RunRecord": "kdbench.api", "Board": "kdbench.board", "Row": "kdbench.board"}

if TYPE_CHECKING:
    from kdbench.api import Result, RunRecord, compare, plan, read_board, run, tune
    from kdbench.board import Board, Row

__all__ = ["Board", "Result", "Row", "RunRecord", "__version__", "compare", "hookimpl", "plan",
           "read_board", "run", "tune"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'kdbench' has no attribute {name!r}")
