"""Two metrics: how well a student's confidence matches its accuracy, and how well its
embedding separates the classes.

``ece``
    Expected calibration error, Guo, Pleiss, Sun and Weinberger (2017), "On Calibration of
    Modern Neural Networks", ICML 2017, eq. 3: the samples are put in ``bins`` equal-width
    bins of confidence (the top softmax probability), B_m = {i : (m−1)/M < conf_i ≤ m/M},
    and ECE = Σ_m |B_m|/n · |acc(B_m) − conf(B_m)|. 15 bins, as in the paper. Lower is
    better. It reads only the logits.
``knn1``
    1-nearest-neighbour accuracy of the embedding: each sample of the split is labelled by
    its nearest training sample (cosine similarity of the embeddings; the training split
    less validation is the database). It declares ``needs = {"embedding", "database"}``, so
    kdbench hands it the whole :class:`kdbench.metrics.Outputs` and leaves it out where a
    split has no database (the training split itself, whose samples would find themselves).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

import kdbench
from kdbench.metrics import Metric, Outputs
from kdbench.params import bounded
from kdbench.registry import Register


def expected_calibration_error(z: Tensor, y: Tensor, bins: int = 15) -> float:
    """ECE of logits ``z`` against labels ``y`` over ``bins`` equal-width confidence bins."""
    confidence, predicted = z.float().softmax(1).max(1)
    correct = (predicted == y).float()
    index = ((confidence * bins).ceil().long() - 1).clamp(0, bins - 1)  # (m−1)/M < c ≤ m/M
    # |B_m| · |acc(B_m) − conf(B_m)| is |Σ_{i ∈ B_m} (correct_i − conf_i)|.
    gaps = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, (correct - confidence).double())
    return (gaps.abs().sum() / len(y)).item()


def nearest_neighbour_accuracy(outputs: Outputs) -> float:
    """Share of the split's samples whose nearest training sample (cosine) has their label."""
    queries = F.normalize(outputs.embedding.float(), dim=1)
    database = F.normalize(outputs.database.embedding.float(), dim=1)
    nearest = torch.cat([(chunk @ database.T).argmax(1) for chunk in queries.split(1024)])
    return (outputs.database.y[nearest] == outputs.y).float().mean().item()


@dataclass(frozen=True)
class ECEParams:
    bins: int = bounded(15, low=1, high=10_000)
    """Equal-width confidence bins (Guo et al.: 15)."""


def ece(params: ECEParams) -> Metric:
    """Expected calibration error (Guo et al. 2017), 15 bins: lower is better."""
    return Metric("ece", lambda z, y, _t: expected_calibration_error(z, y, params.bins),
                  higher_is_better=False)


def knn1(params: None = None) -> Metric:
    """1-NN accuracy of the embedding against the training split (cosine)."""
    return Metric("knn1", nearest_neighbour_accuracy, needs=frozenset({"embedding", "database"}))


@kdbench.hookimpl
def kdbench_metrics(register: Register) -> None:
    register("ece", ece, params=ECEParams)
    register("knn1", knn1)
