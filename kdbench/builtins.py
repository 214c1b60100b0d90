"""The core's own plugin: metrics, executors and teacher providers that any benchmark
can use. Registered through the ``kdbench`` entry-point group like every other plugin."""

from __future__ import annotations

import kdbench
from kdbench import executors, metrics, ray_executor, retrieval, teacher
from kdbench.registry import Register


@kdbench.hookimpl
def kdbench_metrics(register: Register) -> None:
    register("top1", metrics.top1)
    register("top5", lambda _params: metrics.topk(metrics.TopKParams(5)),
             description="Top-5 accuracy: share of samples whose label is among the 5 highest logits.")
    register("agreement", metrics.agreement)
    register("map", lambda _params: retrieval.mean_ap(retrieval.MAPParams()),
             description="Retrieval mAP (11-point interpolated, PKT) of the embedding, cosine: "
                         "the split's queries against the training split.")
    register("map_l2", lambda _params: retrieval.mean_ap(retrieval.MAPParams("euclidean"),
                                                         "map_l2"),
             description="Retrieval mAP (11-point interpolated, PKT) of the embedding, Euclidean.")
    for k in (10, 100):
        register(f"prec{k}", lambda _params, k=k: retrieval.precision(retrieval.PrecisionParams(k)),
                 description=f"Retrieval precision at {k} of the embedding, cosine: share of "
                             f"the {k} nearest training samples with the query's label.")


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
