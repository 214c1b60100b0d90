"""What each row of the default board costs per epoch, and the share of the expensive losses
(``kdsvd``, ``crd``, ``rkd``) in the board's per-batch cost: a quick measurement, not a board.

Run with ``python benchmarks/loss_share.py [EPOCHS [ROW ...]]`` (default 3, every row; to
compare two versions of the code on a busy machine, alternate them row by row). Every row of
``leaderboard/mnist1d.toml`` (the baseline and each method row, seed 0) trains ``EPOCHS``
epochs of its main phase one run at a time (no stacking), with 1 torch thread, in this
process; a row's cost is the median CPU time between the ends of its consecutive epochs
(each ~73 batches of 50 with random crops, plus the epoch's validation), so the set-up before
the first epoch is left out. Warm-up stages are cut to one epoch and not counted (they take
their epochs out of the same 240). The teacher is trained for 5 epochs, once: its accuracy
does not change what its forward pass costs. Every row trains the same number of epochs on
the board, so a row's share of the board is its share of the summed per-epoch costs.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from kdbench import sweep as sweeps
from kdbench import train
from kdbench.spec import load

STAGE_EPOCHS = {"fitnet": "hint_epochs", "fsp": "fsp_epochs", "ab": "epochs",
                "ft": "paraphraser_epochs"}
EXPENSIVE = ("kdsvd", "crd", "rkd")


def main(epochs: int = 3, rows: tuple[str, ...] = ()) -> None:
    torch.set_num_threads(1)
    plugins = train.plugins()
    spec = replace(load("mnist1d", plugins).with_options(seeds=1), batch_runs=1)
    spec = replace(spec, teacher=replace(spec.teacher, recipe=replace(
        spec.teacher.recipe, epochs=5, milestones=())))
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sweep = sweeps.plan(spec, plugins, Path(tmp))
        teacher = train.execute(sweep.teacher.job)
        assert teacher.status == "finished", teacher.error
        for run in sweep.students():
            if rows and run.label not in rows:
                continue
            job = replace(run.job, recipe=replace(run.job.recipe, epochs=epochs + 1), threads=1)
            if run.method in STAGE_EPOCHS:
                job = replace(job, method_params={**job.method_params, STAGE_EPOCHS[run.method]: 1})
            ends: list[float] = []

            def emit(phase: str, *_: object, ends: list[float] = ends) -> None:
                if phase == "train":
                    ends.append(time.process_time())

            result = train.execute(job, emit)
            assert result.status == "finished", f"{run.label}: {result.error}"
            seconds[run.label] = statistics.median(b - a for a, b in itertools.pairwise(ends))
    total = sum(seconds.values())
    print(f"CPU seconds per epoch (median of {epochs}), 1 thread, one run at a time:")
    for label, s in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"  {label:12s} {s:6.3f} s  {s / total:6.1%}")
    expensive = sum(s for label, s in seconds.items() if label.split("[")[0] in EXPENSIVE)
    print(f"all {len(seconds)} rows: {total:.3f} s per epoch; kdsvd + crd + rkd: "
          f"{expensive:.3f} s, {expensive / total:.1%} of the board")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, tuple(sys.argv[2:]))
