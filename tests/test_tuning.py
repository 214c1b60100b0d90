"""``kdbench tune``: equal budgets on the validation split, nested MLflow runs, resume after a
kill, a tuned board that states its budget, and a test split no trial reads."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import types
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from kdbench_methods.dkd import DKDParams
from kdbench_methods.kd import KDParams
from kdbench_zoo import mnist1d

import kdbench
from kdbench import batched, train, tuning
from kdbench.cli import main
from kdbench.data import Dataset
from kdbench.executors import Serial
from kdbench.params import Choice, LogUniform, Uniform, search_space
from kdbench.plugins import Plugins
from kdbench.runs import Job, RunResult
from kdbench.spec import Recipe, load
from kdbench.tracking import Tracker


def _runs(uri: str, role: str) -> list:
    client = Tracker(uri).client
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.`kdbench.role` = '{role}'",
                              max_results=1000)


# The search spaces -------------------------------------------------------------------

def test_search_spaces_resolve_around_the_rows_values() -> None:
    assert search_space(KDParams) == {"T": LogUniform(1.0, 16.0), "alpha": Uniform(0.0, 1.0)}
    # Loss weights around the row's value, not the class default; a term switched off stays off.
    space = search_space(DKDParams, {"beta": 2.0, "alpha": 0.0})
    assert space["beta"] == LogUniform(0.2, 20.0) and "alpha" not in space
    recipe = search_space(Recipe, Recipe(epochs=2, lr=0.01))
    assert recipe["epochs"] == Choice((1, 2, 4))
    assert recipe["lr"].low == pytest.approx(0.001) and recipe["lr"].high == pytest.approx(0.1)
    assert 0.0 in recipe["weight_decay"].values
    assert search_space(Recipe, Recipe(epochs=1))["epochs"] == Choice((1, 2))


# End to end ---------------------------------------------------------------------------

def test_tune_end_to_end_nests_trials_and_states_its_budget(tiny: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "out"
    assert main(["tune", str(tiny), "--trials", "2", "--tracking-uri", uri, "--out",
                 str(out)]) == 0
    printed = capsys.readouterr().out
    assert "settings: tuned, 2 trials each on 2 seeds (validation)" in printed
    board = json.loads((out / "tiny-tuned.json").read_text())
    assert board["tuned"] and board["tuning"] == "tuned, 2 trials each on 2 seeds (validation)"
    assert (tmp_path / "optuna.db").is_file()  # next to the MLflow store

    # Per row a tuning run; its trials nested under it; each trial's runs under the trial.
    rows = {r.data.tags["kdbench.label"]: r for r in _runs(uri, "tuning")}
    assert set(rows) == {"baseline", "kd"}
    trials = _runs(uri, "trial")
    assert len(trials) == 4
    for trial in trials:
        assert trial.info.status == "FINISHED"
        score = trial.data.metrics  # in percent like the board, the fraction beside it
        assert score["score"] == round(100 * score["fraction.score"], 4)
        assert 0 < score["fraction.score"] <= 1
        assert trial.data.tags["mlflow.parentRunId"] == \
            rows[trial.data.tags["kdbench.label"]].info.run_id
    client = Tracker(uri).client
    for trial in trials:
        children = client.search_runs(
            [trial.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{trial.info.run_id}'")
        assert sorted(c.data.params["seed"] for c in children) == ["1000", "1001"]
        for child in children:  # validation only: no test metric was ever computed
            assert "val.top1" in child.data.metrics and "top1" not in child.data.metrics
    assert sorted(rows["kd"].data.params) >= ["best.T", "best.alpha"]

    # The tuned file reruns what was compared, and its row carries the tuned setting.
    spec = load(str(out / "tiny-tuned.toml"), Plugins.load())
    assert spec.tuning == board["tuning"] and spec.seeds == (0, 1)
    kd = next(r for r in board["rows"] if r["method"] == "kd")
    assert spec.methods[0].params == kd["params"]
    assert spec.methods[0].params["T"] == float(rows["kd"].data.params["best.T"])
    assert main(["run", str(out / "tiny-tuned.toml"), "--tracking-uri", uri, "--out",
                 str(tmp_path / "rerun")]) == 0
    rerun = json.loads((tmp_path / "rerun" / "tiny-tuned.json").read_text())
    assert rerun["rows"][0]["values"] == kd["values"]  # reused, not retrained

    # The untuned board says so, and keeps its own files.
    assert main(["run", str(tiny), "--tracking-uri", uri, "--out", str(out)]) == 0
    assert "settings: paper defaults" in capsys.readouterr().out
    assert json.loads((out / "tiny.json").read_text())["tuning"].startswith("paper defaults")


def test_tuning_seeds_must_not_be_evaluation_seeds(tiny: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    tiny.write_text(tiny.read_text().replace("seeds = 2", "seeds = [0, 1001]"))
    assert main(["tune", str(tiny), "--trials", "1", "--out", str(tmp_path)]) == 2
    assert "overlap the benchmark's evaluation seeds (1001)" in capsys.readouterr().err


# Resume after a kill -------------------------------------------------------------------

def _trials(db: Path) -> list[tuple[str, int, str, str | None]]:
    """``(study, number, state, datetime_complete)`` of every trial in the Optuna storage."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute(
                "SELECT s.study_name, t.number, t.state, t.datetime_complete FROM trials t "
                "JOIN studies s ON s.study_id = t.study_id").fetchall()
    except sqlite3.OperationalError:  # tables not created yet, or locked for a moment
        return []


def _running_with_a_run(db: Path) -> bool:
    """Whether a RUNNING trial has noted its MLflow run (``kdbench.mlflow_run``)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return bool(con.execute(
                "SELECT 1 FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
                "WHERE t.state = 'RUNNING' AND a.key = 'kdbench.mlflow_run'").fetchone())
    except sqlite3.OperationalError:
        return False


def test_tune_resumes_after_sigkill(tiny: Path, tmp_path: Path) -> None:
    # Longer runs than the tiny default, so that the kill lands in the middle of a trial.
    tiny.write_text(tiny.read_text().replace("[recipe]\nepochs = 2", "[recipe]\nepochs = 8"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    db = tmp_path / "optuna.db"
    command = [sys.executable, "-m", "kdbench.cli", "tune", str(tiny), "--trials", "3",
               "--tracking-uri", uri, "--out", str(tmp_path / "out")]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            # Kill once a trial is complete and another is running with its MLflow run opened
            # (a kill before that leaves no MLflow run to close, and the assertions below
            # count the interrupted trials' runs).
            states = [t[2] for t in _trials(db)]
            if "COMPLETE" in states and _running_with_a_run(db):
                break
            time.sleep(0.05)
        assert process.poll() is None, "the tuning ended before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    before = {(s, n): done for s, n, state, done in _trials(db) if state == "COMPLETE"}
    running = {(s, n) for s, n, state, _ in _trials(db) if state == "RUNNING"}
    assert before and running

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = _trials(db)
    complete = [(s, n) for s, n, state, _ in after if state == "COMPLETE"]
    studies = {s for s, *_ in after}
    assert len(studies) == 2  # baseline and kd, one study each
    for study in studies:
        assert sum(1 for s, _ in complete if s == study) == 3
    # Finished trials were kept as they were, not redone; the interrupted one failed.
    done = {(s, n): d for s, n, state, d in after if state == "COMPLETE"}
    assert all(done[key] == when for key, when in before.items())
    assert all(state == "FAIL" for s, n, state, _ in after if (s, n) in running)
    # In MLflow too: one finished trial run per counted trial (none redone), and the
    # interrupted trial's run is closed as killed, not left running.
    statuses = sorted(r.info.status for r in _runs(uri, "trial"))
    assert statuses == ["FINISHED"] * 6 + ["KILLED"] * len(running)
    rows = _runs(uri, "tuning")  # reopened on resume, not started again
    assert len(rows) == 2 and all(r.info.status == "FINISHED" for r in rows)
    assert "tuned, 3 trials each" in rerun.stdout


# The test split is never read ---------------------------------------------------------

class Watched(torch.Tensor):
    """A test split that records every read with the job being run."""

    reads: ClassVar[list[Job | None]] = []
    current: ClassVar[list[Job | None]] = [None]

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        Watched.reads.append(Watched.current[0])
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


def guarded(params: mnist1d.MNIST1DParams, root: Path) -> Dataset:
    data = mnist1d.load(params, root)
    return replace(data, x_test=data.x_test.as_subclass(Watched),
                   y_test=data.y_test.as_subclass(Watched))


@kdbench.hookimpl
def kdbench_datasets(register: Any) -> None:
    register("guarded-mnist1d", guarded, params=mnist1d.MNIST1DParams)


def test_tuning_never_reads_the_test_split(tiny: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    plugins = Plugins.load(strict=True, extra=[("guard", types.SimpleNamespace(
        __name__="guard", kdbench_datasets=kdbench_datasets))])
    monkeypatch.setattr(train, "plugins", lambda: plugins)
    jobs = []
    execute = train.execute

    def watched(job: Job, emit: Any = None) -> RunResult:
        jobs.append(job)
        Watched.current[0] = job
        try:
            return execute(job, emit)
        finally:
            Watched.current[0] = None

    monkeypatch.setattr(train, "execute", watched)
    execute_group = batched.execute_group

    def watched_group(group: list[Job], emit: Any = None) -> list[RunResult]:
        # Seeds stacked into one model (kdbench.batched) train without train.execute.
        jobs.extend(group)
        Watched.current[0] = group[0]
        try:
            return execute_group(group, emit)
        finally:
            Watched.current[0] = None

    monkeypatch.setattr(batched, "execute_group", watched_group)
    Watched.reads.clear()
    tiny.write_text(tiny.read_text().replace('name = "mnist1d"', 'name = "guarded-mnist1d"'))
    spec = load(str(tiny), plugins)
    settings = tuning.Settings(2, (1000, 1001), f"sqlite:///{tmp_path / 'optuna.db'}")
    result = tuning.tune(spec, plugins, Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}"),
                         Serial(), settings, Path(os.environ["KDBENCH_CACHE"]))

    students = [j for j in jobs if j.role != "teacher"]
    assert len(students) == 2 * 2 * 2  # two rows, two trials each, two seeds each
    assert all(not j.evaluate_test for j in students)
    assert not [job for job in Watched.reads if job is None or job.role != "teacher"]
    # The guard does see reads: the teacher's one reading of the test split, at its end.
    assert any(job is not None and job.role == "teacher" for job in Watched.reads)
    assert all(len(row.trials) == 2 and all(t.value is not None for t in row.trials)
               for row in result.rows)


def test_a_grid_row_keeps_its_grid_values(tiny: Path, tmp_path: Path) -> None:
    tiny.write_text(tiny.read_text().replace("T = 4.0", "T = [1, 4]"))
    plugins = Plugins.load(strict=True)
    spec = load(str(tiny), plugins)
    settings = tuning.Settings(1, (1000,), f"sqlite:///{tmp_path / 'optuna.db'}")
    result = tuning.tune(spec, plugins, Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}"),
                         Serial(), settings, Path(os.environ["KDBENCH_CACHE"]))
    rows = {row.label: row for row in result.rows}
    assert set(rows["kd[T=1]"].space) == set(rows["kd[T=4]"].space) == {"alpha"}
    assert [m.params["T"] for m in result.spec.methods] == [1.0, 4.0]
