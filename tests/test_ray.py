"""The Ray executor on a real local Ray cluster: a head started by ``ray start --head`` in a
subprocess on 127.0.0.1, a sweep through the command line, and the MLflow store checked."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
from ray_head import ray_head

from kdbench.cli import main

ray = pytest.importorskip("ray", reason="the ray executor's tests need Ray (pip install ray)")


@pytest.fixture(scope="module")
def cluster():
    """``HOST:PORT`` of a one-CPU Ray head on 127.0.0.1 whose workers import this kdbench."""
    with ray_head(cpus=1) as address:
        yield address


def test_a_sweep_runs_on_a_ray_cluster(cluster: str, tiny: Path, tmp_path: Path, capsys) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["run", str(tiny), "--out", str(tmp_path / "out"), "--tracking-uri", uri,
            "--executor", "ray", "--address", cluster]
    assert main(args) == 0, capsys.readouterr().err
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    by_role: dict[str, list] = {}
    for run in runs:
        by_role.setdefault(run.data.tags.get("kdbench.role", "sweep"), []).append(run)
    assert len(by_role["teacher"]) == 1
    assert len(by_role["baseline"]) == len(by_role["method"]) == 2
    for run in by_role["teacher"] + by_role["baseline"] + by_role["method"]:
        assert run.info.status == "FINISHED"
        assert 0 <= run.data.metrics["top1"] <= 100  # in percent, like the board
        assert run.data.metrics["fraction.top1"] <= 1
    assert by_role["sweep"][0].data.params["executor"] == "ray"
    assert (tmp_path / "out" / "tiny.md").is_file()
    # The workers ran elsewhere: the driver connected to the cluster, not a Ray of its own.
    assert ray.is_initialized()
    assert ray.get_runtime_context().gcs_address.endswith(":" + cluster.split(":")[1])


def test_an_address_without_a_cluster_executor_is_refused(tiny: Path, capsys) -> None:
    assert main(["run", str(tiny), "--executor", "serial", "--address", "127.0.0.1:1"]) == 2
    assert "--address: executor 'serial' takes no address" in capsys.readouterr().err


def test_a_dead_worker_fails_only_its_run(cluster: str, planned) -> None:
    """A worker killed mid-run (here it exits as the run starts) fails that run; the next
    run, on a fresh worker, finishes."""
    from kdbench.ray_executor import Ray, RayParams

    class Dies:  # defined here so that Ray ships it by value to the worker
        device = "cpu"

        @property
        def threads(self) -> int:
            os._exit(1)

    job = next(r.job for r in planned.runs if r.role == "baseline")
    job = type(job)(**{**job.__dict__, "engine": "plain"})
    events: list = []
    results = dict(Ray(RayParams(address=cluster)).map([Dies(), job],
                                                       lambda *e: events.append(e)))
    assert results[0].status == "failed"
    assert results[0].error.startswith("ray worker failed: ")
    assert results[1].status == "finished", results[1].error
    assert any(e[0] == 1 and e[1] == "train" for e in events)  # progress came back
