"""kdbench: a benchmark harness for knowledge distillation."""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("kdbench")
"""Marker for plugin hook implementations: ``@kdbench.hookimpl``."""

__all__ = ["__version__", "hookimpl"]
