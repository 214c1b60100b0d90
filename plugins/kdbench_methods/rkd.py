"""Relational knowledge distillation.

Park, Kim, Lu and Cho (2019), "Relational Knowledge Distillation", CVPR 2019,
pp. 3967–3976, arXiv:1904.05068.

The student matches the geometry of the teacher's embeddings within a batch
rather than the embeddings themselves. With the Huber loss ``l_δ`` (δ = 1):

    ψ_D(t_i, t_j) = ‖t_i − t_j‖₂ / μ,   μ = mean of ‖t_i − t_j‖₂ over pairs i ≠ j
    ψ_A(t_i, t_j, t_k) = ⟨e^{ij}, e^{kj}⟩,   e^{ij} = (t_i − t_j) / ‖t_i − t_j‖₂
    L = CE + λ_D · mean l_δ(ψ_D(s), ψ_D(t)) + λ_A · mean l_δ(ψ_A(s), ψ_A(t))

Convention: the authors' code (lenscloth/RKD, ``metric/loss.py``), which takes
the means over all ``B²`` pairs and ``B³`` triplets, the degenerate ones
included (their relation is 0 on both sides), and clamps squared distances at
1e-12 before the square root. The relations only depend on the batch size, so
student and teacher embeddings may differ in width. Defaults λ_D = 25,
λ_A = 50 are the paper's for classification, also the CRD benchmark's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from kdbench.errors import Incompatible
from kdbench.method import LossTerms, Method
from kdbench.params import Around, bounded
from kdbench.taps import Taps, TapShapes


def pairwise_distances(e: Tensor, eps: float = 1e-12) -> Tensor:
    """``B × B`` Euclidean distances between the rows of ``e``, zero on the diagonal."""
    sq = e.pow(2).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * e @ e.T).clamp(min=eps).sqrt()
    return d * (1 - torch.eye(len(e), dtype=d.dtype, device=d.device))


def distance_potential(e: Tensor, eps: float = 1e-12) -> Tensor:
    """ψ_D: pairwise distances divided by their mean over pairs of distinct points."""
    d = pairwise_distances(e)
    mu = d.sum() / (d > 0).sum().clamp(min=1)
    return d / mu.clamp(min=eps)  # a batch of one sample has no pair: 0, not 0/0


def angle_potential(e: Tensor) -> Tensor:
    """ψ_A: ``B × B × B`` cosines of the angle at every vertex of every triplet."""
    u = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)
    return u @ u.transpose(1, 2)


def rkd_distance_loss(e_s: Tensor, e_t: Tensor) -> Tensor:
    """Distance-wise loss: Huber between the normalised distance matrices."""
    return F.smooth_l1_loss(distance_potential(e_s), distance_potential(e_t))


def rkd_angle_loss(e_s: Tensor, e_t: Tensor) -> Tensor:
    """Angle-wise loss: Huber between the angle tensors."""
    return F.smooth_l1_loss(angle_potential(e_s), angle_potential(e_t))


@dataclass(frozen=True)
class RKDParams:
    lambda_d: float = bounded(25.0, low=0, search=Around(10))
    """Weight λ_D of the distance-wise loss."""
    lambda_a: float = bounded(50.0, low=0, search=Around(10))
    """Weight λ_A of the angle-wise loss."""
    ce_weight: float = bounded(1.0, low=0)
    """Weight of the cross-entropy on the labels."""


class RKD(Method):
    """Park et al. 2019: match distances and angles between the embeddings of a batch."""

    name = "rkd"
    Params = RKDParams
    needs = frozenset({"logits", "embedding"})
    teacher_needs = frozenset({"embedding"})
    batchable = True  # a pure function of the taps: seeds can train stacked (kdbench.batched)

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        for role, shapes in (("student", student), ("teacher", teacher)):
            if shapes is not None and shapes.embedding is None:
                raise Incompatible(f"RKD relates embeddings and the {role} has none")

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        p: RKDParams = self.params
        # Relations are computed in float32: under bf16 autocast the distances of close
        # points (and so the angles) lose most of their digits.
        with torch.autocast(s.embedding.device.type, enabled=False):
            e_s, e_t = s.embedding.float(), t.embedding.detach().float()
            dist, angle = rkd_distance_loss(e_s, e_t), rkd_angle_loss(e_s, e_t)
        return {
            "ce": p.ce_weight * F.cross_entropy(s.logits, y),
            "distance": p.lambda_d * dist,
            "angle": p.lambda_a * angle,
        }
