"""The training loop: deterministic per seed, learns, fails cleanly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from kdbench import sweep as sweeps
from kdbench import train
from kdbench.spec import Recipe, load
from kdbench.taps import Tapped, shapes


@pytest.fixture
def planned(tiny: Path, plugins, cache_dir: Path):
    return sweeps.plan(load(str(tiny), plugins), plugins, cache_dir)


@pytest.fixture
def teacher_ready(planned) -> None:
    ref = planned.teacher.job.teacher
    if not Path(ref.checkpoint).is_file():
        assert train.execute(planned.teacher.job).status == "finished"


def _run(planned, label: str, seed: int):
    return next(r for r in planned.runs if r.label == label and r.seed == seed)


def test_the_teacher_run_writes_a_loadable_checkpoint(planned, teacher_ready) -> None:
    ref = planned.teacher.job.teacher
    state = torch.load(ref.checkpoint, weights_only=True)
    assert "classifier.weight" in state
    model = train.load_teacher(ref, train.dataset(planned.spec.dataset, str(planned.runs[0].job.cache_dir)))
    assert all(not p.requires_grad for p in model.parameters())
    assert not model.training


def test_same_job_same_result_and_the_seed_matters(planned, teacher_ready) -> None:
    job0 = _run(planned, "kd", 0).job
    a, b = train.execute(job0), train.execute(job0)
    assert a.status == b.status == "finished", a.error
    assert a.metrics == b.metrics
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    c = train.execute(_run(planned, "kd", 1).job)
    assert [h["loss"] for h in c.history] != [h["loss"] for h in a.history]


def test_training_lowers_the_loss_and_logs_each_term(planned, teacher_ready) -> None:
    job = replace(_run(planned, "kd", 0).job, recipe=replace(planned.spec.recipe, epochs=4))
    events = []
    result = train.execute(job, lambda *e: events.append(e))
    assert result.status == "finished", result.error
    assert [e[:3] for e in events] == [("train", i, 4) for i in range(1, 5)]
    first, last = result.history[0], result.history[-1]
    assert last["loss"] < first["loss"]
    assert {"loss.ce", "loss.kd", "top1", "agreement"} <= set(last)
    assert 0.0 <= result.metrics["top1"] <= 1.0
    student = train.build_model(job.model, train.dataset(job.dataset, job.cache_dir))
    assert result.student_parameters == sum(p.numel() for p in student.parameters())


def test_a_diverging_run_fails_with_a_clear_reason(planned, teacher_ready) -> None:
    job = replace(_run(planned, "baseline", 0).job,
                  recipe=Recipe(epochs=2, lr=1e30, optimizer="sgd", schedule="constant"))
    result = train.execute(job)
    assert result.status == "failed"
    assert "diverged at epoch" in result.error and "lower the learning rate" in result.error


def test_taps_of_every_shape(planned) -> None:
    data = train.dataset(planned.spec.dataset, planned.runs[0].job.cache_dir)
    x = data.x_train[:3]
    from kdbench.spec import Component

    cnn = train.build_model(Component("cnn1d", {"channels": 25, "depth": 3}), data)
    s = shapes(cnn, x)
    assert s.logits == (10,) and s.embedding == (125,)
    assert s.stages == ((25, 19), (25, 10), (25, 5)) and s.spatial
    mlp = train.build_model(Component("mlp", {"hidden": [100, 100]}), data)
    m = shapes(mlp, x)
    assert m.stages == ((100,), (100,)) and m.embedding == (100,) and not m.spatial
    tapped = Tapped(cnn, {"logits", "stages"})
    taps = tapped(x)
    assert taps.embedding is None and len(taps.stages) == 3
    torch.testing.assert_close(taps.logits, cnn(x))
