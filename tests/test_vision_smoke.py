"""``--smoke`` (a shrunk benchmark whose results are never reused as real ones) and
``[published]`` (the numbers a benchmark should reproduce, shown beside the measured ones)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdbench import leaderboard
from kdbench import sweep as sweeps
from kdbench.errors import SpecError
from kdbench.plugins import Plugins
from kdbench.spec import SMOKE_BATCHES, load

BENCH = """
name = "shrink"
seeds = 5
[dataset]
name = "mnist1d"
num_samples = 600
[teacher]
model = "cnn1d"
[teacher.recipe]
epochs = 40
schedule = "step"
milestones = [20, 30]
[student]
name = "cnn1d_small"
[recipe]
epochs = 240
schedule = "step"
milestones = [150, 180, 210]
[methods.fitnet]
hint_epochs = 40
[methods.ab]
epochs = 30
[methods.kd]
T = [1, 4]
"""

PUBLISHED = """
[published]
source = "a paper, Table 1"
note = "mean of 5 trials"
values = { teacher = 79.42, baseline = 72.5, fitnet = 73.5, "kd[T=4]" = 73.33 }
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shrink.toml"
    path.write_text(text)
    return path


def test_smoke_shrinks_seeds_epochs_stages_and_renames(tmp_path: Path, plugins: Plugins) -> None:
    spec = load(str(_write(tmp_path, BENCH)), plugins)
    smoke = spec.smoke()
    assert smoke.name == "shrink-smoke" and smoke.description.startswith("SMOKE TEST")
    assert smoke.seeds == (0, 1) and smoke.protocol.smoke == SMOKE_BATCHES
    assert (smoke.recipe.epochs, smoke.recipe.milestones, smoke.recipe.batch_size) == (2, (), 4)
    assert (smoke.teacher.recipe.epochs, smoke.teacher.recipe.milestones) == (1, ())
    params = {m.label: m.params for m in smoke.methods}
    assert params["fitnet"]["hint_epochs"] == 1 and params["ab"]["epochs"] == 1
    assert params["kd[T=4]"]["T"] == 4.0  # other parameters untouched
    assert smoke.family == len(spec.methods)


def test_smoke_caps_what_a_method_declares(tmp_path: Path, plugins: Plugins) -> None:
    # ZSKD's 40 000 impressions of 1500 Adam steps each took hours on a CPU in a smoke run.
    spec = load(str(_write(tmp_path, BENCH + "[methods.zskd]\nimpressions = 30000\n")),
                plugins)
    params = {m.label: m.params for m in spec.smoke().methods}
    assert (params["zskd"]["impressions"], params["zskd"]["steps"]) == (20, 2)
    assert params["zskd"]["tau"] == 20.0  # uncapped parameters untouched
    assert {m.label: m.params for m in spec.methods}["zskd"]["impressions"] == 30000


def test_smoke_runs_are_never_the_real_runs(tmp_path: Path, plugins: Plugins,
                                            cache_dir: Path) -> None:
    spec = load(str(_write(tmp_path, BENCH)), plugins).with_options(seeds=2)
    real = sweeps.plan(spec, plugins, cache_dir)
    smoke = sweeps.plan(spec.smoke(), plugins, cache_dir)
    assert not {r.fingerprint for r in real.runs} & {r.fingerprint for r in smoke.runs}
    assert not {r.spec_fingerprint for r in real.runs} & {r.spec_fingerprint for r in smoke.runs}
    # Even with the recipe the smoke run would have: the protocol tells them apart.
    same_recipe = spec.smoke()
    from dataclasses import replace

    unsmoked = replace(same_recipe, protocol=replace(same_recipe.protocol, smoke=0))
    plain = sweeps.plan(unsmoked, plugins, cache_dir)
    assert not {r.fingerprint for r in plain.runs} & {r.fingerprint for r in smoke.runs}


def test_smoke_cannot_be_set_in_a_file(tmp_path: Path, plugins: Plugins) -> None:
    with pytest.raises(SpecError, match="smoke is set by `kdbench run --smoke` only"):
        load(str(_write(tmp_path, BENCH + "[protocol]\nsmoke = 3\n")), plugins)


def test_published_numbers_are_read_as_fractions(tmp_path: Path, plugins: Plugins) -> None:
    spec = load(str(_write(tmp_path, BENCH + PUBLISHED)), plugins)
    assert spec.published.source == "a paper, Table 1"
    assert spec.published.values == pytest.approx(
        {"teacher": 0.7942, "baseline": 0.725, "fitnet": 0.735, "kd[T=4]": 0.7333})


@pytest.mark.parametrize("values, message", [
    ('{ kd = 70.0 }', "'kd' is not a row of the benchmark"),
    ('{ teacher = 101.0 }', "must be a percentage in"),
    ('{ teacher = "high" }', "teacher"),
])
def test_published_values_are_checked(values: str, message: str, tmp_path: Path,
                                      plugins: Plugins) -> None:
    text = BENCH + f'[published]\nsource = "x"\nvalues = {values}\n'
    with pytest.raises(SpecError, match=message):
        load(str(_write(tmp_path, text)), plugins)
    with pytest.raises(SpecError, match="needs source"):
        load(str(_write(tmp_path, BENCH + "[published]\nvalues = { teacher = 70.0 }\n")), plugins)


def test_the_board_shows_published_numbers_beside_the_measured(tmp_path: Path,
                                                               plugins: Plugins,
                                                               cache_dir: Path) -> None:
    from kdbench.runs import RunResult

    spec = load(str(_write(tmp_path, BENCH + PUBLISHED)), plugins).with_options(seeds=2)
    sweep = sweeps.plan(spec, plugins, cache_dir)
    values = {"teacher": 0.8, "baseline": 0.70, "fitnet": 0.71, "ab": 0.69,
              "kd[T=1]": 0.70, "kd[T=4]": 0.72}
    results = {r.fingerprint: RunResult(r.fingerprint, "finished",
                                        {"top1": values[r.label] + 0.001 * r.seed})
               for r in sweep.runs}
    board = leaderboard.build(sweep, results)
    assert board["published"]["teacher"] == pytest.approx(79.42)
    rows = {r["method"]: r for r in board["rows"]}
    assert rows["fitnet"]["published"] == pytest.approx(73.5)
    assert rows["ab"]["published"] is None
    text = leaderboard.terminal(board)
    assert "published: a paper, Table 1; mean of 5 trials" in text
    header = next(line for line in text.splitlines() if line.startswith("#"))
    assert "published" in header
    fitnet = next(line for line in text.splitlines() if " fitnet " in line)
    assert "73.50" in fitnet
    md = leaderboard.markdown(board)
    assert "| mean | published |" in md and "| 73.50 |" in md
    assert "published" in leaderboard.csv_text(board).splitlines()[0]
    # A board without [published] keeps its columns.
    plain = leaderboard.build(sweeps.plan(load(str(_write(tmp_path, BENCH)), plugins)
                                          .with_options(seeds=2), plugins, cache_dir), {})
    assert "published" not in leaderboard.markdown(plain)


def test_tune_refuses_smoke(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from kdbench.cli import main

    assert main(["tune", str(_write(tmp_path, BENCH)), "--trials", "1", "--smoke"]) == 2
    assert "--smoke is for `kdbench run`" in capsys.readouterr().err


def test_calibrated_batchnorm_holds_the_statistics_of_the_training_split() -> None:
    # A smoke teacher's running statistics after 2 batches at momentum 0.1 are far from its
    # data's, and the error compounds through depth in eval mode (kdbench.train).
    import torch
    from torch import nn

    from kdbench.train import calibrate_batchnorm

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3),
                          nn.BatchNorm2d(8))
    x = 5 + 3 * torch.randn(32, 3, 8, 8)
    model.train()
    model(x[:16]), model(x[16:])  # two training batches: the running statistics are still off
    model.eval()
    with torch.no_grad():
        batch_stats = model.train()(x)
        before = model.eval()(x)
        calibrate_batchnorm(model, [x[:16], x[16:]])
        after = model(x)
    assert not model.training and model[1].momentum == 0.1
    assert (before - batch_stats).abs().max() > 1
    # The running mean is the batches' average; the variance their average unbiased one.
    assert (after - batch_stats).abs().max() < 0.1
    calibrate_batchnorm(nn.Linear(2, 2), [torch.zeros(1, 2)])  # nothing to calibrate: no error
