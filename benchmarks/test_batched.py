"""Seeds stacked into one model against the same seeds one after another (pytest-benchmark;
``python -m pytest benchmarks/test_batched.py --benchmark-only --benchmark-enable -s``;
never in the plain test run).

Both sides train the default benchmark's student (``leaderboard/mnist1d.toml``: a 16-channel
1-D CNN, Adam, batch 50, random crops) on the same five seeds for ``EPOCHS`` epochs with one
torch thread, and are measured in the same process, interleaved round by round (plain, then
stacked, then plain...), so that load from other processes on a shared machine falls on both
alike. Target: stacked ≥ 2.5× faster for 5 seeds. The ratio of the medians is printed and
kept in the benchmark's ``extra_info``.
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from kdbench import batched, train
from kdbench import sweep as sweeps
from kdbench.api import default_cache
from kdbench.spec import load

SEEDS = 5
EPOCHS = 10
ROUNDS = 3
TARGET = 2.5


def _jobs(label: str) -> list:
    plugins = train.plugins()
    spec = replace(load("mnist1d", plugins).with_options(seeds=SEEDS), batch_runs=1)
    sweep = sweeps.plan(spec, plugins, default_cache())
    teacher = sweep.teacher
    if not Path(teacher.job.teacher.checkpoint).is_file():
        assert train.execute(teacher.job).status == "finished"
    return [replace(r.job, recipe=replace(r.job.recipe, epochs=EPOCHS))
            for r in sweep.runs if r.label == label]


@pytest.mark.parametrize("label", ["baseline", "kd[T=4]"])
def test_five_seeds_stacked_against_one_after_another(benchmark, label: str) -> None:
    torch.set_num_threads(1)
    plain_jobs = _jobs(label)
    stacked_jobs = [replace(j, engine=batched.ENGINE) for j in plain_jobs]
    times: dict[str, list[float]] = {"plain": [], "stacked": []}

    def plain() -> None:
        for job in plain_jobs:
            assert train.execute(job).status == "finished"

    def stacked() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.func: no batching rule for kl_div yet
            assert all(r.status == "finished" for r in batched.execute_group(stacked_jobs))

    def timed(name: str, work) -> None:
        start = time.perf_counter()
        work()
        times[name].append(time.perf_counter() - start)

    def one_round() -> None:
        # Alternate which side goes first, so neither always follows the other.
        first = len(times["plain"]) % 2 == 0
        for name, work in [("plain", plain), ("stacked", stacked)][::1 if first else -1]:
            timed(name, work)

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    plain_s, stacked_s = statistics.median(times["plain"]), statistics.median(times["stacked"])
    ratio = plain_s / stacked_s
    benchmark.extra_info.update(plain_s=times["plain"], stacked_s=times["stacked"],
                                ratio=ratio)
    print(f"\n{label}: {SEEDS} seeds x {EPOCHS} epochs, 1 thread: one after another "
          f"{plain_s:.2f} s, stacked {stacked_s:.2f} s (medians of {ROUNDS} interleaved "
          f"rounds): x{ratio:.2f}")
    assert ratio >= TARGET, f"stacked only x{ratio:.2f} faster (target x{TARGET})"
