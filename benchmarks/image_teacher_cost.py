"""What the frozen teacher costs on an image benchmark: seconds per ``kd`` run and per baseline
run with the dataset's standard augmentation (the teacher runs forward on every augmented
batch) and without it (its outputs are computed once per run and indexed), side by side.

Run with ``python benchmarks/image_teacher_cost.py BENCHMARK [EPOCHS] [REPEATS]`` (defaults 2
and 3) with the data under ``--data-root``'s ``$KDBENCH_DATA``. The benchmark's recipe is cut
to ``EPOCHS``; its teacher is trained for one epoch, once (its accuracy does not change what a
forward pass costs). Runs alternate between the two settings, so that a busy machine slows
both alike; the device is the one ``kdbench run`` would pick.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from kdbench import sweep as sweeps
from kdbench import train
from kdbench.spec import Component, load


def main(benchmark: str, epochs: int = 2, repeats: int = 3) -> None:
    plugins = train.plugins()
    spec = load(benchmark, plugins).with_options(seeds=1, methods=["kd"])
    spec = replace(spec, recipe=replace(spec.recipe, epochs=epochs, milestones=()),
                   teacher=replace(spec.teacher, recipe=replace(spec.teacher.recipe, epochs=1,
                                                                milestones=())))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        sweep = sweeps.plan(spec, plugins, Path(tmp), device)
        teacher = train.execute(sweep.teacher.job)
        assert teacher.status == "finished", teacher.error
        jobs = {r.role: r.job for r in sweep.students()}
        settings = {s: Component(spec.dataset.name, {**spec.dataset.params, "augment": s})
                    for s in ("none", "standard")}
        seconds: dict[tuple[str, str], list[float]] = {}
        for _ in range(repeats):
            for role, job in jobs.items():
                for setting, data in settings.items():
                    result = train.execute(replace(job, dataset=data))
                    assert result.status == "finished", result.error
                    seconds.setdefault((role, setting), []).append(result.seconds)
    print(f"{spec.name}: {spec.teacher.model.name} -> {spec.student.name}, {epochs} epochs, "
          f"{repeats} runs each, {device}, {jobs['method'].threads} thread(s); median s per run")
    for role in jobs:
        none, augmented = (statistics.median(seconds[role, s]) for s in ("none", "standard"))
        print(f"  {role:9s} none {none:7.2f} s   standard {augmented:7.2f} s   "
              f"ratio {augmented / none:.2f}")
    kd = {s: statistics.median(seconds["method", s]) for s in settings}
    base = {s: statistics.median(seconds["baseline", s]) for s in settings}
    print(f"the teacher's share of a kd run: {1 - base['none'] / kd['none']:.0%} cached, "
          f"{1 - base['standard'] / kd['standard']:.0%} under augmentation")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:4]))
