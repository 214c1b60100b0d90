"""FSP: distilling the flow of solution procedure.

Yim, Joo, Bae and Kim (2017), "A Gift from Knowledge Distillation: Fast
Optimization, Network Minimization and Transfer Learning", CVPR 2017.

The FSP matrix between two feature maps F¹ ∈ R^{h×w×m} and F² ∈ R^{h×w×n} of
the same network is (eq. 1)

    G_{i,j}(x; W) = Σ_s Σ_t F¹_{s,t,i}(x; W) · F²_{s,t,j}(x; W) / (h · w)

and the student learns the teacher's matrices (eq. 2):

    L_FSP(W_t, W_s) = 1/N · Σ_x Σ_i λ_i · ‖G_i^T(x; W_t) − G_i^S(x; W_s)‖₂²

Following the paper, the loss is the squared Frobenius norm summed over the
matrix entries and averaged over the batch, with all λ_i equal (``lam``). RepDistiller
(the CRD tables) takes the mean over the entries instead (``entries = "mean"``): a
rescaling by m·n, different for each pair, that its learning rate assumes; with the sum,
λ = 1 and lr 0.05, a wrn_16_2 student's first FSP gradient (norm 2.7e4) overflows it in
two steps (measured). Seed 003's TensorFlow code sums, halves and weights by 1e-3
(``nets/Distillation.py``; 1e-2 in an earlier version): λ = 5e-4 here. FSP is a stage of
its own before the main training (stage "fsp", ``fsp_epochs`` = 5 here), after which the student trains
on the labels alone (cross-entropy), as in the paper.

Pairs are consecutive stage outputs (stage k−1's output is stage k's input),
the paper's "input and output of a section". Choices where the paper is silent:

* The paper's pairs have equal spatial sizes; stage outputs here usually do
  not, so the larger map of each pair is adaptive-average-pooled to the
  smaller one (``pool=True``, RepDistiller's rule). With ``pool=False``, models
  whose consecutive stages differ in size are refused at planning time.
* The paper pairs student and teacher sections with equal channel counts. Where
  they differ, each student stage map passes through a 1×1 convolution
  connector without bias to the teacher's channel count (built in ``build``,
  trained with the FSP stage), so the student's matrix is W_a·G_S·W_bᵀ, a
  linear image of its own FSP matrix. Stages with equal counts use no
  connector, which is the paper's setting. ``connector=False`` refuses pairs
  whose channel counts differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.errors import Incompatible
from kdbench.method import LossTerms, Method, Stage
from kdbench.params import MAX_EPOCHS, Around, bounded
from kdbench.taps import Taps, TapShapes
from kdbench_methods._maps import connector, match_sizes, require_maps


def fsp_matrix(F1: Tensor, F2: Tensor) -> Tensor:
    """G = F1ᵀF2/(h·w), ``(N, m, n)``, after pooling the larger map to the smaller size."""
    # Sums over every position: kept in float32 under bfloat16 autocast.
    with torch.autocast(F1.device.type, enabled=False):
        F1, F2 = match_sizes(F1.float(), F2.float())
        return torch.einsum("nix,njx->nij", F1.flatten(2), F2.flatten(2)) / F1[0, 0].numel()


def fsp_loss(G_s: list[Tensor], G_t: list[Tensor], lam: float = 1.0,
             entries: Literal["sum", "mean"] = "sum") -> Tensor:
    """1/N · Σ_x Σ_i λ · ‖G_i^T − G_i^S‖²: squared entries summed per sample, batch mean
    (``entries="mean"``: their mean over the m·n entries, RepDistiller's)."""
    return lam * sum((gt - gs).pow(2).flatten(1).sum(1).mean() / (gs[0].numel()
                                                                 if entries == "mean" else 1)
                     for gs, gt in zip(G_s, G_t, strict=True))


def flow(maps: list[Tensor]) -> list[Tensor]:
    """FSP matrices of consecutive maps: the flow through each stage."""
    return [fsp_matrix(a, b) for a, b in pairwise(maps)]


@dataclass(frozen=True)
class FSPParams:
    fsp_epochs: int = bounded(5, low=0, high=MAX_EPOCHS)
    """Epochs of the FSP stage before the main (cross-entropy) training."""
    lam: float = bounded(1.0, low=0, search=Around(10))
    """λ, the weight of every pair (the paper takes them all equal)."""
    pool: bool = True
    """Pool the larger map of a pair to the smaller size; False refuses pairs of unequal size."""
    connector: bool = True
    """1×1 convolutions from the student's channel counts to the teacher's; False refuses
    models whose channel counts differ."""
    entries: Literal["sum", "mean"] = "sum"
    """Sum the squared differences over each matrix's entries (the paper) or average them
    (RepDistiller's, for the CRD tables)."""


class FSP(Method):
    """Yim et al. 2017: first teach the student the teacher's flow between stages, then CE."""

    name = "fsp"
    Params = FSPParams
    needs = frozenset({"logits", "stages"})
    teacher_needs = frozenset({"stages"})

    def __init__(self, params: FSPParams | None = None) -> None:
        super().__init__(params or FSPParams())
        self.connectors: nn.ModuleList | None = None

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        p: FSPParams = self.params
        models = [("student", student)] + ([("teacher", teacher)] if teacher is not None else [])
        for who, shapes in models:
            require_maps("FSP", who, shapes)
            if len(shapes.stages) < 2:
                raise Incompatible(f"FSP needs at least two stages and the {who} has one")
            for a, b in pairwise(shapes.stages):
                if not p.pool and a[1:] != b[1:]:
                    raise Incompatible(
                        f"FSP needs consecutive {who} stages of equal spatial size and "
                        f"{a} is followed by {b}; set pool = true to pool the larger one")
        if teacher is None:
            return
        if len(student.stages) != len(teacher.stages):
            raise Incompatible(f"FSP pairs stages one to one, and the student has "
                               f"{len(student.stages)} stages where the teacher has "
                               f"{len(teacher.stages)}")
        if not p.connector:
            for s, t in zip(student.stages, teacher.stages, strict=True):
                if s[0] != t[0]:
                    raise Incompatible(f"student and teacher channel counts differ ({s} and "
                                       f"{t}); set connector = true to map them")

    def build(self, student: TapShapes, teacher: TapShapes | None,
              info: DataInfo) -> nn.Module:
        self.connectors = nn.ModuleList(
            connector(s[0], t[0], len(s) - 1, bias=False) if s[0] != t[0] else nn.Identity()
            for s, t in zip(student.stages, teacher.stages, strict=True))
        return self.connectors

    def _fsp_stage(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        maps = [c(f) for c, f in zip(self.connectors, s.stages, strict=True)]
        G_t = flow([f.detach() for f in t.stages])
        return {"fsp": fsp_loss(flow(maps), G_t, self.params.lam, self.params.entries)}

    def stages(self) -> list[Stage]:
        epochs = self.params.fsp_epochs
        return [Stage("fsp", epochs, self._fsp_stage)] if epochs > 0 else []

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        return {"ce": F.cross_entropy(s.logits, y)}
