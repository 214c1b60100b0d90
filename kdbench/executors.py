"""Where runs execute: in this process, or in a pool of worker processes.

An executor maps :func:`kdbench.train.execute` over jobs and yields each
result as it finishes, together with the progress its workers report. It never
writes to the tracking store: the driver does, as results arrive.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing as mp
import os
import queue
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from kdbench.errors import KdbenchError
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
               device: str = "cpu", address: str | None = None) -> Executor:
    """The executor a command uses: ``name`` (``--executor``) or the benchmark's ``[executor]``
    with its parameters, ``workers`` (``--workers``) where it takes them, and one worker on a
    GPU, which one process owns."""
    executor_name = name or spec.executor.name
    entry = plugins.entry("executors", executor_name, where="--executor: ")
    values = dict(spec.executor.params) if executor_name == spec.executor.name else {}
    takes_workers = entry.params is not None and "workers" in entry.params.__dataclass_fields__
    if workers is not None:
        values["workers"] = workers
    if device != "cpu" and takes_workers:
        values["workers"] = 1
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
    """Worker processes; 0 means one per core (at most the number of jobs)."""


class Processes:
    """A pool of worker processes, one per core by default.

    The pool never chooses a run's torch threads: each run sets its own
    (``Job.threads``, one unless the sweep says otherwise), so a result is the
    same under any pool size and a reused result does not depend on how the
    sweep that produced it was launched. Small networks use several cores
    poorly anyway: on a 2-core machine two single-threaded workers finish a
    sweep faster than one with two threads. Workers are spawned, not forked: a
    forked copy of an initialised torch can deadlock in OpenMP.
    """

    Params = ProcessParams
    groups = True

    def __init__(self, params: ProcessParams) -> None:
        self.workers = params.workers or os.cpu_count() or 1

    def map(self, jobs: list[Job], progress: Progress) -> Iterator[tuple[int, RunResult]]:
        if not jobs:
            return
        workers = max(1, min(self.workers, len(jobs)))
        if workers == 1:
            yield from Serial().map(jobs, progress)
            return
        context = mp.get_context("spawn")
        events = context.Queue()
        with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_init,
                                    initargs=(events, os.getpid())) as pool:
            pending = {pool.submit(_work, i, job): i for i, job in enumerate(jobs)}
            try:
                while pending:
                    done, _ = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                    _drain(events, progress)
                    for future in done:
                        index = pending.pop(future)
                        yield index, _result(future)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
            finally:
                _drain(events, progress)


_events: Any = None
_driver = 0


def _init(events: Any, driver: int) -> None:
    global _events, _driver  # the worker's end of the progress queue and its driver, per process
    _events, _driver = events, driver
    # One thread between runs (each run sets its own count), and no inter-op pool: a
    # worker per core would otherwise start a core's worth of idle threads each.
    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # already started by an import: only idle threads
        torch.set_num_interop_threads(1)


def _work(index: int, job: Job) -> RunResult:
    from kdbench.batched import execute_unit as execute

    def emit(*event: Any) -> None:
        # A driver killed without Ctrl-C leaves its pool behind: stop at the next epoch.
        if os.getppid() != _driver:
            os._exit(1)
        _events.put((index, *event))

    return execute(job, emit)


def _drain(events: Any, progress: Progress) -> None:
    while True:
        try:
            index, *event = events.get_nowait()
        except queue.Empty:
            return
        progress(index, *event)


def _result(future: cf.Future) -> RunResult:
    try:
        return future.result()
    except Exception as error:  # a worker that died (out of memory, killed) fails its run only
        return RunResult("", "failed", error=f"worker failed: {type(error).__name__}: {error}",
                         traceback="".join(traceback.format_exception(error)))
