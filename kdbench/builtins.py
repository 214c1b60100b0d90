"""The core's own plugin: metrics, executors and teacher providers that any benchmark
can use. Registered through the ``kdbench`` entry-point group like every other plugin."""

from __future__ import annotations

import kdbench
from kdbench import executors, metrics, ray_executor, teacher
from kdbench.registry import Register


@kdbench.hookimpl
def kdbench_metrics(register: Register) -> None:
    register("top1", metrics.top1)
    register("top5", lambda _params: metrics.topk(metrics.TopKParams(5)),
             description="Top-5 accuracy: share of samples whose label is among the 5 highest logits.")
    register("agreement", metrics.agreement)


@kdbench.hookimpl
def kdbench_executors(register: Register) -> None:
    register("serial", executors.Serial)
    register("process", executors.Processes)
    # Ray itself is optional (pip install 'kdbench[ray]'): the executor says so when missing.
    register("ray", ray_executor.Ray)


@kdbench.hookimpl
def kdbench_teachers(register: Register) -> None:
    register("train", teacher.Trained)
    register("checkpoint", teacher.Checkpoint)
