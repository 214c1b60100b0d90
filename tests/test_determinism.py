"""A result is a function of its fingerprint: the same runs launched under different pool
sizes give bit-identical numbers, and a run trains with its own thread count whoever runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_contract import broken, broken_site  # noqa: F401 (fixtures)

from kdbench import sweep as sweeps
from kdbench import train
from kdbench.spec import load

TIMINGS = {"seconds"}
"""Metrics that measure the launch, not the result."""


def _run(tiny: Path, workers: int, root: Path) -> tuple[dict, dict]:
    """``kdbench run`` on the process executor with ``workers`` workers, in a fresh process
    with its own MLflow store; the JSON board and, by fingerprint, every metric's history."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{root / f'ml{workers}.db'}"
    out = root / f"out{workers}"
    ran = subprocess.run([sys.executable, "-m", "kdbench.cli", "run", str(tiny), "--executor",
                          "process", "--workers", str(workers), "--tracking-uri", uri, "--out",
                          str(out)], cwd=root, env=os.environ, capture_output=True, text=True,
                         timeout=600)
    assert ran.returncode == 0, ran.stderr
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    histories = {}
    for run in client.search_runs([experiment.experiment_id]):
        if run.data.tags["kdbench.role"] == "sweep":
            continue
        assert run.info.status == "FINISHED"
        histories[run.data.tags["kdbench.fingerprint"]] = {
            key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
            for key in run.data.metrics if key not in TIMINGS}
    return json.loads((out / "tiny.json").read_text()), histories


def test_one_worker_and_two_give_bit_identical_results(tiny: Path, tmp_path: Path) -> None:
    board1, runs1 = _run(tiny, 1, tmp_path)
    board2, runs2 = _run(tiny, 2, tmp_path)
    # The teacher, two baselines and two kd runs, with losses (continuous, so they catch a
    # change in summation order that accuracy on 120 samples would round away).
    assert len(runs1) == 5
    assert all({"loss.ce", "top1"} <= set(metrics) for metrics in runs1.values())
    assert runs1 == runs2
    assert board1["teacher"] == board2["teacher"]
    assert board1["baseline"]["values"] == board2["baseline"]["values"]
    assert [r["values"] for r in board1["rows"]] == [r["values"] for r in board2["rows"]]


@pytest.mark.usefixtures("broken")
def test_a_run_trains_with_its_own_threads_and_gives_them_back(tiny: Path, cache_dir: Path) -> None:
    spec = load(str(tiny), train.plugins())
    planned = sweeps.plan(replace(spec, methods=()), train.plugins(), cache_dir)
    if not Path(planned.teacher.job.teacher.checkpoint).is_file():
        assert train.execute(planned.teacher.job).status == "finished"
    baseline = next(r for r in planned.runs if r.role == "baseline").job
    probe = replace(baseline, role="method", method="reports-threads")
    before = torch.get_num_threads()
    try:
        for caller, threads in ((2, 1), (1, 2)):
            torch.set_num_threads(caller)
            result = train.execute(replace(probe, threads=threads))
            assert result.status == "finished", result.error
            # The method logged torch's thread count, inside the run, as a constant term.
            assert {row["loss.threads"] for row in result.history} == {float(threads)}
            assert torch.get_num_threads() == caller
    finally:
        torch.set_num_threads(before)
