"""Retrieval metrics of a model's embedding: mean average precision and precision at k.

Passalis and Tefas (2018), "Learning Deep Representations with Probabilistic Knowledge
Transfer", ECCV 2018, judge a representation by retrieval: every sample of the evaluated
split is a query, the training split is the database, the database is ranked by the
distance of its embeddings to the query's (cosine by default, or Euclidean), and a database
item is relevant when it has the query's label. kdbench's database is the training split
less the validation part; queries are the validation split after every epoch and the test
split once at the end. Retrieval is not scored on the training split itself (its queries
would be in the database).

Convention: the authors' code (passalis/probabilistic_kt, ``nn/retrieval_evaluation.py``,
``Database.get_metrics``), with one deviation:

* ``map``: the 11-point interpolated mAP. For each query, precision P(r) and recall R(r) at
  every rank r of the whole ranked database; the interpolated precision P̃(r) = max_{r' ≥ r}
  P(r'); for each recall level ℓ ∈ {0, 0.1, ..., 1} the rank r_ℓ whose recall is nearest ℓ
  (the first such rank), and AP = (1/11) Σ_ℓ P̃(r_ℓ); mAP is the mean over queries. The
  authors' loop meant to interpolate over every rank but runs over the *queries* of a batch
  (``for i in reversed(range(len(precision) - 1))``), so it interpolates only the first 127
  ranks of a 128-query batch: a result that depends on the batch size. kdbench interpolates
  over every rank, as the loop intends.
* ``interpolation="none"`` gives the usual non-interpolated AP, (1/R) Σ_{relevant r} P(r),
  which is scikit-learn's ``average_precision_score`` of each query with the negated
  distances as scores (up to ties).
* ``precision@k``: the share of relevant items among the k nearest, P(k), averaged over
  queries; the authors' table prints their interpolated curve at k (10, 20, 50, 100, 200),
  which by the loop above is the best precision at any rank from k to 128. kdbench reports
  the plain P(k) (k capped at the database size).

A query whose label has no item in the database has AP 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from kdbench.metrics import Database, Metric, Outputs
from kdbench.params import bounded

Distance = Literal["cosine", "euclidean"]
RECALL_LEVELS = torch.as_tensor(np.arange(0, 1.01, 0.1))
"""The authors' 11 recall levels, as ``numpy.arange`` makes them (0.30000000000000004...)."""
QUERY_BATCH = 256
"""Queries ranked at once: a ``QUERY_BATCH × database`` matrix at a time."""


def distances(queries: Tensor, database: Tensor, distance: Distance = "cosine") -> Tensor:
    """``Q × N`` distances: cosine distance 1 − cos(q, d), or Euclidean ‖q − d‖."""
    q, d = queries.double(), database.double()
    if distance == "cosine":
        q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
        d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return 1 - q @ d.T
    return torch.cdist(q, d)


def relevance(queries: Tensor, query_y: Tensor, database: Database,
              distance: Distance = "cosine") -> Tensor:
    """``Q × N`` booleans: whether the database item at each rank (nearest first; ties keep
    the database's order) has the query's label."""
    order = distances(queries, database.embedding, distance).sort(dim=1, stable=True).indices
    return database.y.to(order.device)[order] == query_y[:, None].to(order.device)


def average_precisions(relevant: Tensor, n_relevant: Tensor,
                       interpolation: Literal["11-point", "none"] = "11-point") -> Tensor:
    """AP of each query from its ranked relevance ``relevant`` (``Q × N``) and the count of
    its relevant database items ``n_relevant`` (``Q``); see the module's convention."""
    hits = relevant.double().cumsum(1)
    ranks = torch.arange(1, relevant.shape[1] + 1, dtype=torch.float64, device=relevant.device)
    precision = hits / ranks
    total = n_relevant.double().to(relevant.device)
    if interpolation == "none":
        ap = (precision * relevant).sum(1) / total.clamp_min(1)
        return torch.where(total > 0, ap, torch.zeros_like(ap))
    interpolated = precision.flip(1).cummax(1).values.flip(1)
    recall = hits / total.clamp_min(1)[:, None]
    # One level at a time: a Q × N × 11 tensor would not fit for a database of 60,000.
    nearest = torch.stack([(recall - level).abs().argmin(1) for level in RECALL_LEVELS.tolist()],
                          1)  # Q × 11: the first rank whose recall is nearest each level
    ap = interpolated.gather(1, nearest).mean(1)
    return torch.where(total > 0, ap, torch.zeros_like(ap))


def mean_average_precision(queries: Tensor, query_y: Tensor, database: Database,
                           distance: Distance = "cosine",
                           interpolation: Literal["11-point", "none"] = "11-point") -> float:
    """mAP of ``queries`` (labels ``query_y``) against ``database``."""
    counts = torch.bincount(database.y.cpu(), minlength=int(query_y.max()) + 1)
    aps = []
    for start in range(0, len(queries), QUERY_BATCH):
        q, y = queries[start:start + QUERY_BATCH], query_y[start:start + QUERY_BATCH]
        rel = relevance(q, y, database, distance)
        aps.append(average_precisions(rel, counts[y.cpu()], interpolation))
    return torch.cat(aps).mean().item()


def precision_at(queries: Tensor, query_y: Tensor, database: Database, k: int,
                 distance: Distance = "cosine") -> float:
    """Mean over queries of the share of relevant items among the ``k`` nearest."""
    k = min(k, len(database.y))
    shares = []
    for start in range(0, len(queries), QUERY_BATCH):
        q, y = queries[start:start + QUERY_BATCH], query_y[start:start + QUERY_BATCH]
        shares.append(relevance(q, y, database, distance)[:, :k].double().mean(1))
    return torch.cat(shares).mean().item()


@dataclass(frozen=True)
class MAPParams:
    distance: Distance = "cosine"
    interpolation: Literal["11-point", "none"] = "11-point"


@dataclass(frozen=True)
class PrecisionParams:
    k: int = bounded(10, low=1)
    distance: Distance = "cosine"


_READS = frozenset({"embedding", "database"})


def mean_ap(params: MAPParams, name: str = "map") -> Metric:
    """Retrieval mAP of the embedding: the split's queries against the training split (PKT)."""

    def compute(out: Outputs) -> float:
        return mean_average_precision(out.embedding, out.y, out.database, params.distance,
                                      params.interpolation)

    return Metric(name, compute, needs=_READS)


def precision(params: PrecisionParams, name: str = "") -> Metric:
    """Retrieval precision at k of the embedding against the training split (PKT)."""

    def compute(out: Outputs) -> float:
        return precision_at(out.embedding, out.y, out.database, params.k, params.distance)

    return Metric(name or f"prec{params.k}", compute, needs=_READS)


BUILTIN: dict[str, Callable[[None], Metric]] = {
    "map": lambda _params: mean_ap(MAPParams()),
    "map_l2": lambda _params: mean_ap(MAPParams("euclidean"), "map_l2"),
    "prec10": lambda _params: precision(PrecisionParams(10)),
    "prec100": lambda _params: precision(PrecisionParams(100)),
}
"""The retrieval metrics kdbench registers, by name (:mod:`kdbench.builtins`): defined here, so
that a change to this module changes their runs' code identity."""
