"""Shared fixtures: a tiny benchmark that trains in seconds, and isolated stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kdbench.plugins import Plugins

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
seed = 0
[teacher.recipe]
epochs = 4
batch_size = 50
lr = 0.01
schedule = "constant"

[student]
name = "cnn1d_small"

[recipe]
epochs = 2
batch_size = 50
lr = 0.01

[executor]
name = "serial"

[methods.kd]
T = 4.0
alpha = 0.9
"""


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dataset and teacher cache for the whole session: building them is the slow part."""
    return tmp_path_factory.mktemp("kdbench-cache")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, cache_dir: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("KDBENCH_CACHE", str(cache_dir))
    monkeypatch.setenv("KDBENCH_DATA", "")  # unset, and restored after `main(["--data-root"...])`
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="session")
def plugins() -> Plugins:
    return Plugins.load(strict=True)


@pytest.fixture
def planned(tiny: Path, plugins: Plugins, cache_dir: Path):
    """The tiny benchmark's sweep, planned (nothing trained)."""
    from kdbench import sweep as sweeps
    from kdbench.spec import load

    return sweeps.plan(load(str(tiny), plugins), plugins, cache_dir)


@pytest.fixture
def teacher_ready(planned) -> None:
    """The planned sweep's teacher checkpoint exists (trained once per session)."""
    from kdbench import train

    if not Path(planned.teacher.job.teacher.checkpoint).is_file():
        assert train.execute(planned.teacher.job).status == "finished"


def run_of(planned, label: str, seed: int):
    """The run of row ``label`` on ``seed`` in a planned sweep."""
    return next(r for r in planned.runs if r.label == label and r.seed == seed)


def briefly(method: str | None, params: dict | None = None, *, student: str = "cnn1d_small",
            teacher: str = "cnn1d", dataset: str = "mnist1d", dataset_params: dict | None = None,
            epochs: int = 2, cache: Path, teacher_epochs: int = 3, seed: int = 0):
    """Train ``method`` for a few epochs on a small split, with a briefly trained teacher.

    Returns the :class:`~kdbench.runs.RunResult`; the teacher checkpoint is cached by
    fingerprint under ``cache`` so each (teacher, dataset) pair trains once per session.
    """
    from kdbench import sweep as sweeps
    from kdbench import train
    from kdbench.runs import Job, TeacherRef
    from kdbench.spec import Component, Recipe

    plugins = train.plugins()
    data = Component(dataset, plugins.entry("datasets", dataset).make_params(
        dataset_params or ({"num_samples": 600} if dataset == "mnist1d" else {})).__dict__)
    def component(kind: str, name: str) -> Component:
        return Component(name, plugins.entry(kind, name).make_params({}).__dict__)
    t_model = component("students", teacher)
    recipe = Recipe(epochs=teacher_epochs, lr=0.01, schedule="constant")
    fp = sweeps.fingerprint(role="teacher", dataset=data, model=t_model, recipe=recipe)
    ref = TeacherRef("train", t_model, {}, fp, str(cache / "teachers" / f"{fp}.pt"))
    metrics = ("top1", "agreement")
    if not Path(ref.checkpoint).is_file():
        result = train.execute(Job("teacher", None, {}, 0, data, t_model, recipe, ref, metrics,
                                   str(cache)))
        assert result.status == "finished", result.error
    entry = plugins.entry("methods", method) if method else None
    values = entry.make_params(params or {}).__dict__ if entry and entry.params else {}
    job = Job("method" if method else "baseline", method, values, seed, data,
              component("students", student), Recipe(epochs=epochs, lr=0.01), ref, metrics,
              str(cache))
    return train.execute(job)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small batches run fastest on one intra-op thread, and the machine is shared."""
    from kdbench.conformance import one_thread

    with one_thread():
        yield
