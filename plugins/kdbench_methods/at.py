"""Attention transfer (activation-based).

Zagoruyko and Komodakis (2017), "Paying More Attention to Attention: Improving
the Performance of Convolutional Neural Networks via Attention Transfer",
ICLR 2017, arXiv:1612.03928.

The attention map of a stage output A ∈ R^{C×H×W} is Q = mean_c |A_c|^p
(p = 2), flattened over positions and L2-normalised. The paper's eq. 2 is

    L = L_CE + β/2 · Σ_j ‖ Q_S^j/‖Q_S^j‖₂ − Q_T^j/‖Q_T^j‖₂ ‖_p      (p = 2: the norm, not squared)

with "β = 10³ divided by the number of elements in the attention map and the
batch size for each layer" (section 4.1). The authors' code
(github.com/szagoruyko/attention-transfer, ``at_loss``) instead takes the
*mean of the squared* difference over batch and positions and weights the sum
over stage pairs by β = 10³ with no ½:

    code:   L_AT = β · Σ_j 1/(N·P_j) · Σ_n ‖Q̂_S^j(n) − Q̂_T^j(n)‖₂²
    paper:  L_AT = β/2 · Σ_j 1/(N·P_j) · Σ_n ‖Q̂_S^j(n) − Q̂_T^j(n)‖₂

(P_j positions in stage j, Q̂ the normalised map). The default follows the
authors' code (``normalise="code"``), as RepDistiller and mdistiller do;
``normalise="paper"`` gives the equation as printed, with the paper's
normalisation of β.

Every stage pair is matched (the paper's "groups"); where a pair's spatial
sizes differ, the larger feature map is adaptive-average-pooled to the smaller
one before its attention map is taken (RepDistiller's rule). Maps may be 1-D
``(N, C, L)`` or 2-D ``(N, C, H, W)``: everything works over the flattened
positions. Flat stages (an MLP's) have no positions, and AT refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from kdbench.errors import Incompatible
from kdbench.method import LossTerms, Method
from kdbench.params import Around, bounded
from kdbench.taps import Taps, TapShapes
from kdbench_methods._maps import match_sizes, require_maps


def attention(A: Tensor, p: float = 2.0) -> Tensor:
    """Q/‖Q‖₂ with Q = mean over channels of |A|^p, flattened over positions: ``(N, P)``."""
    return F.normalize(A.float().abs().pow(p).mean(1).flatten(1), dim=1)


def at_distance(A_s: Tensor, A_t: Tensor, p: float = 2.0,
                normalise: Literal["code", "paper"] = "code") -> Tensor:
    """One stage pair, unweighted: 1/(N·P) · Σ_n ‖Q̂_S(n) − Q̂_T(n)‖₂² (code) or ‖·‖₂ (paper)."""
    A_s, A_t = match_sizes(A_s, A_t)
    d = attention(A_s, p) - attention(A_t, p)
    if normalise == "code":
        return d.pow(2).mean()
    return d.norm(dim=1).mean() / d.shape[1]


def at_loss(s_maps: list[Tensor], t_maps: list[Tensor], beta: float, p: float = 2.0,
            normalise: Literal["code", "paper"] = "code") -> Tensor:
    """β · Σ_j (code) or β/2 · Σ_j (paper) of :func:`at_distance` over the stage pairs j."""
    weight = beta if normalise == "code" else beta / 2
    return weight * sum(at_distance(a_s, a_t, p, normalise)
                        for a_s, a_t in zip(s_maps, t_maps, strict=True))


@dataclass(frozen=True)
class ATParams:
    beta: float = bounded(1000.0, low=0, search=Around(10))
    """β, the weight of the attention term (10³ in the paper and the authors' code)."""
    p: float = bounded(2.0, low=0, low_open=True)
    """Exponent of the attention map mean_c |A_c|^p (the paper's choice for AT: 2)."""
    normalise: Literal["code", "paper"] = "code"
    """``code``: mean of squared differences, weight β (authors' code); ``paper``: the norm
    of the difference as in eq. 2, weight β/2, divided by positions and batch size."""


class AT(Method):
    """Zagoruyko & Komodakis 2017: match the normalised spatial attention maps of every stage."""

    name = "at"
    Params = ATParams
    needs = frozenset({"logits", "stages"})
    teacher_needs = frozenset({"stages"})
    batchable = True  # a pure function of the taps: seeds can train stacked (kdbench.batched)

    def __init__(self, params: ATParams | None = None) -> None:
        super().__init__(params or ATParams())

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        require_maps("attention transfer", "student", student)
        if teacher is None:
            return
        require_maps("attention transfer", "teacher", teacher)
        if len(student.stages) != len(teacher.stages):
            raise Incompatible(
                f"attention transfer pairs stages one to one, and the student has "
                f"{len(student.stages)} stages where the teacher has {len(teacher.stages)}")
        for j, (s, t) in enumerate(zip(student.stages, teacher.stages, strict=True)):
            if len(s) != len(t):
                raise Incompatible(f"stage {j} is a {len(s) - 1}-D map {s} in the student and "
                                   f"a {len(t) - 1}-D map {t} in the teacher")

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        p: ATParams = self.params
        t_maps = [a.detach() for a in t.stages]
        return {
            "ce": F.cross_entropy(s.logits, y),
            "at": at_loss(s.stages, t_maps, p.beta, p.p, p.normalise),
        }
