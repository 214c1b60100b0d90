"""The core's own plugin: metrics, executors and teacher providers that any benchmark
can use. Registered through the ``kdbench`` entry-point group like every other plugin,
by reference (:class:`~kdbench.registry.Lazy`): loading the plugins imports no torch."""

from __future__ import annotations

from typing import Any

import kdbench
from kdbench.registry import Lazy, Register


def top5(_params: None) -> Any:
    """Top-5 accuracy: share of samples whose label is among the 5 highest logits."""
    from kdbench import metrics

    return metrics.topk(metrics.TopKParams(5))


@kdbench.hookimpl
def kdbench_metrics(register: Register) -> None:
    register("top1", "kdbench.metrics:top1")
    register("top5", "kdbench.builtins:top5")
    register("agreement", "kdbench.metrics:agreement")
    register("map", Lazy("kdbench.retrieval:BUILTIN", "map"),
             description="Retrieval mAP (11-point interpolated, PKT) of the embedding, cosine: "
                         "the split's queries against the training split.")
    register("map_l2", Lazy("kdbench.retrieval:BUILTIN", "map_l2"),
             description="Retrieval mAP (11-point interpolated, PKT) of the embedding, Euclidean.")
    for k in (10, 100):
        register(f"prec{k}", Lazy("kdbench.retrieval:BUILTIN", f"prec{k}"),
                 description=f"Retrieval precision at {k} of the embedding, cosine: share of "
                             f"the {k} nearest training samples with the query's label.")


@kdbench.hookimpl
def kdbench_executors(register: Register) -> None:
    register("serial", "kdbench.executors:Serial")
    register("process", "kdbench.executors:Processes")
    # Ray itself is optional (pip install 'kdbench[ray]'): the executor says so when missing.
    register("ray", "kdbench.ray_executor:Ray")


@kdbench.hookimpl
def kdbench_teachers(register: Register) -> None:
    register("train", "kdbench.teacher:Trained")
    register("checkpoint", "kdbench.teacher:Checkpoint")
