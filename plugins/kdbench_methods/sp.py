"""Similarity-preserving knowledge distillation.

Tung and Mori (2019), "Similarity-Preserving Knowledge Distillation", ICCV
2019, pp. 1365–1374, arXiv:1907.09682.

Inputs that the teacher maps to similar activations should be mapped to
similar activations by the student. With ``Q`` the activation map of a batch
reshaped to ``B × (C·H·W)`` and row-wise L2 normalisation:

    G = normalize_rows(Q · Qᵀ)                          (B × B)
    L = CE + γ · (1/B²) · ‖G_T − G_S‖²_F

The loss is applied to one pair (l, l'): the outputs of the last stage of both
networks, before pooling, as in the CRD benchmark. Maps are flattened over
every dimension after the batch, so 1-D maps ``(N, C, L)``, 2-D maps
``(N, C, H, W)`` and flat stages (an MLP) all work, and the two networks may
differ in channels and sizes. γ = 3000 is the paper's and
the CRD benchmark's weight.
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


def similarity(f: Tensor) -> Tensor:
    """G: the row-normalised ``B × B`` Gram matrix of the flattened activations."""
    q = f.flatten(1)
    return F.normalize(q @ q.T, p=2, dim=1)


def sp_loss(f_s: Tensor, f_t: Tensor) -> Tensor:
    """‖G_T − G_S‖²_F / B²."""
    b = f_s.shape[0]
    return (similarity(f_t) - similarity(f_s)).pow(2).sum() / (b * b)


@dataclass(frozen=True)
class SPParams:
    gamma: float = bounded(3000.0, low=0, search=Around(10))
    """Weight γ of the similarity-preserving loss."""
    ce_weight: float = bounded(1.0, low=0)
    """Weight of the cross-entropy on the labels."""


class SP(Method):
    """Tung and Mori 2019: preserve the teacher's pairwise similarities of a batch."""

    name = "sp"
    Params = SPParams
    needs = frozenset({"logits", "stages"})
    teacher_needs = frozenset({"stages"})
    batchable = True  # a pure function of the taps: seeds can train stacked (kdbench.batched)

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        for role, shapes in (("student", student), ("teacher", teacher)):
            if shapes is not None and not shapes.stages:
                raise Incompatible(f"SP compares the last stage's activations and the {role} "
                                   "names no stages")

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        p: SPParams = self.params
        f_s, f_t = s.stages[-1], t.stages[-1].detach()
        # In float32: bf16 autocast keeps about three digits of each Gram entry, too few
        # for the small differences that γ = 3000 multiplies.
        with torch.autocast(f_s.device.type, enabled=False):
            sp = sp_loss(f_s.float(), f_t.float())
        return {"ce": p.ce_weight * F.cross_entropy(s.logits, y), "sp": p.gamma * sp}
