"""What function matching costs: seconds per run of ``kd`` and of the baseline on the default
benchmark's models, with and without MNIST-1D's random-crop augmentation, side by side.

Run with ``python benchmarks/augment_cost.py [EPOCHS] [REPEATS]`` (defaults 5 and 3). Each
run uses 1 torch thread; runs alternate between the two settings so that a busy machine
slows both alike. The teacher (``cnn1d``, the default benchmark's) is trained briefly once
and shared by both settings: its accuracy does not change what a forward pass costs.
Without augmentation the frozen teacher's outputs are computed once per run and indexed;
with it the teacher runs forward on every augmented batch (Beyer et al. 2022).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from kdbench import sweep as sweeps
from kdbench import train
from kdbench.spec import Component, load


def main(epochs: int = 5, repeats: int = 3) -> None:
    plugins = train.plugins()
    spec = load("mnist1d", plugins).with_options(seeds=1, methods=["kd"])
    spec = replace(spec, recipe=replace(spec.recipe, epochs=epochs),
                   teacher=replace(spec.teacher, recipe=replace(spec.teacher.recipe, epochs=5,
                                                                milestones=())))
    with tempfile.TemporaryDirectory() as tmp:
        sweep = sweeps.plan(spec, plugins, Path(tmp))
        teacher = train.execute(sweep.teacher.job)
        assert teacher.status == "finished", teacher.error
        jobs = {r.role: r.job for r in sweep.students()}
        crop = Component(spec.dataset.name, {**spec.dataset.params, "augment": "crop"})
        plain = Component(spec.dataset.name, {**spec.dataset.params, "augment": "none"})
        seconds: dict[tuple[str, str], list[float]] = {}
        for _ in range(repeats):
            for role, job in jobs.items():
                for setting, data in (("none", plain), ("crop", crop)):
                    result = train.execute(replace(job, dataset=data, threads=1))
                    assert result.status == "finished", result.error
                    seconds.setdefault((role, setting), []).append(result.seconds)
    print(f"{epochs} epochs, {repeats} runs each, 1 thread; median seconds per run")
    for role in jobs:
        none, cropped = (statistics.median(seconds[role, s]) for s in ("none", "crop"))
        print(f"  {role:9s} none {none:6.2f} s   crop {cropped:6.2f} s   ratio {cropped / none:.2f}")
    kd_none, base_none = (statistics.median(seconds[r, "none"]) for r in ("method", "baseline"))
    kd_crop = statistics.median(seconds["method", "crop"])
    print(f"kd with crop / kd without: {kd_crop / kd_none:.2f}; kd without / baseline without: "
          f"{kd_none / base_none:.2f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
