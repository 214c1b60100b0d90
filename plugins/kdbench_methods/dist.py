"""DIST: distillation by correlation of predictions, from a stronger teacher.

Huang, You, Wang, Qian and Xu (2022), "Knowledge Distillation from A Stronger
Teacher", NeurIPS 2022, arXiv:2205.10536.

Exact matching of probabilities (KL) is replaced by matching their relations,
measured with the Pearson correlation ρ. With the softened prediction matrix
``Y = softmax(Z / τ)`` of a batch (``B × C``, rows are samples):

    L_inter = 1 − (1/B) Σ_i ρ(Y^S_{i,:}, Y^T_{i,:})     (relations between classes)
    L_intra = 1 − (1/C) Σ_j ρ(Y^S_{:,j}, Y^T_{:,j})     (relations between samples)
    L = α · CE(y, Y^S) + β · τ² · L_inter + γ · τ² · L_intra

ρ is the cosine similarity of the mean-centred vectors, with ε = 1e-8 in the
denominator as in the authors' code (hunto/image_classification_sota,
``lib/models/losses/dist_kd.py``), which also supplies the τ² factor.

Defaults are the CIFAR-100 setting: τ = 4 and β = γ = 2 with CE weight α = 1.
The authors' code spells it as their loss ``DIST(β=1, γ=1, τ=4)`` (``dist_t4``)
times a KD loss weight; CIFAR ports of DIST use β = γ = 2, τ = 4. The paper's
ImageNet setting is β = γ = 1, τ = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from kdbench.errors import Incompatible
from kdbench.method import LossTerms, Method
from kdbench.params import Around, LogUniform, bounded
from kdbench.taps import Taps, TapShapes


def pearson(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_losses(z_s: Tensor, z_t: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """(τ² · L_inter, τ² · L_intra) for logits ``z_s``, ``z_t`` of shape ``B × C``."""
    y_s = F.softmax(z_s / tau, dim=1)
    y_t = F.softmax(z_t / tau, dim=1)
    inter = 1 - pearson(y_s, y_t).mean()
    intra = 1 - pearson(y_s.T, y_t.T).mean()
    return tau * tau * inter, tau * tau * intra


@dataclass(frozen=True)
class DISTParams:
    beta: float = bounded(2.0, low=0, search=Around(10))
    """Weight β of the inter-class relation loss (CIFAR-100; ImageNet: 1)."""
    gamma: float = bounded(2.0, low=0, search=Around(10))
    """Weight γ of the intra-class relation loss (CIFAR-100; ImageNet: 1)."""
    tau: float = bounded(4.0, low=0, low_open=True, search=LogUniform(1, 16))
    """Temperature τ of the softmax (CIFAR-100; ImageNet: 1)."""
    alpha: float = bounded(1.0, low=0)
    """Weight α of the cross-entropy on the labels."""


class DIST(Method):
    """Huang et al. 2022: match inter- and intra-class correlations of the predictions."""

    name = "dist"
    Params = DISTParams
    needs = frozenset({"logits"})
    teacher_needs = None
    batchable = True  # a pure function of the taps: seeds can train stacked (kdbench.batched)

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        if teacher is not None and student.logits != teacher.logits:
            raise Incompatible(f"DIST correlates class probabilities, but the student has "
                               f"{student.logits} logits and the teacher {teacher.logits}")

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        p: DISTParams = self.params
        inter, intra = dist_losses(s.logits, t.logits.detach(), p.tau)
        return {
            "ce": p.alpha * F.cross_entropy(s.logits, y),
            "inter": p.beta * inter,
            "intra": p.gamma * intra,
        }
