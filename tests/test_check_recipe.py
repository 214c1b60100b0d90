"""``kdbench check-recipe``: the baseline at longer budgets, judged on validation only."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from kdbench import convergence, train
from kdbench.cli import main
from kdbench.convergence import Budget, judge, parse_budgets
from kdbench.errors import KdbenchError, SpecError
from kdbench.spec import load


class Recorded(torch.Tensor):
    """A test split that notes every torch operation on it."""

    reads: ClassVar[list[str]] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        Recorded.reads.append(getattr(func, "__name__", str(func)))
        return super().__torch_function__(func, types, args, kwargs)


@pytest.fixture
def spied(monkeypatch):
    """The mnist1d dataset of the worker's plugins (the tiny benchmark runs in this process)
    with a test split that records any read."""
    table = train.plugins().table("datasets")
    entry = table["mnist1d"]

    def load_spied(params, cache_dir):
        data = entry.factory(params, cache_dir)
        return replace(data, x_test=data.x_test.as_subclass(Recorded),
                       y_test=data.y_test.as_subclass(Recorded))

    monkeypatch.setitem(table, "mnist1d", replace(entry, factory=load_spied))
    Recorded.reads = []
    return Recorded


def _tiny_augmented(tiny: Path) -> Path:
    # Dataset parameters no other test of this process uses, so the spied factory builds it
    # (the worker caches datasets by parameters); augmentation on, as a benchmark may have.
    tiny.write_text(tiny.read_text().replace("num_samples = 600",
                                             'num_samples = 600\naugment = "crop"\npad = 3'))
    return tiny


def test_check_recipe_end_to_end_never_reads_the_test_split(tiny, tmp_path, capsys, spied):
    import mlflow

    bench = _tiny_augmented(tiny)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["check-recipe", str(bench), "--budgets", "2,1", "--seeds", "2", "--tracking-uri",
            uri, "--device", "cpu"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "4 runs trained, 0 reused" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+×\d", line)]
    assert [r[:2] for r in rows] == [["×1", "2"], ["×2", "4"]]
    verdict = out.strip().splitlines()[-1]
    assert re.match(r"(converged|still climbing|undecided): ×2 epochs gains [+-]\d+\.\d points "
                    r"on validation", verdict), verdict
    assert err.count("baseline ×") == 4
    assert spied.reads == []  # nothing touched the test split

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny-check-recipe")
    runs = client.search_runs([experiment.experiment_id], "tags.`kdbench.role` = 'baseline'")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        assert "top1" not in run.data.metrics  # no test metric was logged
        assert "train.top1" in run.data.metrics
        assert any(k.endswith("val.top1") for k in run.data.metrics)
    assert client.get_experiment_by_name("tiny") is None  # the benchmark's own is untouched

    assert main(args) == 0  # again: every run is reused, the same table
    again, _ = capsys.readouterr()
    assert "0 runs trained, 4 reused" in again
    assert again.splitlines()[1:] == out.splitlines()[1:]


def test_the_spy_sees_a_run_that_reads_the_test_split(tiny, plugins, cache_dir, spied):
    """The control of the test above: the same job, evaluating the test split, is seen."""
    spec = load(str(_tiny_augmented(tiny)), plugins)
    run = convergence.plan(spec, plugins, cache_dir, "cpu", (1.0, 2.0), 1)[0].run
    result = train.execute(replace(run.job, evaluate_test=True))
    assert result.status == "finished", result.error
    assert "top1" in result.metrics and spied.reads


def test_budgets_scale_epochs_and_milestones(tiny, plugins):
    text = tiny.read_text().replace("[recipe]\nepochs = 2",
                                    '[recipe]\nepochs = 10\nschedule = "step"\nmilestones = [5, 8]')
    tiny.write_text(text)
    spec = load(str(tiny), plugins)
    doubled = convergence.budget_spec(spec, 2.0)
    assert (doubled.recipe.epochs, doubled.recipe.milestones) == (20, (10, 16))
    assert doubled.methods == () and spec.methods
    with pytest.raises(SpecError, match=r"--budgets 0\.1: the scaled"):
        convergence.budget_spec(spec, 0.1)  # 1 epoch cannot keep milestones 0 and 1
    planned = convergence.plan(spec, plugins, Path("cache"), "cpu", (1.0, 2.0), 2)
    assert [(p.factor, p.run.seed, p.run.job.recipe.epochs) for p in planned] == \
        [(1.0, 0, 10), (1.0, 1, 10), (2.0, 0, 20), (2.0, 1, 20)]
    for p in planned:
        job = p.run.job
        assert not job.evaluate_test and job.teacher is None and job.metrics == ("top1",)
    assert len({p.run.fingerprint for p in planned}) == 4


def test_parse_budgets():
    assert parse_budgets("4, 2") == (1.0, 2.0, 4.0)
    assert parse_budgets("0.5,1,3") == (0.5, 1.0, 3.0)
    for bad, message in [("1", "a factor above 1"), ("1,two", "not a number"),
                         ("1,-2", "must be a factor"), ("1,nan", "must be a factor")]:
        with pytest.raises(KdbenchError, match=message):
            parse_budgets(bad)


def _budgets(*columns: tuple[float, int, list[float]]) -> tuple[Budget, ...]:
    return tuple(Budget(f, e, tuple(range(len(v))), tuple(v), tuple(v)) for f, e, v in columns)


def test_a_small_gain_is_converged():
    budgets = _budgets((1, 30, [0.800, 0.810, 0.790]), (2, 60, [0.803, 0.812, 0.791]))
    gains, verdict, message, epochs = judge(budgets, True)
    assert verdict == "converged" and epochs is None
    assert message.startswith("converged: ×2 epochs gains +0.2 points on validation")
    assert gains[0].mean == pytest.approx(0.2)


def test_a_clear_gain_is_still_climbing_and_says_how_long_to_train():
    budgets = _budgets((1, 30, [0.70, 0.72, 0.71]), (2, 60, [0.76, 0.781, 0.77]),
                       (4, 120, [0.762, 0.782, 0.771]))
    _, verdict, message, epochs = judge(budgets, True)
    assert verdict == "still climbing" and epochs == 60
    assert message.startswith("still climbing: ×2 epochs gains +6.0 points on validation")
    assert message.endswith("use [recipe] epochs = 60")
    still = _budgets((1, 30, [0.70, 0.72, 0.71]), (2, 60, [0.76, 0.78, 0.77]),
                     (4, 120, [0.80, 0.82, 0.81]))
    _, _, message, epochs = judge(still, True)
    assert epochs == 120 and message.endswith("use [recipe] epochs = 120 or more")


def test_a_noisy_gain_is_undecided_and_lower_is_better_flips_the_sign():
    noisy = _budgets((1, 30, [0.70, 0.75]), (2, 60, [0.78, 0.74]))
    _, verdict, message, _ = judge(noisy, True)
    assert verdict == "undecided" and "more --seeds" in message
    # For an error rate, a lower value at ×2 is a gain.
    errors = _budgets((1, 30, [0.30, 0.28, 0.29]), (2, 60, [0.24, 0.22, 0.23]))
    _, verdict, message, _ = judge(errors, False)
    assert verdict == "still climbing" and "+6.0 points" in message
