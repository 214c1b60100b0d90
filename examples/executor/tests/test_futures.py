"""The executor trains real runs in its workers and yields one result per unit of work."""

from __future__ import annotations

from pathlib import Path

from kdbench import batched
from kdbench import sweep as sweeps
from kdbench.plugins import Plugins
from kdbench.spec import load
from kdbench.testing import check_params

BENCHMARK = Path(__file__).parents[1] / "futures.toml"


def test_parameters_survive_a_benchmark_file_and_mlflow() -> None:
    assert check_params("executors", "futures") == {"workers": 0}


def test_it_trains_the_teacher_then_every_student(tmp_path: Path) -> None:
    plugins = Plugins.load()
    spec = load(str(BENCHMARK), plugins).smoke()  # 2 batches per epoch, 2 seeds
    sweep = sweeps.plan(spec, plugins, tmp_path)
    entry = plugins.entry("executors", "futures")
    executor = entry.factory(entry.make_params({"workers": 2}))

    def no_progress(*_: object) -> None:
        pass

    [(index, teacher)] = list(executor.map([sweep.teacher.job], no_progress))
    assert index == 0 and teacher.status == "finished", teacher.error
    students = [r.job for r in sweep.students()]
    members, units = batched.units(students, batched.group_size(spec.batch_runs, len(spec.seeds)))
    results = dict(executor.map(units, no_progress))
    assert sorted(results) == list(range(len(units)))
    flat = [r for i in results for r in sweeps.per_member(results[i], len(members[i]))]
    assert len(flat) == len(students) == 4  # baseline and kd, 2 seeds each
    assert all(r.status == "finished" for r in flat), [r.error for r in flat]
