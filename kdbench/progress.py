"""Progress of a sweep on stderr: what each worker trains, and how long is left.

An observer of the event hooks, like any plugin. On a terminal one status line is redrawn
in place: the runs in training (a stacked group of seeds as one entry, ``kd seeds 0-4``)
with their epoch, the time elapsed and an estimate of the time left; otherwise one line per
finished run, with the same status. Values of the benchmark's metrics are shown in percent,
as on the leaderboard.

**Time left.** Each method has its own cost per epoch (a DKD epoch is not a baseline
epoch), learnt as epochs finish: the time between two epochs of a run, times the share of a
worker the run has (``workers / runs in training``, at most 1: seeds stacked on one worker
share it), and, once a run of the method has finished, its own seconds (already a share
for stacked runs) per epoch. The time left is the epochs left of every unfinished run, at
its method's cost (a method not seen yet: the mean cost of those seen), spread over the
workers.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import kdbench
from kdbench.tracking import in_percent


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def shown(values: dict[str, float], metrics: tuple[str, ...]) -> str:
    """``loss 0.4123, val.top1 93.20%``: the metrics' values in percent, the rest as is."""
    return ", ".join(f"{k} {100 * v:.2f}%" if in_percent(k, metrics) else f"{k} {v:.4f}"
                     for k, v in values.items())


def seeds_text(seeds: list[int]) -> str:
    """``seed 3``, ``seeds 0-4``, ``seeds 0,2,5``."""
    seeds = sorted(seeds)
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ",".join(map(str, seeds))


@dataclass
class _Training:
    """A run between its first epoch and its end."""

    run: Any
    phase: str = ""
    epoch: int = 0
    epochs: int = 0
    last: float | None = None
    seen: int = 0
    """Epochs (of every phase) finished so far."""


class Progress:
    def __init__(self, workers: int = 1, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.workers = max(1, workers)
        self.clock = clock
        self.todo = 0
        self.done = 0
        self.started = clock()
        self.pending: dict[str, Any] = {}
        """Runs not finished yet, by fingerprint."""
        self.training: dict[str, _Training] = {}
        self.epoch_costs: dict[str, list[float]] = {}
        """Worker-seconds per epoch by method, measured between epochs."""
        self.run_costs: dict[str, list[float]] = {}
        """Worker-seconds per epoch by method, of finished runs."""
        self.run_epochs: dict[str, int] = {}
        """Epochs (of every phase) a finished run of the method trained."""

    # What is known ------------------------------------------------------------------

    @staticmethod
    def key(run: Any) -> str:
        """Runs of one method cost alike per epoch whatever their parameters."""
        return run.method or run.role

    def cost(self, key: str) -> float | None:
        """Worker-seconds per epoch of a run of ``key`` (a method not seen yet: the mean of
        those seen); ``None`` before any is known."""
        def seen(k: str) -> float | None:
            samples = self.run_costs.get(k) or self.epoch_costs.get(k)
            return sum(samples) / len(samples) if samples else None

        if (own := seen(key)) is not None:
            return own
        known = [c for k in {*self.run_costs, *self.epoch_costs} if (c := seen(k)) is not None]
        return sum(known) / len(known) if known else None

    def epochs_left(self, run: Any) -> int:
        """Epochs ``run`` has still to train, over every phase: the main training's own count
        until a run of its method has finished and shown how many it trains in all."""
        learned = self.run_epochs.get(self.key(run))
        state = self.training.get(run.fingerprint)
        if state is None:
            return learned if learned is not None else run.job.recipe.epochs
        if state.phase == "train":
            return state.epochs - state.epoch
        if learned is not None:  # a stage, of a method whose total is known
            return max(0, learned - state.seen)
        return state.epochs - state.epoch + run.job.recipe.epochs

    def seconds_left(self) -> float | None:
        """Seconds until every pending run is done; ``None`` while no cost is known."""
        work = 0.0
        for run in self.pending.values():
            cost = self.cost(self.key(run))
            if cost is None:
                return None
            work += cost * self.epochs_left(run)
        return work / self.workers

    def running(self) -> str:
        """What the workers train: ``kd seeds 0-4 train 45/120 | fitnet seed 1 hint 3/20``."""
        groups: dict[tuple[str, str, int, int], list[int]] = {}
        for state in self.training.values():
            spot = (state.run.label, state.phase, state.epoch, state.epochs)
            groups.setdefault(spot, []).append(state.run.seed)
        return " | ".join(f"{label} {seeds_text(seeds)} {phase} {epoch}/{epochs}"
                          for (label, phase, epoch, epochs), seeds in groups.items())

    def status(self) -> str:
        left = self.seconds_left()
        return (f"elapsed {_clock(self.clock() - self.started)}, "
                f"left ~{'?' if left is None else _clock(left)}")

    # Output -------------------------------------------------------------------------

    def _print(self, text: str, final: bool = True) -> None:
        if self.live:
            width = shutil.get_terminal_size((200, 24)).columns
            line = text if final or len(text) < width else text[:width - 2] + "…"
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()

    # Hooks --------------------------------------------------------------------------

    @kdbench.hookimpl
    def kdbench_sweep_start(self, sweep: Any) -> None:
        todo = [r for r in sweep.runs if r.fingerprint not in sweep.results]
        self.todo = len(todo)
        self.done = 0
        self.pending = {r.fingerprint: r for r in todo}
        self.training = {}
        self.started = self.clock()
        self._print(f"{sweep.spec.name}: {len(sweep.runs)} runs, "
                    f"{len(sweep.runs) - self.todo} reused from MLflow, {self.todo} to train")

    @kdbench.hookimpl
    def kdbench_epoch_end(self, run: Any, phase: str, epoch: int, epochs: int,
                          metrics: dict[str, float]) -> None:
        now = self.clock()
        state = self.training.setdefault(run.fingerprint, _Training(run))
        if state.last is not None:
            # The run had this share of a worker for the epoch (stacked seeds split one).
            share = min(1.0, self.workers / len(self.training))
            self.epoch_costs.setdefault(self.key(run), []).append((now - state.last) * share)
        state.phase, state.epoch, state.epochs, state.last = phase, epoch, epochs, now
        state.seen += 1
        if self.live:
            self._print(f"[{self.done}/{self.todo} done] {self.running()}  {self.status()}",
                        final=False)
        elif run.role == "teacher" and epoch % max(1, epochs // 5) == 0:
            # The loss and the validation metrics; loss terms would crowd the line.
            kept = {k: v for k, v in metrics.items() if k == "loss" or k.startswith("val.")}
            self._print(f"[{self.done + 1}/{self.todo}] {run.describe()} {phase} epoch "
                        f"{epoch}/{epochs} {shown(kept, run.job.metrics)}  {self.status()}")

    @kdbench.hookimpl
    def kdbench_run_end(self, run: Any, result: Any) -> None:
        self.done += 1
        state = self.training.pop(run.fingerprint, None)
        self.pending.pop(run.fingerprint, None)
        if result.status == "finished" and state is not None and state.seen:
            key = self.key(run)
            self.run_epochs[key] = state.seen
            if result.seconds > 0:
                self.run_costs.setdefault(key, []).append(result.seconds / state.seen)
        if result.status == "finished":
            # The reported numbers: test (when read), validation and train, not the diagnostics.
            kept = {k: v for k, v in result.metrics.items()
                    if k not in ("epoch", "val.gain") and isinstance(v, float)}
            outcome = f"{shown(kept, run.job.metrics)} ({result.seconds:.1f} s)"
        else:
            outcome = f"FAILED: {result.error}"
        busy = self.running()
        self._print(f"[{self.done}/{self.todo}] {run.describe()}: {outcome}; "
                    f"{f'training: {busy}; ' if busy else ''}{self.status()}")
