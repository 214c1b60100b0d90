"""The leaderboard states whether its recipe was checked: the latest ``kdbench check-recipe``
verdict of the same recipe in the same store, or that there is none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdbench import convergence, leaderboard
from kdbench.cli import main
from kdbench.runs import RunResult
from kdbench.spec import load
from kdbench.tracking import Tracker


def _board(out: Path) -> dict:
    return json.loads((out / "tiny.json").read_text())


def test_the_board_says_whether_and_how_its_recipe_was_checked(
        tiny: Path, tmp_path: Path, plugins, cache_dir: Path,
        capsys: pytest.CaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    out = tmp_path / "out"
    assert main(["run", str(tiny), "--tracking-uri", uri, "--out", str(out)]) == 0
    assert "\nrecipe not checked: `kdbench check-recipe tiny` trains the baseline longer" \
        in capsys.readouterr().out
    assert _board(out)["recipe_check"] == {"verdict": "not checked",
                                           "experiment": "tiny-check-recipe"}

    assert main(["check-recipe", str(tiny), "--budgets", "1,2", "--seeds", "2",
                 "--tracking-uri", uri]) == 0
    verdict = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["leaderboard", str(tiny), "--tracking-uri", uri, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    check = _board(out)["recipe_check"]
    # The verdict check-recipe printed, with its numbers: ×2 (4 epochs) against ×1, 2 seeds.
    assert verdict.startswith(check["verdict"] + ":") and check["message"] == verdict
    assert (check["budget"], check["epochs"], check["seeds"]) == ("×2", 4, 2)
    lo, hi = check["ci95"]
    line = (f"recipe checked: {check['verdict']} (×2 = 4 epochs: {check['gain']:+.2f} points "
            f"on validation, 95% CI {lo:+.2f} to {hi:+.2f}) at 2 seeds")
    assert f"\n{line}\n" in text
    assert f"R{line[1:]}." in (out / "tiny.md").read_text()
    assert f"R{line[1:]}." in (out / "tiny.html").read_text()
    climbing = check["verdict"] == "still climbing"
    assert any("check-recipe found the baseline still climbing" in w
               for w in _board(out)["warnings"]) == climbing

    # Another recipe (3 epochs, not 2) was never checked in this store.
    longer = tiny.read_text().replace("[recipe]\nepochs = 2", "[recipe]\nepochs = 3")
    (tmp_path / "longer.toml").write_text(longer)
    spec = load(str(tmp_path / "longer.toml"), plugins)
    assert convergence.recorded(spec, plugins, Tracker(uri), cache_dir, "cpu")["verdict"] \
        == "not checked"
    same = load(str(tiny), plugins)
    assert convergence.recorded(same, plugins, Tracker(uri), cache_dir, "cpu") == check


def test_a_recipe_still_climbing_is_a_warning(planned) -> None:
    results = {r.fingerprint: RunResult(r.fingerprint, "finished",
                                        {"top1": 0.6 + 0.01 * r.seed, "train.top1": 0.9})
               for r in planned.students()}
    message = ("still climbing: ×2 epochs gains +1.2 points on validation (95% CI +0.4 to "
               "+2.0); use [recipe] epochs = 4")
    check = {"verdict": "still climbing", "experiment": "tiny-check-recipe", "budget": "×2",
             "epochs": 4, "gain": 1.2, "ci95": [0.4, 2.0], "seeds": 5, "message": message}
    board = leaderboard.build(planned, results, recipe_check=check)
    assert board["warnings"] == [f"kdbench check-recipe found the baseline {message}"]
    text = leaderboard.terminal(board)
    assert ("recipe checked: still climbing (×2 = 4 epochs: +1.20 points on validation, 95% "
            "CI +0.40 to +2.00) at 5 seeds") in text
    assert f"warning: kdbench check-recipe found the baseline {message}" in text
    unsaid = leaderboard.terminal(leaderboard.build(planned, results))  # not looked up
    assert not any(line.startswith("recipe") for line in unsaid.splitlines())


def test_a_decided_recipe_check_outweighs_the_baselines_curves(planned) -> None:
    """Curves that rose 1 point over their last quarter: a warning unless a recipe check
    decided; a converged check silences it and the curves' rise is stated beside it."""
    results = {r.fingerprint: RunResult(r.fingerprint, "finished",
                                        {"top1": 0.6 + 0.01 * r.seed, "train.top1": 0.9,
                                         "val.gain": 0.01})
               for r in planned.students()}
    converged = {"verdict": "converged", "experiment": "tiny-check-recipe", "budget": "×2",
                 "epochs": 4, "gain": 0.2, "ci95": [-0.3, 0.7], "seeds": 30,
                 "message": "converged: ×2 epochs gains +0.2 points on validation"}
    board = leaderboard.build(planned, results, recipe_check=converged)
    assert board["warnings"] == []
    assert ("recipe checked: converged (×2 = 4 epochs: +0.20 points on validation, 95% CI "
            "-0.30 to +0.70) at 30 seeds; the baseline's validation curves rose +1.0 points "
            "over their last quarter, which the check's longer runs outweigh") \
        in leaderboard.terminal(board)
    undecided = {**converged, "verdict": "undecided", "ci95": [-0.5, 1.5], "gain": 0.5}
    for check in (undecided, {"verdict": "not checked", "experiment": "tiny-check-recipe"},
                  None):
        warnings = leaderboard.build(planned, results, recipe_check=check)["warnings"]
        assert [w.split(" (")[0] for w in warnings] == ["the baseline is still climbing"], check
