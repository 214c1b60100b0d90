"""The Python API, as a notebook uses it: a whole benchmark run, its board as data, the
stored board read back, a rerun that trains nothing, and a new store that reuses the cached
teacher."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import kdbench
from kdbench.errors import KdbenchError


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def _runs(uri: str, role: str) -> list:
    client = _client(uri)
    experiment = client.get_experiment_by_name("tiny")
    return client.search_runs([experiment.experiment_id], f"tags.`kdbench.role` = '{role}'")


def test_a_benchmark_through_the_api(tiny: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    cache = tmp_path / "cache"  # its own: the teacher trains here, and is kept for store B
    store_a = f"sqlite:///{tmp_path / 'a.db'}"

    planned = kdbench.plan(tiny, cache_dir=cache)
    assert [(r.label, r.seed) for r in planned.runs] == [
        ("teacher", 0), ("baseline", 0), ("baseline", 1), ("kd", 0), ("kd", 1)]

    result = kdbench.run(tiny, tracking_uri=store_a, cache_dir=cache, out=None, progress=False)
    assert (result.trained, result.reused, result.failed, result.files) == (5, 0, (), ())
    board = result.board
    assert isinstance(board, kdbench.Board) and board.benchmark == "tiny"
    kd = board.row("kd")
    assert kd.params == {"T": 4.0, "alpha": 0.9} and kd.seeds == (0, 1)
    assert kd.mean == pytest.approx(sum(kd.values) / 2)
    assert kd.verdict in ("better", "worse", "no evidence") and "paired_t" in kd.p
    assert kd.delta == pytest.approx(kd.mean - board.baseline.mean)
    with pytest.raises(KeyError, match="rows: kd"):
        board.row("fitnet")

    # Per-seed values are the runs' own metrics in MLflow, seed by seed.
    per_seed = board.per_seed()
    assert set(per_seed) == {"baseline", "kd"}
    for run in [*_runs(store_a, "baseline"), *_runs(store_a, "method")]:
        label, seed = run.data.tags["kdbench.label"], int(run.data.tags["kdbench.seed"])
        # MLflow holds percent for the UI and the exact fraction beside it.
        assert per_seed[label][seed] == pytest.approx(100 * run.data.metrics["fraction.top1"])
    records = {(r.label, r.seed): r for r in result.runs}
    assert 100 * records["kd", 1].metrics["top1"] == pytest.approx(per_seed["kd"][1])
    assert records["kd", 1].run_id
    (sweep,) = _runs(store_a, "sweep")
    assert sweep.info.run_id == result.sweep_run_id and sweep.info.status == "FINISHED"
    assert {a.path for a in _client(store_a).list_artifacts(sweep.info.run_id)} >= {"tiny.json"}

    # The stored board, read back without training, is the same board.
    stored = kdbench.read_board(tiny, tracking_uri=store_a, cache_dir=cache)
    assert stored.sweep_run_id is None and stored.missing == 0 and stored.trained == 0
    assert stored.board.per_seed() == per_seed and stored.board.rows == board.rows

    # A second call trains nothing; its files read back as the same board.
    again = kdbench.run(tiny, tracking_uri=store_a, cache_dir=cache, out=tmp_path / "out",
                        progress=False)
    assert (again.trained, again.reused) == (0, 5)
    assert kdbench.Board.load(tmp_path / "out" / "tiny.json").per_seed() == per_seed
    assert [r["method"] for r in again.board.records()] == ["teacher", "baseline", "kd"]
    capsys.readouterr()

    # A new store with the same cache: the teacher's run is copied in, not trained again.
    store_b = f"sqlite:///{tmp_path / 'b.db'}"
    other = kdbench.run(tiny, seeds=1, tracking_uri=store_b, cache_dir=cache, out=None,
                        progress=False)
    assert "logged here, not retrained" in capsys.readouterr().err
    teacher = next(r for r in other.runs if r.role == "teacher")
    assert teacher.reused and other.trained == 2  # the baseline and kd on seed 0
    (copied,) = _runs(store_b, "teacher")
    (original,) = _runs(store_a, "teacher")
    assert copied.data.tags["kdbench.copied_from"].endswith(".pt.run.json")
    # Its numbers, its training time and its curves are the original run's.
    for key in ("top1", "val.top1", "seconds"):
        assert copied.data.metrics[key] == original.data.metrics[key]
    history = [(m.step, m.value) for m in _client(store_a).get_metric_history(
        original.info.run_id, "val.top1")]
    assert history == [(m.step, m.value) for m in _client(store_b).get_metric_history(
        copied.info.run_id, "val.top1")] and len(history) == 4
    assert [a.path for a in _client(store_b).list_artifacts(copied.info.run_id)] == \
        [f"{copied.data.tags['kdbench.fingerprint']}.pt"]
    assert other.board.teacher.value == board.teacher.value

    # --fresh teacher trains it after all.
    fresh = kdbench.run(tiny, seeds=1, tracking_uri=store_b, cache_dir=cache, out=None,
                        progress=False, fresh=["teacher"])
    teacher = next(r for r in fresh.runs if r.role == "teacher")
    assert not teacher.reused and teacher.status == "finished" and fresh.trained == 1
    assert "kdbench.copied_from" not in _client(store_b).get_run(teacher.run_id).data.tags


def test_bad_options_raise_the_command_lines_error(tiny: Path) -> None:
    with pytest.raises(KdbenchError, match="--fresh nope: no row named nope"):
        kdbench.plan(tiny, fresh=["nope"])
    with pytest.raises(KdbenchError, match="needs --max-seeds"):
        kdbench.plan(tiny, until_decided=True)


def test_importing_the_cli_loads_no_heavy_library() -> None:
    # A spawned worker imports the console script's module again as __mp_main__: it must
    # cost nothing, and `kdbench --help` must answer at once.
    code = ("import sys, kdbench, kdbench.cli, kdbench.api, kdbench.board; "
            "print(sorted(m for m in ('torch', 'scipy', 'mlflow', 'matplotlib', 'sklearn') "
            "if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
    assert shown.stdout.strip() == "[]"
