"""What the statistics mean, end to end: the correction's family, seed lists that are not
0..N-1 under ``--until-decided``, and finished runs whose metric is not a number."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from kdbench.cli import main


def _board(out: Path) -> dict:
    return json.loads((out / "tiny.json").read_text())


def test_until_decided_honours_the_benchmarks_seed_list(tiny: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    tiny.write_text(tiny.read_text().replace("seeds = 2", "seeds = [5, 3]"))
    out = tmp_path / "o"
    assert main(["run", str(tiny), "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}",
                 "--out", str(out), "--until-decided", "--max-seeds", "4"]) == 0
    err = capsys.readouterr().err
    board = _board(out)
    (row,) = board["rows"]
    if "look 2/2" in err:  # the file's seeds first, then the smallest unused ones
        assert sorted(board["baseline"]["seeds"]) == [0, 1, 3, 5]
        assert sorted(row["seeds"]) == [0, 1, 3, 5]
    else:
        assert sorted(board["baseline"]["seeds"]) == sorted(row["seeds"]) == [3, 5]
        assert row["verdict"] != "no evidence"
    assert row["delta"] is not None  # paired with the baseline on the same seeds


def test_seed_order_starts_with_the_files_seeds() -> None:
    from kdbench.session import seed_order

    assert seed_order((10, 11, 12), 5) == (10, 11, 12, 0, 1)
    assert seed_order((0, 1, 7), 6) == (0, 1, 7, 2, 3, 4)
    assert seed_order((2, 0), 2) == (2, 0)


def test_methods_keeps_the_benchmarks_correction_family(tiny: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    tiny.write_text(tiny.read_text() + '\n[methods.kd-T1]\nmethod = "kd"\nT = 1.0\n')
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    out = tmp_path / "o"
    assert main(["run", str(tiny), "--tracking-uri", uri, "--out", str(out),
                 "--methods", "kd"]) == 0
    printed = capsys.readouterr()
    assert "holm-corrected over 2 methods (the benchmark's; 1 shown)" in printed.out
    board = _board(out)
    (row,) = board["rows"]
    assert board["family"] == 2 and board["benchmark_family"] == 2
    p = row["p"]["paired_t"]
    if p is not None:  # Holm over the file's two rows, the missing one counted at p = 1
        assert row["p_holm"] == pytest.approx(min(1.0, 2 * p))
        # the power figure is planned at the level the verdict uses, not at 0.05
        assert row["seeds_needed"]["alpha"] == pytest.approx(0.025)

    assert main(["leaderboard", str(tiny), "--tracking-uri", uri, "--out", str(out),
                 "--methods", "kd", "--family", "shown"]) == 0
    printed = capsys.readouterr()
    assert "--family shown" in printed.err and "not the benchmark's 2" in printed.err
    assert "ONLY, not the benchmark's 2" in printed.out
    shown = _board(out)
    assert shown["family"] == 1
    if p is not None:
        assert shown["rows"][0]["p_holm"] == pytest.approx(p)


def test_a_finished_run_with_a_nan_metric_is_listed_as_failed(tiny: Path, tmp_path: Path) -> None:
    from kdbench import leaderboard, sweep
    from kdbench.plugins import Plugins
    from kdbench.runs import RunResult
    from kdbench.spec import load

    plugins = Plugins.load()
    planned = sweep.plan(load(str(tiny), plugins), plugins, tmp_path / "cache")
    results = {}
    for i, run in enumerate(planned.runs):
        value = math.nan if (run.label, run.seed) == ("kd", 1) else 0.5 + 0.01 * i
        results[run.fingerprint] = RunResult(run.fingerprint, "finished", {"top1": value})
    board = leaderboard.build(planned, results)
    (row,) = board["rows"]
    assert row["seeds"] == [0] and len(board["failed"]) == 1
    assert "top1 = nan" in board["failed"][0]["error"]
    assert "failed: kd seed 1" in leaderboard.terminal(board)
