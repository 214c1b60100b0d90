"""Correlation congruence for knowledge distillation.

Peng, Jin, Liu, Zhou, Wu, Liu, Li and Zhang (2019), "Correlation Congruence
for Knowledge Distillation", ICCV 2019, pp. 5007–5016, arXiv:1904.01802.

Besides instance congruence (KD), the student matches the teacher's
correlation between instances, ``ψ(F)_{ij} = k(f_i, f_j)``, with the Gaussian
RBF kernel on L2-normalised embeddings approximated by its P-order Taylor
series (paper, section 3.3; ``‖f_i − f_j‖² = 2 − 2 f_i·f_j`` for unit vectors):

    k(f_i, f_j) = exp(−γ ‖f_i − f_j‖²) ≈ Σ_{p=0}^{P} e^{−2γ} (2γ)^p / p! · (f_i·f_j)^p
    L_CC = (1/B²) ‖ψ(F_T) − ψ(F_S)‖²_F
    L = α · CE + (1 − α) · T² · KL(p_T^T ‖ p_S^T) + β · L_CC

The paper has no public code. Defaults follow the common reproduction
(AberHu/Knowledge-Distillation-Zoo ``kd_losses/cc.py``): P = 2, γ = 0.4,
β = 100, and correlation congruence without instance congruence (α = 1, so the
KD term is off; set α < 1 for the paper's full CCKD with temperature T).
The kernel matrix is ``B × B`` whatever the embedding width; when the widths
differ, the student's embedding first goes through a learned linear connector
to the teacher's width (the CRD benchmark likewise passes embeddings through
linear heads before CC); ``connector = false`` skips it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.errors import Incompatible
from kdbench.method import LossTerms, Method
from kdbench.params import Around, bounded
from kdbench.taps import Taps, TapShapes
from kdbench_methods.kd import kd_loss


def correlation(f: Tensor, gamma: float, P: int) -> Tensor:
    """ψ(F): the P-order Taylor approximation of the RBF kernel between unit-norm rows."""
    f = F.normalize(f, p=2, dim=1)
    s = f @ f.T
    return sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * s.pow(p)
               for p in range(P + 1))


def cc_loss(f_s: Tensor, f_t: Tensor, gamma: float, P: int) -> Tensor:
    """‖ψ(F_T) − ψ(F_S)‖²_F / B²."""
    return (correlation(f_t, gamma, P) - correlation(f_s, gamma, P)).pow(2).mean()


@dataclass(frozen=True)
class CCParams:
    beta: float = bounded(100.0, low=0, search=Around(10))
    """Weight β of the correlation-congruence loss."""
    gamma: float = bounded(0.4, low=0, low_open=True)
    """γ of the Gaussian RBF kernel exp(−γ‖f_i − f_j‖²)."""
    P: int = bounded(2, low=0)
    """Order of the Taylor expansion of the kernel."""
    alpha: float = bounded(1.0, low=0, high=1)
    """Weight α of the cross-entropy; the KD (instance congruence) term gets 1 − α."""
    T: float = bounded(4.0, low=0, low_open=True)
    """Temperature of the KD term (used only when α < 1)."""
    connector: bool = True
    """Map the student's embedding linearly to the teacher's width when they differ."""


class CC(Method):
    """Peng et al. 2019: match the teacher's kernel correlations between instances."""

    name = "cc"
    Params = CCParams
    needs = frozenset({"logits", "embedding"})
    teacher_needs = frozenset({"logits", "embedding"})
    batchable = True  # a pure function of the taps: seeds can train stacked (kdbench.batched)

    def __init__(self, params: CCParams | None = None) -> None:
        super().__init__(params)
        self.connector: nn.Module | None = None

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        for role, shapes in (("student", student), ("teacher", teacher)):
            if shapes is not None and shapes.embedding is None:
                raise Incompatible(f"CC correlates embeddings and the {role} has none")
        if teacher is not None and self.params.alpha < 1 and student.logits != teacher.logits:
            raise Incompatible(f"CC's KD term (alpha < 1) compares class probabilities, but the "
                               f"student has {student.logits} logits and the teacher "
                               f"{teacher.logits}")

    def build(self, student: TapShapes, teacher: TapShapes | None,
              info: DataInfo) -> nn.Module | None:
        self.connector = None
        if teacher is not None and self.params.connector:
            d_s, d_t = math.prod(student.embedding), math.prod(teacher.embedding)
            if d_s != d_t:
                self.connector = nn.Linear(d_s, d_t)
        return self.connector

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        p: CCParams = self.params
        # In float32, connector included: under bf16 autocast the cosines keep three digits
        # and their powers fewer.
        with torch.autocast(s.embedding.device.type, enabled=False):
            f_s = s.embedding.float()
            if self.connector is not None:
                f_s = self.connector(f_s)
            cc = cc_loss(f_s, t.embedding.detach().float(), p.gamma, p.P)
        terms = {"ce": p.alpha * F.cross_entropy(s.logits, y), "cc": p.beta * cc}
        if p.alpha < 1:
            terms["kd"] = (1 - p.alpha) * kd_loss(s.logits, t.logits.detach(), p.T)
        return terms
