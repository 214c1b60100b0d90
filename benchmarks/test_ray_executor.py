"""The Ray executor against the local process pool on the same small sweep (pytest-benchmark;
``python -m pytest benchmarks/test_ray_executor.py --benchmark-only --benchmark-enable -s``;
never in the plain test run).

The sweep: the default benchmark at a tenth of its epochs (24), rows baseline, ``kd`` (T = 1
and 4) and ``fitnet`` on 3 seeds (12 student runs: three stacked groups and three FitNet runs
one by one), its teacher trained once beforehand into a shared cache, so that both sides time
the student runs and their fixed costs (starting workers, shipping jobs, MLflow). Both sides
have two CPUs: the pool's two workers, and a local Ray head started with ``--num-cpus=2``
(started once, outside the timing; a cluster outlives its sweeps). Each round times the pool,
then Ray, each into a new MLflow store; the ratio of the medians is printed and kept in the
benchmark's ``extra_info``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import pytest
from test_speed import default_at_a_tenth

from kdbench.cli import main

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from ray_head import ray_head

pytest.importorskip("ray", reason="needs Ray (pip install 'kdbench[ray]')")

ROUNDS = 2


def test_ray_against_the_process_pool(benchmark, tmp_path: Path) -> None:
    bench = default_at_a_tenth(tmp_path)
    cache = tmp_path / "cache"

    def run(name: str, *options: str) -> float:
        store = tmp_path / name
        store.mkdir()
        start = time.perf_counter()
        assert main(["run", str(bench), "--cache-dir", str(cache), "--out", str(store),
                     "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}", *options]) == 0
        return time.perf_counter() - start

    run("teacher", "--methods", "kd", "--seeds", "1")  # the teacher, into the cache
    sweep = ("--methods", "kd,fitnet", "--seeds", "3")
    times: dict[str, list[float]] = {"process": [], "ray": []}
    with ray_head(cpus=2) as address:
        for i in range(ROUNDS):
            times["process"].append(run(f"process{i}", *sweep, "--executor", "process",
                                        "--workers", "2"))
            times["ray"].append(run(f"ray{i}", *sweep, "--executor", "ray",
                                    "--address", address))
    medians = {k: statistics.median(v) for k, v in times.items()}
    ratio = medians["ray"] / medians["process"]
    benchmark.extra_info.update(seconds=times, ray_over_process=ratio)
    print(f"\nsweep of 12 student runs: process pool {medians['process']:.1f} s, "
          f"Ray {medians['ray']:.1f} s (×{ratio:.2f}); rounds {times}")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
