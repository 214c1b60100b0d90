"""Neuron selectivity transfer.

Huang and Wang (2017), "Like What You Like: Knowledge Distill via Neuron
Selectivity Transfer", arXiv:1707.01219.

Each channel k of a feature map F ∈ R^{C×HW} is one sample f^{k·} of the
distribution of neuron selectivity patterns, L2-normalised over its positions.
The student matches the teacher's distribution by the squared maximum mean
discrepancy with a kernel k:

    MMD²(F_T, F_S) = 1/C_T² Σ_i Σ_i' k(f_T^i, f_T^i') + 1/C_S² Σ_j Σ_j' k(f_S^j, f_S^j')
                     − 2/(C_T·C_S) Σ_i Σ_j k(f_T^i, f_S^j)

with the polynomial kernel k(x, y) = (xᵀy + c)^d, d = 2, c = 0 (the paper's
best kernel), averaged over the batch. The total loss is CE + λ · MMD².

Choices: the paper's equation weights MMD² by λ/2; the authors' released code
(github.com/TuSimple/neuron-selectivity-transfer, ``mmd_poly``, ``kt_weight``)
scales MMD² by λ = 50 directly, and RepDistiller uses the same 50. This
follows the code: ``lam`` = 50 multiplies MMD², equal to the paper's λ = 100.
The teacher-teacher term, constant for the student, is kept so that the logged
term is the MMD² itself (≥ 0). The transfer is applied to the last stage, the
paper's choice (``stage`` = −1); when student and teacher differ in spatial
size there, the larger map is adaptive-average-pooled to the smaller one.
Channel counts may differ: MMD compares the two sets of channels. Flat stages
(an MLP's) have no selectivity maps, and NST refuses them.
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
from kdbench_methods._maps import match_sizes


def poly_kernel(a: Tensor, b: Tensor, d: int = 2, c: float = 0.0) -> Tensor:
    """k(a_i, b_j) = (a_iᵀb_j + c)^d for every pair of rows: ``(N, I, J)``."""
    return (a @ b.transpose(1, 2) + c).pow(d)


def nst_loss(F_s: Tensor, F_t: Tensor, d: int = 2, c: float = 0.0) -> Tensor:
    """MMD²(F_T, F_S) between the normalised channels of two maps, averaged over the batch."""
    # MMD² is a difference of similar kernel means: bfloat16 autocast would cancel it away.
    with torch.autocast(F_s.device.type, enabled=False):
        F_s, F_t = match_sizes(F_s.float(), F_t.float())
        f_s = F.normalize(F_s.flatten(2), dim=2)
        f_t = F.normalize(F_t.flatten(2), dim=2)
        mmd2 = (poly_kernel(f_t, f_t, d, c).mean((1, 2))
                + poly_kernel(f_s, f_s, d, c).mean((1, 2))
                - 2 * poly_kernel(f_t, f_s, d, c).mean((1, 2)))
    return mmd2.mean()


@dataclass(frozen=True)
class NSTParams:
    lam: float = bounded(50.0, low=0, search=Around(10))
    """λ, the weight of MMD² (the authors' code: 50; the paper's λ/2 form would say 100)."""
    stage: int = -1
    """Index of the stage whose selectivity is transferred (the paper: the last one)."""
    d: int = bounded(2, low=1)
    """Degree of the polynomial kernel (2 in the paper; 1 with c = 0 is the linear kernel)."""
    c: float = bounded(0.0, low=0)
    """Offset of the polynomial kernel."""


class NST(Method):
    """Huang & Wang 2017: match the distributions of the channels' spatial activation patterns."""

    name = "nst"
    Params = NSTParams
    needs = frozenset({"logits", "stages"})
    teacher_needs = frozenset({"stages"})

    def __init__(self, params: NSTParams | None = None) -> None:
        super().__init__(params or NSTParams())

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        k = self.params.stage
        shapes = {"student": student, "teacher": teacher}
        picked = {}
        for who, taps in shapes.items():
            if taps is None:
                continue
            if not -len(taps.stages) <= k < len(taps.stages):
                raise Incompatible(f"NST reads stage {k} and the {who} has "
                                   f"{len(taps.stages)} stages")
            picked[who] = taps.stages[k]
            if len(picked[who]) < 2:
                raise Incompatible(f"NST needs a feature map (C, L) or (C, H, W) and the {who}'s "
                                   f"stage {k} is flat: {picked[who]}")
        if len(picked) == 2 and len(picked["student"]) != len(picked["teacher"]):
            raise Incompatible(f"stage {k} is a {picked['student']} map in the student and a "
                               f"{picked['teacher']} map in the teacher")

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        p: NSTParams = self.params
        return {
            "ce": F.cross_entropy(s.logits, y),
            "nst": p.lam * nst_loss(s.stages[p.stage], t.stages[p.stage].detach(), p.d, p.c),
        }
