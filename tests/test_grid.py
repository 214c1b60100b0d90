"""Parameter grids: a list for a scalar parameter gives one leaderboard row per value."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdbench import grid
from kdbench.errors import SpecError
from kdbench.spec import load


def _bench(tiny: Path, methods: str) -> Path:
    text = tiny.read_text().split("[methods.kd]")[0] + methods
    tiny.write_text(text)
    return tiny


def test_a_list_expands_to_one_row_per_value(tiny, plugins):
    spec = load(str(_bench(tiny, "[methods.kd]\nT = [1, 2.5, 4]\nalpha = 0.5\n")), plugins)
    assert [m.label for m in spec.methods] == ["kd[T=1]", "kd[T=2.5]", "kd[T=4]"]
    assert [m.params for m in spec.methods] == [{"T": 1.0, "alpha": 0.5}, {"T": 2.5, "alpha": 0.5},
                                                {"T": 4.0, "alpha": 0.5}]
    assert [m.grid for m in spec.methods] == [{"T": 1.0}, {"T": 2.5}, {"T": 4.0}]
    assert {m.table for m in spec.methods} == {"kd"}


def test_several_lists_give_the_product_in_key_order(tiny, plugins):
    spec = load(str(_bench(tiny, "[methods.kd]\nalpha = [0.5, 0.9]\nT = [1, 4]\n"
                                 "[methods.plain]\nmethod = \"kd\"\n")), plugins)
    assert [m.label for m in spec.methods] == [
        "kd[alpha=0.5 T=1]", "kd[alpha=0.5 T=4]", "kd[alpha=0.9 T=1]", "kd[alpha=0.9 T=4]",
        "plain"]
    assert spec.methods[-1].grid == {}


def test_a_list_typed_parameter_is_not_a_grid(tiny, plugins):
    # [recipe] milestones-like parameters: a tuple field takes the list as one value.
    from kdbench.spec import Recipe

    assert grid.grid_keys({"milestones": [10, 20], "epochs": [1, 2]}, Recipe) == ["epochs"]
    assert grid.takes_list(tuple[int, ...]) and not grid.takes_list(float)
    assert grid.takes_list(tuple[int, ...] | None) and not grid.takes_list(float | None)


@pytest.mark.parametrize(("methods", "message"), [
    ("[methods.kd]\nT = [1, -2]\n", "[methods.kd] T must be > 0, got -2.0"),
    ("[methods.kd]\nalpha = [0.5, 1.5]\n", "[methods.kd] alpha must be in [0, 1], got 1.5"),
    ("[methods.kd]\nT = [1, \"x\"]\n", "[methods.kd] T must be float, got 'x'"),
    ("[methods.kd]\nT = []\n", "T = [] names no value"),
    ("[methods.kd]\nT = [1, 1.0]\n", "T lists 1 twice"),
    ("[methods.kd]\nT = [1, 2]\n[methods.\"kd[T=1]\"]\nmethod = \"kd\"\n",
     "row 'kd[T=1]' is named twice"),
])
def test_each_value_is_checked_like_a_single_one(tiny, plugins, methods, message):
    with pytest.raises(SpecError) as error:
        load(str(_bench(tiny, methods)), plugins)
    assert message in str(error.value)


def test_methods_picks_a_whole_grid_or_one_row(tiny, plugins):
    spec = load(str(_bench(tiny, "[methods.kd]\nT = [1, 4]\n[methods.other]\nmethod = \"kd\"\n")),
                plugins)
    assert [m.label for m in spec.with_options(methods=["kd"]).methods] == ["kd[T=1]", "kd[T=4]"]
    assert [m.label for m in spec.with_options(methods=["kd[T=4]", "other"]).methods] == \
        ["kd[T=4]", "other"]
    assert spec.with_options(methods=["kd"]).family == 3  # the correction still counts every row
    with pytest.raises(SpecError, match="picks row 'kd\\[T=1\\]' twice"):
        spec.with_options(methods=["kd", "kd[T=1]"])
    with pytest.raises(SpecError, match="is not a method"):
        spec.with_options(methods=["kd[T=2]"])
    # --fresh takes a grid's name too.
    from kdbench.api import fresh_rows as _fresh_rows

    assert _fresh_rows("kd,baseline", spec) == {"kd[T=1]", "kd[T=4]", "baseline"}
    assert _fresh_rows("kd[T=4]", spec) == {"kd[T=4]"}


def test_compact_numbers():
    assert [grid.compact(v) for v in (1.0, 0.5, 1e-05, 100.0, 3, True, "mse")] == \
        ["1", "0.5", "1e-05", "100", "3", "true", "mse"]


def test_a_two_value_grid_gives_two_rows_end_to_end(tiny, tmp_path):
    bench = _bench(tiny, "[methods.kd]\nT = [1, 4]\n")
    text = bench.read_text().replace("seeds = 2", "seeds = 1").replace("epochs = 4", "epochs = 1")
    bench.write_text(text.replace("[recipe]\nepochs = 2", "[recipe]\nepochs = 1"))
    out = tmp_path / "board"
    done = subprocess.run(
        [sys.executable, "-m", "kdbench.cli", "run", str(bench), "--out", str(out),
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--device", "cpu",
         "--methods", "kd"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "kd[T=1]" in done.stdout and "kd[T=4]" in done.stdout
    board = json.loads((out / "tiny.json").read_text())
    rows = {r["method"]: r for r in board["rows"]}
    assert set(rows) == {"kd[T=1]", "kd[T=4]"}
    assert rows["kd[T=1]"]["grid"] == {"T": 1.0} and rows["kd[T=4]"]["params"]["T"] == 4.0
    assert rows["kd[T=1]"]["values"] != rows["kd[T=4]"]["values"]
