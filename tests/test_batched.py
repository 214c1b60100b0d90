"""Seeds trained as one stacked model (kdbench.batched) give each run the numbers it has alone.

Tolerance: a stacked run sums in another order inside its grouped kernels, so its numbers
are the unbatched run's up to float32 rounding (eps 1.2e-7 per operation), which grows with
every step. Over the tiny benchmark's 27 steps the loss terms measured here differ by at most
1.3e-7 (relative ~1e-7): the test allows 1e-5, a hundredfold margin that a real difference
(another batch, another initialisation, a missed update: 1e-2 and more) cannot hide in.
An accuracy moves only when a logit's ranking flips: at most one sample of the split.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path

import mlflow
import pytest
import torch
from conftest import TINY

from kdbench import batched, train
from kdbench import sweep as sweeps
from kdbench.cli import main
from kdbench.runs import Group
from kdbench.spec import load

LOSS_RTOL = 1e-5
SEEDS = 3


@pytest.fixture
def planned3(tmp_path: Path, plugins, cache_dir: Path):
    path = tmp_path / "tiny3.toml"
    # Random crops: each run draws its own from its own generator, and the teacher sees them.
    path.write_text(TINY.replace("seeds = 2", f"seeds = {SEEDS}")
                    .replace("num_samples = 600", 'num_samples = 600\naugment = "crop"'))
    spec = replace(load(str(path), plugins), batch_runs=1)
    sweep = sweeps.plan(spec, plugins, cache_dir)
    if not Path(sweep.teacher.job.teacher.checkpoint).is_file():
        assert train.execute(sweep.teacher.job).status == "finished"
    return sweep


def _jobs(sweep, label: str):
    return [r.job for r in sweep.runs if r.label == label]


def _close(plain: dict, stacked: dict, samples: dict[str, int]) -> list[str]:
    """The keys where ``stacked`` is not ``plain`` within the tolerance above."""
    bad = []
    assert plain.keys() == stacked.keys()
    for key, a in plain.items():
        b = stacked[key]
        if isinstance(a, str):
            ok = a == b
        elif key == "loss" or key.startswith("loss."):
            ok = math.isclose(a, b, rel_tol=LOSS_RTOL, abs_tol=1e-7)
        else:
            split = key.split(".")[0] if "." in key else "test"
            ok = abs(a - b) <= 1 / samples.get(split, 1) + 1e-9
        if not ok:
            bad.append(f"{key}: {a} vs {b}")
    return bad


@pytest.mark.parametrize("label", ["baseline", "kd"])
def test_each_stacked_run_matches_its_unbatched_run(planned3, label: str) -> None:
    jobs = _jobs(planned3, label)
    assert len(jobs) == SEEDS
    plain = [train.execute(job) for job in jobs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.func: no batching rule for kl_div yet
        stacked = batched.execute_group([replace(j, engine="stacked") for j in jobs])
    data = train.prepared(jobs[0])
    samples = {"val": len(data.y_val), "train": len(data.y_train), "test": len(data.y_test)}
    for seed, (a, b) in enumerate(zip(plain, stacked, strict=True)):
        assert a.status == b.status == "finished", b.error
        assert len(a.history) == len(b.history) == jobs[0].recipe.epochs
        for row_a, row_b in zip(a.history, b.history, strict=True):
            assert not _close(row_a, row_b, samples), (seed, row_a["epoch"])
        assert not _close(a.metrics, b.metrics, samples), seed
        assert a.student_parameters == b.student_parameters
    # The seeds really differ, so matching each one is not matching a constant.
    assert len({r.history[0]["loss"] for r in stacked}) == SEEDS


STACKED_METHODS = ["rkd", "dist", "pkt", "sp", "cc", "at", "vid"]
"""The other methods that declare ``batchable``: relations of embeddings (RKD, PKT, CC),
of stage maps (SP, AT), of predictions (DIST), and a method with trainable modules of its
own (VID's regressors, stacked with the student). Not: DKD (boolean-mask indexing), KD-SVD
(the signs of a batched SVD differ), NST (agrees only to 1e-3), CRD (an in-place memory
bank), and the methods with warm-up stages or a peer."""


def test_every_batchable_method_matches_its_unbatched_runs(tmp_path, plugins, cache_dir
                                                           ) -> None:
    path = tmp_path / "all.toml"
    path.write_text(TINY.replace("num_samples = 600", 'num_samples = 600\naugment = "crop"')
                    + "".join(f"\n[methods.{m}]\n" for m in STACKED_METHODS))
    sweep = sweeps.plan(replace(load(str(path), plugins), batch_runs=1), plugins, cache_dir)
    if not Path(sweep.teacher.job.teacher.checkpoint).is_file():
        assert train.execute(sweep.teacher.job).status == "finished"
    for label in STACKED_METHODS:
        jobs = [replace(j, recipe=replace(j.recipe, epochs=1)) for j in _jobs(sweep, label)]
        assert batched.method_batchable(train.make_method(jobs[0]))
        plain = [train.execute(job) for job in jobs]
        stacked = batched.execute_group([replace(j, engine="stacked") for j in jobs])
        data = train.prepared(jobs[0])
        samples = {"val": len(data.y_val), "train": len(data.y_train), "test": len(data.y_test)}
        for a, b in zip(plain, stacked, strict=True):
            assert a.status == b.status == "finished", (label, b.error)
            assert not _close(a.history[0], b.history[0], samples), label
            assert not _close(a.metrics, b.metrics, samples), label


def test_stacked_runs_are_bit_identical_whatever_the_group(planned3) -> None:
    """Why the fingerprint records the engine and not the group: the same stacked run gives
    the same bits in a group of three, of two, and alone (beside a dropped twin)."""
    jobs = [replace(j, engine="stacked") for j in _jobs(planned3, "baseline")]
    three = batched.execute_group(jobs)
    two = batched.execute_group(jobs[1:])
    one = batched.execute_group(jobs[:1])
    for a, b in zip(three, one + two, strict=True):
        assert a.history == b.history
        assert a.metrics == b.metrics


def test_the_plan_stacks_small_students_and_the_fingerprint_says_so(plugins, tiny, cache_dir
                                                                   ) -> None:
    spec = load(str(tiny), plugins)
    auto = sweeps.plan(spec, plugins, cache_dir)
    off = sweeps.plan(replace(spec, batch_runs=1), plugins, cache_dir)
    engines = {r.label: r.job.engine for r in auto.runs}
    assert engines == {"teacher": "plain", "baseline": "stacked", "kd": "stacked"}
    assert all(r.job.engine == "plain" for r in off.runs)
    by_key = {(r.label, r.seed): r for r in off.runs}
    for run in auto.students():
        plain = by_key[run.label, run.seed]
        assert run.fingerprint != plain.fingerprint
        assert "batched" in run.code and "batched" not in plain.code
    assert auto.teacher.fingerprint == off.teacher.fingerprint
    members, units = batched.units([r.job for r in auto.students()], 2)
    assert [len(m) for m in members] == [2, 2]
    assert all(isinstance(u, Group) for u in units)


def test_methods_that_cannot_stack_train_one_by_one(plugins, tiny, cache_dir) -> None:
    """FitNet has a hint stage, DML a peer teacher: no stacking, whatever --batch-runs says."""
    text = tiny.read_text() + "\n[methods.fitnet]\nhint_epochs = 1\n[methods.dml]\n"
    tiny.write_text(text.replace("epochs = 2\n", "epochs = 3\n"))
    sweep = sweeps.plan(replace(load(str(tiny), plugins), batch_runs=2), plugins, cache_dir)
    engines = {r.label: r.job.engine for r in sweep.students()}
    assert engines == {"baseline": "stacked", "kd": "stacked", "fitnet": "plain",
                       "dml": "plain"}


def test_kdbench_run_stacks_seeds_and_logs_each_run(tiny, tmp_path, capsys) -> None:
    """From the command line: a stacked sweep logs one MLflow run per seed, a second run
    reuses them all, and --batch-runs off plans other fingerprints (it retrains)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["run", str(tiny), "--out", str(tmp_path / "out"), "--tracking-uri", uri,
            "--executor", "serial"]
    assert main([*args, "--batch-runs", "2"]) == 0
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    students = [r for r in runs if r.data.tags.get("kdbench.role") in ("baseline", "method")]
    assert len(students) == 4
    assert all(r.info.status == "FINISHED" and "top1" in r.data.metrics for r in students)
    assert all("kdbench.code.batched" in r.data.tags for r in students)
    assert len({r.data.tags["kdbench.fingerprint"] for r in students}) == 4
    capsys.readouterr()
    assert main([*args, "--batch-runs", "2"]) == 0
    assert "5 reused from MLflow, 0 to train" in capsys.readouterr().err


def test_batch_runs_flag_is_checked(tiny, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(tiny), "--batch-runs", "0"])
    assert exit_.value.code == 2
    assert "--batch-runs" in capsys.readouterr().err


def test_a_run_that_diverges_fails_alone(planned3, monkeypatch) -> None:
    """A non-finite loss in one run of a group fails that run with the usual message; the
    others train on to the numbers they have alone."""
    jobs = [replace(j, engine="stacked") for j in _jobs(planned3, "baseline")]
    alone = batched.execute_group([jobs[0], jobs[2]])
    build = train.build_model

    def poisoned(component, data):
        model = build(component, data)
        if component == jobs[0].model:
            if poisoned.calls == 1:  # the second run's student: a nan weight
                with torch.no_grad():
                    next(model.parameters()).view(-1)[0] = float("nan")
            poisoned.calls += 1
        return model

    poisoned.calls = 0
    monkeypatch.setattr(train, "build_model", poisoned)
    results = batched.execute_group(jobs)
    assert results[1].status == "failed"
    assert "non-finite loss term 'ce'" in results[1].error
    assert "before any update" in results[1].error
    for a, b in zip([results[0], results[2]], alone, strict=True):
        assert a.status == "finished"
        assert a.history == b.history
