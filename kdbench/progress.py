"""Progress of a sweep on stderr: which run, which epoch, how long is left.

An observer of the event hooks, like any plugin. On a terminal the current
epoch is redrawn in place; otherwise one line per finished run is printed.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import kdbench


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    def __init__(self, workers: int = 1, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.workers = max(1, workers)
        self.todo = 0
        self.done = 0
        self.started = time.perf_counter()
        self.seconds: list[float] = []

    def _print(self, text: str, final: bool = True) -> None:
        if self.live:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _eta(self) -> str:
        if not self.seconds:
            return "?"
        left = self.todo - self.done
        return _clock(sum(self.seconds) / len(self.seconds) * left / self.workers)

    @kdbench.hookimpl
    def kdbench_sweep_start(self, sweep: Any) -> None:
        self.todo = sum(1 for r in sweep.runs if r.fingerprint not in sweep.results)
        reused = len(sweep.runs) - self.todo
        self.started = time.perf_counter()
        self._print(f"{sweep.spec.name}: {len(sweep.runs)} runs, {reused} reused from MLflow, "
                    f"{self.todo} to train")

    @kdbench.hookimpl
    def kdbench_epoch_end(self, run: Any, phase: str, epoch: int, epochs: int,
                          metrics: dict[str, float]) -> None:
        # The loss and the validation metrics; loss terms would crowd the line.
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                          if k == "loss" or k.startswith("val."))
        text = (f"[{self.done + 1}/{self.todo}] {run.describe()} {phase} epoch {epoch}/{epochs}"
                f" {shown}  elapsed {_clock(time.perf_counter() - self.started)}, "
                f"left ~{self._eta()}")
        if self.live:
            self._print(text, final=False)
        elif run.role == "teacher" and epoch % max(1, epochs // 5) == 0:
            self._print(text)

    @kdbench.hookimpl
    def kdbench_run_end(self, run: Any, result: Any) -> None:
        self.done += 1
        self.seconds.append(result.seconds)
        if result.status == "finished":
            # The reported numbers: test (when read), validation and train, not the diagnostics.
            shown = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()
                              if k not in ("epoch", "val.gain") and isinstance(v, float))
            outcome = f"{shown} ({result.seconds:.1f} s)"
        else:
            outcome = f"FAILED: {result.error}"
        self._print(f"[{self.done}/{self.todo}] {run.describe()}: {outcome}; "
                    f"left ~{self._eta()}")
