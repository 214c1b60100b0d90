"""One sweep being trained into a tracking store, and the sequential procedure over it.

A :class:`Session` holds what ``kdbench run`` (or :func:`kdbench.run`) holds while it trains:
the plugins, the spec, one sweep run in MLflow and one executor. :meth:`Session.train`
trains what a planned sweep lacks and logs every result as it arrives;
:func:`until_decided` calls it look after look with more seeds.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kdbench.leaderboard import Options
    from kdbench.plugins import Plugins
    from kdbench.runs import RunResult
    from kdbench.spec import Spec
    from kdbench.sweep import Sweep
    from kdbench.tracking import Tracker


@dataclass
class Session:
    """What one ``kdbench run`` holds while it trains: one sweep run in MLflow, one executor."""

    plugins: Plugins
    spec: Spec
    tracker: Tracker
    executor: Any
    experiment: str
    sweep_id: str
    cache: Path
    device: str
    fresh: bool | frozenset[str]
    """``True``: retrain everything; a set of row labels: retrain those rows."""
    progress: bool = True
    """Show the progress of the runs on stderr."""

    def train(self, sweep: Sweep) -> dict[str, RunResult]:
        """Train what ``sweep`` lacks; every result is logged as it arrives. Says on stderr
        why runs that finished before with other code retrain."""
        from kdbench import sweep as sweeps
        from kdbench.progress import Progress

        known = self.tracker.finished(self.experiment, {r.fingerprint for r in sweep.runs},
                                      self.spec.metrics)
        reused = {} if self.fresh is True else dict(known)
        rows = frozenset() if isinstance(self.fresh, bool) else self.fresh
        if self.fresh is not True:
            retrain = {r.fingerprint for r in sweep.runs if r.label in rows}
            reused = {fp: result for fp, result in reused.items() if fp not in retrain}
            missing = [r for r in sweep.runs if r.fingerprint not in reused and r.label not in rows]
            previous = self.tracker.previous_code(self.experiment,
                                                  {r.spec_fingerprint for r in missing})
            for line in sweeps.retrain_reasons(missing, previous):
                print(f"kdbench: {line}", file=sys.stderr)
        teacher = sweep.teacher
        checkpoint = teacher.job.teacher.checkpoint
        if teacher.fingerprint in reused and checkpoint and not \
                self.tracker.verified_checkpoint(reused[teacher.fingerprint].run_id,
                                                 Path(checkpoint)):
            del reused[teacher.fingerprint]
        # A teacher to retrain is never taken from the cache either.
        cached_teacher = self.fresh is not True and "teacher" not in rows
        self.fresh = False  # within one invocation, a run trained once is reused after
        # A run to retrain (--fresh, a bad checkpoint) is reused only from a newer run that
        # another sweep sharing the store finished meanwhile.
        stale = {fp: result.run_id for fp, result in known.items() if fp not in reused}
        progress = Progress(workers=getattr(self.executor, "workers", 1)) if self.progress \
            else None
        if progress is not None:
            self.plugins.register_observer(progress, "kdbench-progress")
        try:
            return sweeps.execute(
                sweep, self.executor, self.plugins, reused=reused,
                log=lambda run, result: self.tracker.log(self.experiment, self.sweep_id, run,
                                                         result),
                settled=lambda fps: {
                    fp: result for fp, result in self.tracker.finished(
                        self.experiment, fps, self.spec.metrics).items()
                    if result.run_id != stale.get(fp)},
                cached_teacher=cached_teacher)
        finally:
            if progress is not None:
                self.plugins.unregister_observer(progress)


def until_decided(session: Session, max_seeds: int, options: Options,
                  higher: bool) -> tuple[Sweep, dict[str, RunResult], Options]:
    """Add seeds to the undecided methods, a batch per look, until each has a verdict or
    ``max_seeds`` are spent.

    Each look is tested at the alpha that an O'Brien–Fleming-type spending
    function (Lan–DeMets) assigns to it (:func:`kdbench.stats.sequential_alpha`),
    so the chance of a false "better" or "worse" over all looks stays at alpha:
    adding seeds until significance is otherwise a well-known way to manufacture it.
    """
    from kdbench import leaderboard, stats
    from kdbench import sweep as sweeps

    spec = session.spec
    start = len(spec.seeds)
    batch = max(2, start)
    looks = 1 + -(-(max_seeds - start) // batch)
    order = seed_order(spec.seeds, max_seeds)
    seeds_of = {row.label: tuple(spec.seeds) for row in spec.methods}
    n = start
    for look in range(1, looks + 1):
        full = sweeps.plan(replace(spec, seeds=order[:n]), session.plugins,
                           session.cache, session.device)
        runs = [r for r in full.runs if r.role != "method" or r.seed in seeds_of[r.label]]
        sweep = sweeps.Sweep(full.spec, full.teacher, runs)
        results = session.train(sweep)
        alpha = stats.sequential_alpha(look, looks, options.alpha)
        look_options = replace(options, alpha=alpha)
        board = leaderboard.build(sweep, results, higher_is_better=higher, options=look_options)
        undecided = [r["method"] for r in board["rows"] if r.get("verdict") == "no evidence"]
        print(f"look {look}/{looks}: {n} seeds, α = {alpha:.4g}; undecided: "
              f"{', '.join(undecided) or 'none'}", file=sys.stderr)
        if not undecided or n >= max_seeds:
            return sweep, results, look_options
        n = min(max_seeds, n + batch)
        for label in undecided:
            seeds_of[label] = order[:n]
    return sweep, results, look_options


def seed_order(seeds: tuple[int, ...], total: int) -> tuple[int, ...]:
    """The benchmark's own seeds first, then the smallest unused ones, ``total`` in all:
    ``(10, 11)`` grows to ``(10, 11, 0, 1)``; ``(0, 1, 7)`` to ``(0, 1, 7, 2, 3)``."""
    order = list(seeds)
    candidate = 0
    while len(order) < total:
        if candidate not in seeds:
            order.append(candidate)
        candidate += 1
    return tuple(order)
