"""Runs in a ``concurrent.futures`` process pool: the smallest useful executor plugin.

The standard library's :class:`~concurrent.futures.ProcessPoolExecutor`, with spawned
workers, maps kdbench's unit of work, :func:`kdbench.batched.execute_unit` (one run, or a
row's seeds stacked as one model), over the units and yields each result as it completes.
The driver logs every result to MLflow as it arrives: an executor never writes to the store.

What it leaves out, against kdbench's own ``process`` executor (kdbench/executors.py):

* per-epoch progress: the progress line moves when a run ends, not at every epoch;
* fault isolation: a worker that dies (the OOM killer) breaks the whole pool, so every run
  not finished yet fails, each with the reason, and the next ``kdbench run`` trains them;
  ``process`` fails the dead worker's run only;
* a fast stop: on Ctrl-C the queued runs are cancelled but the running ones finish first.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import kdbench
from kdbench.batched import execute_unit
from kdbench.executors import Progress
from kdbench.params import bounded
from kdbench.registry import Register
from kdbench.runs import Group, Job, RunResult


@dataclass(frozen=True)
class FuturesParams:
    workers: int = bounded(0, low=0)
    """Worker processes; 0: one per core (at most one per unit of work)."""


class Futures:
    """A ``concurrent.futures`` process pool of spawned workers."""

    Params = FuturesParams
    groups = True  # it runs execute_unit, which trains stacked groups of seeds too

    def __init__(self, params: FuturesParams) -> None:
        self.workers = params.workers or os.cpu_count() or 1

    def map(self, jobs: list[Job | Group], progress: Progress
            ) -> Iterator[tuple[int, RunResult | list[RunResult]]]:
        if not jobs:
            return
        # Spawned, not forked: a forked copy of an initialised torch can deadlock in OpenMP.
        pool = ProcessPoolExecutor(min(self.workers, len(jobs)),
                                   mp_context=multiprocessing.get_context("spawn"))
        try:
            pending = {pool.submit(execute_unit, unit): i for i, unit in enumerate(jobs)}
            for future in as_completed(pending):
                index = pending[future]
                yield index, outcome(future, jobs[index])
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def outcome(future: Future, unit: Job | Group) -> RunResult | list[RunResult]:
    """The unit's result; a failed one (per run of a group) when its worker did not return.

    ``execute_unit`` never raises for a run that fails (it returns a failed result); this
    catches what happens around it: a worker that died, a unit that could not be sent."""
    try:
        return future.result()
    except Exception as error:
        why = f"futures executor: {type(error).__name__}: {error}; retried on the next kdbench run"
        if isinstance(unit, Group):
            return [RunResult("", "failed", error=why) for _ in unit.jobs]
        return RunResult("", "failed", error=why)


@kdbench.hookimpl
def kdbench_executors(register: Register) -> None:
    register("futures", Futures)
