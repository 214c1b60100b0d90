"""Several runs at once on one GPU: how many, and which GPU each worker process is pinned to.

A CIFAR ResNet leaves a large GPU mostly idle, so the process pool puts N workers on each
visible GPU (``--runs-per-gpu N``, ``[executor] runs_per_gpu``, or as many as fit a memory
budget, ``[executor] run_memory_gib``), and pins worker k to GPU k mod G by starting it with
``CUDA_VISIBLE_DEVICES`` naming that GPU alone: the run's device stays ``cuda`` (its
fingerprint does not depend on which GPU trained it) and CUDA in the worker sees one device.
The Ray executor asks for 1/N of a GPU per run instead (Ray then sets the variable itself).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping

from kdbench.errors import KdbenchError

ENV = "CUDA_VISIBLE_DEVICES"


def visible_gpus(environ: Mapping[str, str] | None = None, count: int | None = None
                 ) -> tuple[str, ...]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them: its entries
    (indices, or ``GPU-``/``MIG-`` UUIDs) when it is set, else ``0 .. count-1`` (``count``:
    torch's device count)."""
    environ = os.environ if environ is None else environ
    listed = environ.get(ENV)
    if listed is not None:
        return tuple(name.strip() for name in listed.split(",") if name.strip())
    if count is None:
        import torch

        count = torch.cuda.device_count()
    return tuple(str(i) for i in range(count))


def runs_per_gpu(requested: int = 0, run_memory_gib: float = 0.0,
                 gpu_memory_gib: float | None = None) -> int:
    """Runs sharing each GPU: ``requested`` when given (> 0), else as many runs of
    ``run_memory_gib`` as the smallest GPU's memory holds (at least 1), else 1."""
    if requested > 0:
        return requested
    if run_memory_gib > 0:
        memory = smallest_gpu_memory_gib() if gpu_memory_gib is None else gpu_memory_gib
        return max(1, math.floor(memory / run_memory_gib))
    return 1


def smallest_gpu_memory_gib() -> float:
    """The memory of the smallest visible GPU, in GiB."""
    import torch

    if not torch.cuda.is_available():
        raise KdbenchError("run_memory_gib sizes runs per GPU and no CUDA device is visible")
    return min(torch.cuda.get_device_properties(i).total_memory
               for i in range(torch.cuda.device_count())) / 2**30


def assignment(workers: int, gpus: tuple[str, ...]) -> list[str | None]:
    """The GPU of each of ``workers`` workers: round-robin over ``gpus`` (``None``: no
    pinning, when there are none)."""
    return [gpus[k % len(gpus)] if gpus else None for k in range(workers)]


@contextlib.contextmanager
def pinned(gpu: str | None) -> Iterator[None]:
    """``CUDA_VISIBLE_DEVICES`` set to ``gpu`` while a worker process is started (a spawned
    child inherits the environment it starts with), then restored."""
    if gpu is None:
        yield
        return
    before = os.environ.get(ENV)
    os.environ[ENV] = gpu
    try:
        yield
    finally:
        if before is None:
            del os.environ[ENV]
        else:
            os.environ[ENV] = before
