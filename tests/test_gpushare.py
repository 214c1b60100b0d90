"""Several runs per GPU (kdbench.gpushare): how many workers, which GPU each real worker
process is started on, and the Ray executor's share of a GPU. No GPU here: the worker's
environment is read from the real spawned process (/proc/PID/environ); nothing is timed."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from kdbench import executors, gpushare
from kdbench.errors import KdbenchError
from kdbench.plugins import Plugins
from kdbench.spec import Component, load


def test_visible_gpus_follow_cuda_visible_devices() -> None:
    assert gpushare.visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 3"}) == ("2", "3")
    assert gpushare.visible_gpus({"CUDA_VISIBLE_DEVICES": "MIG-a,MIG-b"}) == ("MIG-a", "MIG-b")
    assert gpushare.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == ()
    assert gpushare.visible_gpus({}, count=3) == ("0", "1", "2")


def test_runs_per_gpu_from_the_flag_or_a_memory_budget() -> None:
    assert gpushare.runs_per_gpu() == 1
    assert gpushare.runs_per_gpu(4, run_memory_gib=50, gpu_memory_gib=80) == 4
    assert gpushare.runs_per_gpu(0, run_memory_gib=10, gpu_memory_gib=139.8) == 13
    assert gpushare.runs_per_gpu(0, run_memory_gib=100, gpu_memory_gib=80) == 1


def test_workers_are_assigned_round_robin() -> None:
    assert gpushare.assignment(5, ("0", "1")) == ["0", "1", "0", "1", "0"]
    assert gpushare.assignment(2, ()) == [None, None]


def _spec(tiny: Path, plugins: Plugins, executor: str):
    from dataclasses import replace

    return replace(load(str(tiny), plugins), executor=Component(executor, {}))


def test_the_pool_on_a_gpu_runs_n_workers_per_visible_gpu(tiny: Path, plugins: Plugins,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    spec = _spec(tiny, plugins, "process")
    pool = executors.configured(plugins, spec, device="cuda", runs_per_gpu=3)
    assert (pool.workers, pool.devices) == (6, ("3", "5"))
    one = executors.configured(plugins, spec, device="cuda")  # the default: one per GPU
    assert (one.workers, one.devices) == (2, ("3", "5"))
    cpu = executors.configured(plugins, spec, workers=2)
    assert (cpu.workers, cpu.devices) == (2, ())
    with pytest.raises(KdbenchError, match="on a GPU give --runs-per-gpu"):
        executors.configured(plugins, spec, workers=4, device="cuda")
    with pytest.raises(KdbenchError, match="use --workers N"):
        executors.configured(plugins, spec, device="cpu", runs_per_gpu=2)
    with pytest.raises(KdbenchError, match="runs one run at a time"):
        executors.configured(plugins, _spec(tiny, plugins, "serial"), device="cuda",
                             runs_per_gpu=2)


def test_the_ray_executor_asks_for_a_share_of_a_gpu(tiny: Path, plugins: Plugins) -> None:
    pytest.importorskip("ray")
    spec = _spec(tiny, plugins, "ray")
    assert executors.configured(plugins, spec, device="cuda", runs_per_gpu=4).params.gpus == 0.25
    assert executors.configured(plugins, spec, device="cuda").params.gpus == 1.0


def _environ(pid: int) -> dict[str, str]:
    """The environment process ``pid`` was exec'd with (once it has been: until then /proc
    shows the forking parent's initial one)."""
    deadline = time.monotonic() + 30
    while b"spawn_main" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "the worker was never exec'd"
        time.sleep(0.01)
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux's /proc")
def test_each_pool_worker_starts_seeing_only_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    started: list[str] = []

    class Recorded(executors._Worker):
        def __init__(self, context, gpu=None) -> None:
            super().__init__(context, gpu)
            started.append(_environ(self.process.pid)["CUDA_VISIBLE_DEVICES"])

    monkeypatch.setattr(executors, "_Worker", Recorded)
    pool = executors.Processes(executors.ProcessParams(workers=2, devices=("7", "8")))
    from kdbench.runs import RunResult

    # Jobs that fail at once (an unknown dataset) exercise the real pool, not training.
    jobs = [_failing_job(i) for i in range(2)]
    results = dict(pool.map(jobs, lambda *event: None))
    assert all(isinstance(r, RunResult) for r in results.values()) and len(results) == 2
    assert sorted(started) == ["7", "8"]  # read from each real worker process
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2"  # the driver's is restored


def test_a_worker_process_is_started_with_its_gpu_alone() -> None:
    worker = executors._Worker(mp.get_context("spawn"), "MIG-x")
    try:
        assert _environ(worker.process.pid)["CUDA_VISIBLE_DEVICES"] == "MIG-x"
    finally:
        worker.close()
    plain = executors._Worker(mp.get_context("spawn"))
    try:
        assert _environ(plain.process.pid).get("CUDA_VISIBLE_DEVICES") == \
            os.environ.get("CUDA_VISIBLE_DEVICES")
    finally:
        plain.close()


def _failing_job(seed: int):
    from kdbench.runs import Job
    from kdbench.spec import Recipe

    return Job("baseline", None, {}, seed, Component("no_such_dataset", {}),
               Component("cnn1d_small", {}), Recipe(epochs=1), None, ("top1",),
               cache_dir="/nonexistent")


def test_run_takes_runs_per_gpu() -> None:
    from kdbench.cli import parser

    assert parser().parse_args(["run", "b.toml", "--runs-per-gpu", "4"]).runs_per_gpu == 4
    assert parser().parse_args(["run", "b.toml"]).runs_per_gpu is None
