"""The protocol: a fixed validation split held out of every run's training data, the test
split read once per run (never by a run that must not), the reported epoch, and a
leaderboard that states all this and warns of a baseline still climbing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import run_of

from kdbench import leaderboard, train
from kdbench import sweep as sweeps
from kdbench.data import Sealed, validation_split
from kdbench.errors import SpecError
from kdbench.runs import RunResult
from kdbench.spec import Protocol, Recipe, load
from kdbench.tracking import Tracker


def _full(planned):
    """The dataset as its plugin made it, before any split is held out."""
    return train.dataset(planned.spec.dataset, planned.teacher.job.cache_dir)


def _same_rows(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a, b)


# The split ---------------------------------------------------------------------------------


def test_the_validation_split_is_fixed_stratified_and_disjoint(planned) -> None:
    y = _full(planned).y_train
    kept, held = validation_split(y, 0.1, 0)
    again = validation_split(y, 0.1, 0)
    assert torch.equal(kept, again[0]) and torch.equal(held, again[1])
    assert not set(kept.tolist()) & set(held.tolist())
    assert sorted(kept.tolist() + held.tolist()) == list(range(len(y)))
    for c in range(10):  # per class: floor(0.1 n_c + 0.5) held out
        n_c = int((y == c).sum())
        assert int((y[held] == c).sum()) == int(0.1 * n_c + 0.5)
    other = validation_split(y, 0.1, 1)[1]
    assert not torch.equal(other, held) and len(other) == len(held)
    assert len(validation_split(y, 0.5, 0)[1]) > 4 * len(held)


def test_every_run_trains_on_the_same_samples_without_the_validation_ones(planned) -> None:
    full = _full(planned)
    kept, held = validation_split(full.y_train, 0.1, 0)
    jobs = [planned.teacher.job, run_of(planned, "baseline", 0).job,
            run_of(planned, "baseline", 1).job, run_of(planned, "kd", 1).job]
    for job in jobs:
        data = train.prepared(job)
        assert _same_rows(data.x_train, full.x_train[kept])
        assert _same_rows(data.y_train, full.y_train[kept])
        assert _same_rows(data.x_val, full.x_train[held])
        assert data.info.num_train == len(kept)  # CRD's memory bank indexes what it trains on
    # No validation sample is also a training sample (MNIST-1D has no duplicate sequences).
    data = train.prepared(jobs[0])
    rows = {tuple(r.tolist()) for r in data.x_train}
    assert not any(tuple(r.tolist()) in rows for r in data.x_val)


def test_the_protocol_table_is_checked_and_part_of_every_fingerprint(tiny: Path, plugins,
                                                                     cache_dir: Path) -> None:
    base = sweeps.plan(load(str(tiny), plugins), plugins, cache_dir)
    assert base.spec.protocol == Protocol() and base.runs[1].job.protocol == Protocol()
    text = tiny.read_text()
    for table, other in [("validation = 0.2", Protocol(validation=0.2)),
                         ("validation_seed = 3", Protocol(validation_seed=3)),
                         ('epoch = "best"', Protocol(epoch="best"))]:
        tiny.write_text(text + f"\n[protocol]\n{table}\n")
        changed = sweeps.plan(load(str(tiny), plugins), plugins, cache_dir)
        assert changed.spec.protocol == other
        assert all(a.fingerprint != b.fingerprint for a, b in zip(base.runs, changed.runs,
                                                                   strict=True))
    sealed = sweeps.plan(base.spec, plugins, cache_dir, evaluate_test=False)
    assert sealed.teacher.fingerprint == base.teacher.fingerprint  # its test number chooses nothing
    assert all(not r.job.evaluate_test and r.fingerprint != b.fingerprint
               for r, b in zip(sealed.students(), base.students(), strict=True))
    for bad, says in [("validation = 0.6", r"\[protocol\] validation must be in \(0, 0.5\]"),
                      ("validation = 0", r"\[protocol\] validation"),
                      ('epoch = "first"', r"\[protocol\] epoch"),
                      ("folds = 5", r"\[protocol\] unknown parameter 'folds'")]:
        tiny.write_text(text + f"\n[protocol]\n{bad}\n")
        with pytest.raises(SpecError, match=says):
            load(str(tiny), plugins)


# The test split ------------------------------------------------------------------------------


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch, planned) -> list[int]:
    """How many models each pass over the test split scored: one entry per pass."""
    x_test = _full(planned).x_test
    passes: list[int] = []
    outputs_on = train.outputs_on

    def counting(models, x, *args, **kwargs):
        assert not isinstance(x, Sealed)
        if x is x_test:
            passes.append(len(models))
        return outputs_on(models, x, *args, **kwargs)

    monkeypatch.setattr(train, "outputs_on", counting)
    return passes


def test_the_test_split_is_read_once_perrun_of(planned, teacher_ready, reads) -> None:
    result = train.execute(replace(run_of(planned, "kd", 0).job,
                                   recipe=replace(planned.spec.recipe, epochs=3)))
    assert result.status == "finished", result.error
    assert reads == [2]  # one pass, scoring the student and (for agreement) its teacher
    assert all(set(row) & {"top1", "agreement"} == set() for row in result.history)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert {"val.top1", "val.agreement"} <= set(result.history[-1])
    m = result.metrics
    assert {"top1", "agreement", "val.top1", "val.agreement", "train.top1", "train.agreement",
            "epoch", "val.gain"} <= set(m)
    assert m["epoch"] == 3 and m["val.top1"] == result.history[-1]["val.top1"]
    assert m["val.gain"] == pytest.approx(result.history[2]["val.top1"]
                                          - result.history[1]["val.top1"])

    reads.clear()
    teacher = planned.teacher.job
    own = replace(teacher, teacher=replace(teacher.teacher, checkpoint=None))
    assert train.execute(replace(own, recipe=replace(own.recipe, epochs=2))).status == "finished"
    assert reads == [1]


def test_a_run_that_must_not_read_the_test_split_cannot(planned, teacher_ready, reads,
                                                        monkeypatch) -> None:
    job = run_of(planned, "kd", 0).job
    sealed = replace(job, evaluate_test=False)
    with pytest.raises(RuntimeError, match="the test split is not to be read here"):
        train.prepared(sealed).x_test[:10]
    with pytest.raises(RuntimeError, match="the test split is not to be read here"):
        len(train.prepared(sealed).y_test)
    with pytest.raises(RuntimeError, match="the test split is not to be read here"):
        torch.cat([train.prepared(sealed).x_test])

    blind, seeing = train.execute(sealed), train.execute(job)
    assert blind.status == "finished", blind.error
    assert reads == [2]  # the seeing run's one pass; none by the sealed run
    assert "top1" not in blind.metrics and "agreement" not in blind.metrics
    # Training does not depend on whether the test split is read at the end.
    assert blind.history == seeing.history
    assert blind.metrics == {k: v for k, v in seeing.metrics.items()
                             if k not in ("top1", "agreement")}

    class Peeking(train.TeacherTaps):
        """A part of the run that looks at the test split (here, while caching the
        teacher's taps), as a careless method or tuner might."""

        def __init__(self, tapped, data, frozen, batch_size, **options) -> None:
            super().__init__(tapped, data, frozen, batch_size, **options)
            self.peek = data.x_test[:1].sum()

    monkeypatch.setattr(train, "TeacherTaps", Peeking)
    peeked = train.execute(sealed)
    assert peeked.status == "failed"
    assert "RuntimeError: the test split is not to be read here" in peeked.error
    assert train.execute(job).status == "finished"


# The reported epoch --------------------------------------------------------------------------


def test_the_best_validation_epoch_is_reported(planned, tmp_path: Path, reads) -> None:
    """A learning rate 100 times larger for the last epoch wrecks it: under ``epoch = "best"``
    the run reports an earlier epoch's weights, on test too."""
    teacher = planned.teacher.job
    checkpoint = tmp_path / "best.pt"
    job = replace(teacher, teacher=replace(teacher.teacher, checkpoint=str(checkpoint)),
                  recipe=Recipe(epochs=5, batch_size=50, lr=0.01, schedule="step",
                                milestones=(4,), gamma=100.0),
                  protocol=Protocol(epoch="best"))
    best = train.execute(job)
    assert best.status == "finished", best.error
    curve = [row["val.top1"] for row in best.history]
    reported = int(best.metrics["epoch"])
    assert reported < 5 and curve[-1] < max(curve)
    assert best.metrics["val.top1"] == max(curve) == curve[reported - 1]
    assert reported == max(i for i, v in enumerate(curve, 1) if v == max(curve))  # later on ties
    assert reads == [1]

    # The checkpoint holds the reported weights: a fresh evaluation gives the same numbers.
    data = train.prepared(job)
    model = train.build_model(job.model, data)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    metrics = {"top1": train._metric("top1")}
    assert train.evaluate([model], data.x_test, data.y_test, metrics)["top1"] \
        == best.metrics["top1"]
    assert train.evaluate([model], data.x_val, data.y_val, metrics)["top1"] \
        == best.metrics["val.top1"]
    assert train.evaluate([model], data.x_train, data.y_train, metrics)["top1"] \
        == best.metrics["train.top1"]

    last = train.execute(replace(job, protocol=Protocol(epoch="last")))
    assert last.history == best.history
    assert last.metrics["epoch"] == 5 and last.metrics["val.top1"] == curve[-1]
    assert last.metrics["val.gain"] == best.metrics["val.gain"] < 0


def test_the_validation_gain_compares_the_end_with_the_last_quarter() -> None:
    gain = train.validation_gain
    assert gain([0.5]) is None
    assert gain([0.1, 0.4]) == pytest.approx(0.3)  # one epoch against the one before
    # 30 epochs: epochs 28-30 against 20-22
    curve = [float(e) for e in range(1, 31)]
    assert gain(curve) == pytest.approx((28 + 29 + 30) / 3 - (20 + 21 + 22) / 3)
    assert gain([0.7] * 12) == 0.0


def test_the_reported_values_come_back_from_mlflow(planned, tmp_path: Path) -> None:
    """Under ``epoch = "best"`` a reused run keeps the best epoch's val.top1, not the last
    epoch's, which the per-epoch curve holds under the same name."""
    teacher = planned.teacher.job
    job = replace(teacher, teacher=replace(teacher.teacher, checkpoint=None),
                  recipe=Recipe(epochs=5, batch_size=50, lr=0.01, schedule="step",
                                milestones=(4,), gamma=100.0),
                  protocol=Protocol(epoch="best"))
    result = train.execute(job)
    assert result.status == "finished" and result.metrics["epoch"] < 5
    tracker = Tracker(f"sqlite:///{tmp_path / 'ml.db'}")
    experiment = tracker.experiment(planned.spec)
    run = replace(planned.teacher, fingerprint="f" * 16, job=job)
    result.fingerprint = run.fingerprint
    tracker.log(experiment, None, run, result)
    (back,) = tracker.finished(experiment, {run.fingerprint}, planned.spec.metrics).values()
    assert back.metrics == pytest.approx(result.metrics)
    assert back.metrics["val.top1"] != result.history[-1]["val.top1"]


# The leaderboard -----------------------------------------------------------------------------


def _results(planned, gain: float, train_top1: float = 0.721) -> dict[str, RunResult]:
    out = {}
    for run in planned.students():
        base = run.role == "baseline"
        metrics = {"top1": 0.60 + 0.01 * run.seed + (0.0 if base else 0.02),
                   "train.top1": train_top1 + 0.01 * run.seed if base else 0.9,
                   "val.gain": gain if base else 0.0, "epoch": 2.0}
        out[run.fingerprint] = RunResult(run.fingerprint, "finished", metrics)
    return out


def test_the_leaderboard_states_the_protocol_and_warns_of_a_climbing_baseline(planned) -> None:
    held = len(validation_split(_full(planned).y_train, 0.1, 0)[1])
    board = leaderboard.build(planned, _results(planned, gain=0.013))
    assert board["protocol"] == {"validation": 0.1, "validation_samples": held,
                                 "train_samples": len(_full(planned).y_train) - held,
                                 "validation_seed": 0, "epoch": "last",
                                 "test": "read once per run"}
    assert board["unit"] == "percent"
    assert board["baseline"]["train"] == pytest.approx(72.6)
    assert board["baseline"]["val_gain"] == pytest.approx(1.3)
    warning = ("the baseline is still climbing (validation top1 +1.3 points over the last "
               "quarter of its 2 epochs; train top1 72.60%): lengthen [recipe] epochs "
               "(see kdbench check-recipe)")
    assert board["warnings"] == [warning]
    text = leaderboard.terminal(board).splitlines()
    header = next(i for i, line in enumerate(text) if line.startswith("#"))
    line = text.index(f"protocol: 10% of the training split held out for validation ({held} "
                      "samples, seed 0); last epoch reported; test split read once per run; "
                      "baseline train top1 72.60%")
    assert line < text.index(f"warning: {warning}") < header
    assert f"**Warning:** {warning}." in leaderboard.markdown(board)
    assert "Protocol: 10% of the training split" in leaderboard.markdown(board)

    calm = leaderboard.build(planned, _results(planned, gain=0.004))
    assert calm["warnings"] == [] and "warning" not in leaderboard.terminal(calm)
    # For a metric where lower is better, falling is what climbing means.
    assert leaderboard.build(planned, _results(planned, gain=-0.02),
                             higher_is_better=False)["warnings"]
    assert not leaderboard.build(planned, _results(planned, gain=0.02),
                                 higher_is_better=False)["warnings"]


def test_a_two_epoch_baseline_is_still_climbing_end_to_end(tiny: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    from kdbench.cli import main

    tiny.write_text(tiny.read_text().replace("[methods.kd]\nT = 4.0\nalpha = 0.9\n", ""))
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    assert main(["run", str(tiny), "--tracking-uri", uri, "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "protocol: 10% of the training split held out for validation" in out
    assert "warning: the baseline is still climbing (validation top1 +" in out
    assert "over the last quarter of its 2 epochs; train top1 " in out
