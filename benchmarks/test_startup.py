"""Fixed costs of the command line (pytest-benchmark): what a user waits for before anything
trains, each command in a fresh process as a shell runs it.

    python -m pytest benchmarks/test_startup.py --benchmark-only --benchmark-enable -s

Targets: ``kdbench --help``, ``kdbench plugins`` and a one-line error well under a second
(nothing heavy is imported to parse flags or list plugins); a fully reused ``kdbench run``
(every run already in the store) about 2 s, which is what importing torch, MLflow and
SciPy, planning, and writing the board files cost. Each benchmark also records the
commands' CPU seconds (user + sys, ``cpu_s`` in ``extra_info``): on a shared machine wall
time mostly measures the other processes.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TINY = """
name = "tiny"
seeds = 2
metric = "top1"
metrics = ["top1", "agreement"]

[dataset]
name = "mnist1d"
num_samples = 600

[teacher]
model = "cnn1d"
[teacher.recipe]
epochs = 4
batch_size = 50
schedule = "constant"

[student]
name = "cnn1d_small"

[recipe]
epochs = 2
batch_size = 50

[executor]
name = "serial"

[methods.kd]
T = 4.0
"""

KDBENCH = [shutil.which("kdbench") or "kdbench"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(benchmark, command: list[str], cwd: Path, env: dict[str, str], rounds: int,
           code: int = 0) -> None:
    cpu: list[float] = []

    def once() -> None:
        before = _cpu()
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        cpu.append(_cpu() - before)
        assert done.returncode == code, done.stderr

    benchmark.pedantic(once, rounds=rounds, iterations=1, warmup_rounds=1)
    cpu = cpu[1:]  # without the warm-up
    benchmark.extra_info["cpu_s"] = sorted(cpu)[len(cpu) // 2]
    print(f"\n{' '.join(command[1:])}: median CPU {benchmark.extra_info['cpu_s']:.2f} s")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "KDBENCH_CACHE": str(tmp_path / "cache"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}


@pytest.mark.parametrize("command", [["--help"], ["plugins"], ["run", "mnist1e"]],
                         ids=["help", "plugins", "error"])
def test_a_command_that_trains_nothing_answers_at_once(benchmark, command, tmp_path,
                                                       env) -> None:
    _timed(benchmark, [*KDBENCH, *command], tmp_path, env, rounds=5,
           code=2 if command[0] == "run" else 0)
    assert benchmark.stats["median"] < 1.0


def test_a_fully_reused_rerun(benchmark, tmp_path, env) -> None:
    (tmp_path / "tiny.toml").write_text(TINY)
    command = [*KDBENCH, "run", "tiny.toml"]
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    _timed(benchmark, command, tmp_path, env, rounds=3)


def test_python_starts(benchmark, tmp_path, env) -> None:
    """The floor: an interpreter that imports nothing."""
    _timed(benchmark, [sys.executable, "-c", "pass"], tmp_path, env, rounds=5)
