"""The training loop: deterministic per seed, learns, fails cleanly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import run_of

from kdbench import sweep as sweeps
from kdbench import train
from kdbench.errors import Incompatible
from kdbench.method import Method, Stage
from kdbench.spec import Recipe, load
from kdbench.taps import Tapped, shapes


def test_the_teacher_run_writes_a_loadable_checkpoint(planned, teacher_ready) -> None:
    ref = planned.teacher.job.teacher
    state = torch.load(ref.checkpoint, weights_only=True)
    assert "classifier.weight" in state
    model = train.load_teacher(ref, train.dataset(planned.spec.dataset, str(planned.runs[0].job.cache_dir)))
    assert all(not p.requires_grad for p in model.parameters())
    assert not model.training


def test_same_job_same_result_and_the_seed_matters(planned, teacher_ready) -> None:
    job0 = run_of(planned, "kd", 0).job
    a, b = train.execute(job0), train.execute(job0)
    assert a.status == b.status == "finished", a.error
    assert a.metrics == b.metrics
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    c = train.execute(run_of(planned, "kd", 1).job)
    assert [h["loss"] for h in c.history] != [h["loss"] for h in a.history]


def test_training_lowers_the_loss_and_logs_each_term(planned, teacher_ready) -> None:
    job = replace(run_of(planned, "kd", 0).job, recipe=replace(planned.spec.recipe, epochs=4))
    events = []
    result = train.execute(job, lambda *e: events.append(e))
    assert result.status == "finished", result.error
    assert [e[:3] for e in events] == [("train", i, 4) for i in range(1, 5)]
    first, last = result.history[0], result.history[-1]
    assert last["loss"] < first["loss"]
    assert {"loss.ce", "loss.kd", "val.top1", "val.agreement"} <= set(last)
    assert "top1" not in last  # the test split is read once, at the end
    assert 0.0 <= result.metrics["top1"] <= 1.0
    assert result.metrics["val.top1"] == last["val.top1"] and result.metrics["epoch"] == 4
    student = train.build_model(job.model, train.dataset(job.dataset, job.cache_dir))
    assert result.student_parameters == sum(p.numel() for p in student.parameters())


def test_a_diverging_run_fails_with_a_clear_reason(planned, teacher_ready) -> None:
    job = replace(run_of(planned, "baseline", 0).job,
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


class _WarmUp(Method):
    """A method with one stage that trains the student and one that trains only its own
    module, and which records the student taps each stage was handed."""

    needs = frozenset({"logits"})
    teacher_needs = frozenset({"logits"})

    def __init__(self) -> None:
        super().__init__()
        self.handed: dict[str, list] = {"student": [], "own": []}

    def build(self, student, teacher, info):
        self.own = torch.nn.Linear(info.num_classes, info.num_classes)
        return self.own

    def stages(self) -> list[Stage]:
        return [Stage("student", 1, self._student),
                Stage("own", 2, self._own, trains_student=False)]

    def _student(self, s, t, y, idx):
        self.handed["student"].append(s)
        return {"ce": F.cross_entropy(s.logits, y)}

    def _own(self, s, t, y, idx):
        self.handed["own"].append(s)
        return {"fit": F.mse_loss(self.own(t.logits), t.logits)}


@pytest.mark.parametrize("budget", ["shared", "extra"])
def test_stages_that_train_the_student_share_its_epochs(planned, teacher_ready, monkeypatch,
                                                        budget: str) -> None:
    method = _WarmUp()
    monkeypatch.setattr(train, "make_method", lambda job: method)
    recipe = replace(planned.spec.recipe, epochs=3, stage_budget=budget)
    result = train.execute(replace(run_of(planned, "kd", 0).job, recipe=recipe))
    assert result.status == "finished", result.error
    main = 2 if budget == "shared" else 3  # the student stage's one epoch is taken out of 3
    assert [h["phase"] for h in result.history] == ["student", "own", "own"] + ["train"] * main
    assert all(s is not None for s in method.handed["student"])
    assert method.handed["own"] and all(s is None for s in method.handed["own"])


def test_stages_that_leave_no_epoch_are_refused_before_training(tiny: Path, plugins,
                                                                cache_dir: Path) -> None:
    text = tiny.read_text().replace("[methods.kd]", "[methods.fitnet]\nhint_epochs = 2\n\n[methods.kd]")
    tiny.write_text(text)
    with pytest.raises(Incompatible, match=r"\[methods.fitnet\].*take 2 of the recipe's 2 "
                                           r"epochs.*stage_budget = \"extra\""):
        sweeps.plan(load(str(tiny), plugins), plugins, cache_dir)
    tiny.write_text(text.replace("[executor]", 'stage_budget = "extra"\n\n[executor]'))  # in [recipe]
    sweeps.plan(load(str(tiny), plugins), plugins, cache_dir)
