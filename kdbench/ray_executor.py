"""Runs on a Ray cluster (``pip install kdbench[ray]``; ``--executor ray --address HOST:PORT``).

The same unit of work as the process pool, :func:`kdbench.batched.execute_unit` (one run, or
seeds stacked as one model), is shipped to Ray tasks, one task per unit, each asking for one
CPU and, for runs on CUDA, ``gpus`` of a GPU (a fraction lets several runs share one). The
driver waits on the tasks and yields each result as it arrives: it alone writes to MLflow,
so the workers need no access to the tracking store, only kdbench and its plugins installed
and the cache directory (datasets, teacher checkpoints) at the same path (a shared file
system). A worker that dies (killed, out of memory, its node lost) fails its own run and no
other: Ray reports the task's death to the driver, which records it as that run's failure.
Progress events travel back through a :class:`ray.util.queue.Queue`.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kdbench.errors import KdbenchError
from kdbench.executors import Progress
from kdbench.params import bounded
from kdbench.runs import Group, Job, RunResult

INSTALL = "the ray executor needs Ray: pip install 'kdbench[ray]'"


@dataclass(frozen=True)
class RayParams:
    address: str = ""
    """``HOST:PORT`` of a running Ray head (``ray start --head``); empty: ``$RAY_ADDRESS``,
    else a Ray instance started for this process alone."""
    gpus: float = bounded(1.0, low=0, high=1)
    """The share of a GPU each run on CUDA asks for: 0.25 puts four runs on a GPU."""
    cpus: float = bounded(1.0, low=0, low_open=True)
    """CPUs each run asks for (each run uses ``Job.threads`` torch threads)."""


class Ray:
    """A unit of work per Ray task; results stream back to the driver as tasks finish."""

    Params = RayParams
    groups = True

    def __init__(self, params: RayParams | None = None) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise KdbenchError(INSTALL) from None
        self.params = params or RayParams()
        self.events: Any = None

    def _connect(self) -> Any:
        import ray

        if not ray.is_initialized():
            try:
                ray.init(address=self.params.address or None, logging_level="ERROR",
                         log_to_driver=False, configure_logging=False)
            except ConnectionError as error:
                raise KdbenchError(f"--address {self.params.address}: no Ray cluster there "
                                   f"({error}); start one with `ray start --head --port "
                                   "PORT` or check the address") from None
        return ray

    def map(self, jobs: list[Job | Group], progress: Progress
            ) -> Iterator[tuple[int, RunResult | list[RunResult]]]:
        if not jobs:
            return
        ray = self._connect()
        from ray.util.queue import Empty, Queue

        if self.events is None:  # one queue actor per executor: an actor costs a process
            self.events = Queue(actor_options={"num_cpus": 0})
        events = self.events
        task = ray.remote(_work)
        pending: dict[Any, int] = {}
        for i, unit in enumerate(jobs):
            device = (unit.jobs[0] if isinstance(unit, Group) else unit).device
            gpus = self.params.gpus if device.startswith("cuda") else 0
            ref = task.options(num_cpus=self.params.cpus, num_gpus=gpus,
                               max_retries=0).remote(i, unit, events)
            pending[ref] = i

        def drain() -> None:
            while True:
                try:
                    index, *event = events.get_nowait()
                except Empty:
                    return
                progress(index, *event)

        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
                drain()
                for ref in done:
                    index = pending.pop(ref)
                    yield index, _result(ray, ref, jobs[index])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            drain()


def _work(index: int, unit: Job | Group, events: Any) -> RunResult | list[RunResult]:
    """In a Ray worker: one unit, its progress sent to the driver's queue."""
    from kdbench.batched import execute_unit

    def emit(*event: Any) -> None:
        events.put_nowait((index, *event))

    return execute_unit(unit, emit)


def _result(ray: Any, ref: Any, unit: Job | Group) -> RunResult | list[RunResult]:
    try:
        return ray.get(ref)
    except Exception as error:  # the worker died, or Ray lost the task: this unit fails only
        failure = RunResult("", "failed",
                            error=f"ray worker failed: {type(error).__name__}: "
                                  f"{str(error).splitlines()[0] if str(error) else ''}",
                            traceback="".join(traceback.format_exception(error)))
        if isinstance(unit, Group):
            return [RunResult(**{**failure.__dict__}) for _ in unit.jobs]
        return failure
