"""Where runs execute: in this process, or in a pool of worker processes.

An executor maps :func:`kdbench.train.execute` over jobs and yields each
result as it finishes, together with the progress its workers report. It never
writes to the tracking store: the driver does, as results arrive.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any, Protocol

import torch

from kdbench import gpushare
from kdbench.errors import KdbenchError
from kdbench.params import bounded
from kdbench.runs import Job, RunResult

if TYPE_CHECKING:
    from kdbench.plugins import Plugins
    from kdbench.spec import Spec

Progress = Callable[[int, str, int, int, dict[str, float]], None]
"""``progress(job_index, phase, epoch, epochs, metrics)``."""


class Executor(Protocol):
    def map(self, jobs: list[Job], progress: Progress) -> Iterator[tuple[int, RunResult]]:
        """Execute ``jobs``; yield ``(index, result)`` in completion order.

        An executor that sets ``groups = True`` also receives :class:`~kdbench.runs.Group`
        units (seeds trained as one stacked model): it calls
        :func:`kdbench.batched.execute_unit` on each unit, forwards its progress events as
        they come, and yields the list of results it returns for a group."""
        ...


def configured(plugins: Plugins, spec: Spec, name: str | None = None, workers: int | None = None,
               device: str = "cpu", address: str | None = None,
               runs_per_gpu: int | None = None) -> Executor:
    """The executor a command uses: ``name`` (``--executor``) or the benchmark's ``[executor]``
    with its parameters, ``workers`` (``--workers``) where it takes them. On a GPU
    (:mod:`kdbench.gpushare`): the process pool runs N workers per visible GPU, each pinned to
    one, and the Ray executor asks for 1/N of a GPU per run, N from ``runs_per_gpu``
    (``--runs-per-gpu``), else the file's ``runs_per_gpu`` or ``run_memory_gib``, else 1."""
    executor_name = name or spec.executor.name
    entry = plugins.entry("executors", executor_name, where="--executor: ")
    values = dict(spec.executor.params) if executor_name == spec.executor.name else {}
    fields = entry.params.__dataclass_fields__ if entry.params is not None else {}
    if workers is not None:
        values["workers"] = workers
    if runs_per_gpu is not None:
        if runs_per_gpu < 1:
            raise KdbenchError(f"--runs-per-gpu must be at least 1, got {runs_per_gpu}")
        if device == "cpu":
            raise KdbenchError("--runs-per-gpu shares a GPU between runs and these runs are on "
                               "the CPU; use --workers N for CPU worker processes")
        if "runs_per_gpu" not in fields and "gpus" not in fields:
            raise KdbenchError(f"--runs-per-gpu: executor {executor_name!r} runs one run at a "
                               "time; use --executor process or ray")
    if device != "cpu" and "runs_per_gpu" in fields:  # the process pool
        if workers is not None:
            raise KdbenchError("--workers counts CPU worker processes; on a GPU give "
                               "--runs-per-gpu N (N runs at once on each visible GPU)")
        visible = tuple(values.get("devices") or gpushare.visible_gpus())
        per_gpu = gpushare.runs_per_gpu(runs_per_gpu or values.get("runs_per_gpu", 0),
                                        values.get("run_memory_gib", 0.0))
        values.update(workers=per_gpu * max(1, len(visible)), runs_per_gpu=per_gpu,
                      devices=list(visible))
    elif device != "cpu" and runs_per_gpu is not None:  # ray: a share of a GPU per run
        values["gpus"] = 1 / runs_per_gpu
    if address is not None:  # --address: a cluster executor's (ray's) head
        if entry.params is None or "address" not in entry.params.__dataclass_fields__:
            raise KdbenchError(f"--address: executor {executor_name!r} takes no address; "
                               "use --executor ray")
        values["address"] = address
    return entry.factory(entry.make_params(values, where=f"executor {executor_name}: "))


@dataclass(frozen=True)
class SerialParams:
    """No parameters: each run sets its own torch thread count (``Job.threads``)."""


class Serial:
    """Runs one job after another in this process."""

    Params = SerialParams
    groups = True

    def __init__(self, params: SerialParams | None = None) -> None:
        pass

    def map(self, jobs: list[Job], progress: Progress) -> Iterator[tuple[int, RunResult]]:
        from kdbench.batched import execute_unit as execute

        for i, job in enumerate(jobs):
            yield i, execute(job, lambda *event, i=i: progress(i, *event))


@dataclass(frozen=True)
class ProcessParams:
    workers: int = 0
    """Worker processes; 0 means one per core (at most the number of jobs). On a GPU: runs
    per GPU times the visible GPUs."""
    runs_per_gpu: int = bounded(0, low=0, high=256)
    """On a GPU: workers sharing each visible GPU (0: from ``run_memory_gib``, else 1)."""
    run_memory_gib: float = bounded(0.0, low=0)
    """On a GPU: the memory one run needs; runs per GPU = the smallest GPU's memory // it."""
    devices: tuple[str, ...] = ()
    """The GPUs workers are pinned to, round-robin (``CUDA_VISIBLE_DEVICES`` of each worker);
    set from the visible GPUs on a GPU run; empty: none."""


class Processes:
    """Worker processes, one per core by default, each running one job at a time.

    The pool never chooses a run's torch threads: each run sets its own
    (``Job.threads``, one unless the sweep says otherwise), so a result is the
    same under any pool size and a reused result does not depend on how the
    sweep that produced it was launched. Small networks use several cores
    poorly anyway: on a 2-core machine two single-threaded workers finish a
    sweep faster than one with two threads. Workers are spawned, not forked: a
    forked copy of an initialised torch can deadlock in OpenMP.

    Each worker has its own pipe and the driver knows which job each one holds,
    so a worker that dies (the OOM killer's SIGKILL) fails exactly that job:
    it is replaced and the sweep goes on, where ``concurrent.futures`` breaks
    the whole pool. When the driver stops (Ctrl-C, SIGTERM, an error), the
    workers are killed at once: they hold nothing that is not in the driver.
    """

    Params = ProcessParams
    groups = True

    def __init__(self, params: ProcessParams) -> None:
        self.workers = params.workers or os.cpu_count() or 1
        self.devices = params.devices

    def map(self, jobs: list[Job], progress: Progress) -> Iterator[tuple[int, RunResult]]:
        if not jobs:
            return
        size = max(1, min(self.workers, len(jobs)))
        if size == 1:
            yield from Serial().map(jobs, progress)
            return
        context = mp.get_context("spawn")
        queued = list(enumerate(jobs))[::-1]  # popped from the end: job 0 first
        idle: list[_Worker] = []
        busy: dict[Any, _Worker] = {}  # by connection
        try:
            for gpu in gpushare.assignment(size, self.devices):
                idle.append(_Worker(context, gpu))
            while queued or busy:
                while queued and idle:
                    worker = idle.pop()
                    if not worker.process.is_alive():  # killed between two jobs
                        worker.close()
                        idle.append(_Worker(context, worker.gpu))
                        continue
                    worker.start(*queued.pop())
                    busy[worker.conn] = worker
                ready = wait([*busy, *(w.process.sentinel for w in busy.values())])
                for worker in list(busy.values()):
                    if worker.conn not in ready and worker.process.sentinel not in ready:
                        continue
                    done = worker.receive(progress)
                    if done is not None:
                        del busy[worker.conn]
                        idle.append(worker)
                        yield done
                    elif not worker.process.is_alive():
                        del busy[worker.conn]
                        yield worker.index, worker.death()
                        worker.close()
                        if queued:
                            idle.append(_Worker(context, worker.gpu))
        finally:
            for worker in [*idle, *busy.values()]:
                worker.close()


class _Worker:
    """One worker process and the job it holds; started seeing only ``gpu`` when given."""

    def __init__(self, context: Any, gpu: str | None = None) -> None:
        self.gpu = gpu
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, os.getpid()), daemon=True)
        with gpushare.pinned(gpu):
            self.process.start()
        child.close()
        self.index = -1

    def start(self, index: int, job: Job) -> None:
        self.index = index
        with contextlib.suppress(OSError):  # it just died: its sentinel tells, and its job fails
            self.conn.send((index, job))

    def receive(self, progress: Progress) -> tuple[int, RunResult] | None:
        """Relay the progress it sent; its job's result once it has one."""
        while True:
            try:
                if not self.conn.poll():
                    return None
                kind, index, *payload = self.conn.recv()
            except (EOFError, OSError):  # it died: the sentinel says so
                return None
            if kind == "result":
                return index, payload[0]
            progress(index, *payload)

    def death(self) -> RunResult:
        self.process.join(5)
        code = self.process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return RunResult("", "failed", error=f"worker died ({how}) while training this run; "
                         "it is retried on the next kdbench run")

    def close(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def _serve(conn: Any, driver: int) -> None:
    """A worker: train the jobs (or stacked groups of them) the driver sends until it closes
    the pipe."""
    from kdbench.batched import execute_unit as execute

    # The driver decides when to stop and kills its workers; a Ctrl-C in the terminal or a
    # closed terminal, sent to the whole process group, would otherwise kill them first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # One thread between runs (each run sets its own count), and no inter-op pool: a
    # worker per core would otherwise start a core's worth of idle threads each.
    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # already started by an import: only idle threads
        torch.set_num_interop_threads(1)
    while True:
        try:
            index, job = conn.recv()
        except (EOFError, OSError):
            return

        def emit(*event: Any, index: int = index) -> None:
            # A driver killed with SIGKILL leaves its workers behind: stop at the next epoch.
            if os.getppid() != driver:
                os._exit(1)
            conn.send(("progress", index, *event))

        result = execute(job, emit)
        try:
            conn.send(("result", index, result))
        except (BrokenPipeError, OSError):
            return
