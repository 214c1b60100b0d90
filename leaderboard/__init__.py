"""kdbench's built-in benchmark files, registered by name as a plugin.

Every ``*.toml`` beside this file is a benchmark; ``kdbench run NAME`` finds
``NAME.toml`` here. The committed leaderboards beside them were written with
``--out leaderboard``; a plain ``kdbench run`` writes to ``./results`` and never
overwrites them.
"""

from __future__ import annotations

from pathlib import Path

import kdbench
from kdbench.registry import Register


@kdbench.hookimpl
def kdbench_benchmarks(register: Register) -> None:
    for path in sorted(Path(__file__).parent.glob("*.toml")):
        register(path.stem, path, description=f"built-in benchmark {path.name}")
