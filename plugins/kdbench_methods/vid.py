"""Variational Information Distillation (VID).

Ahn, Hu, Damianou, Lawrence and Dai (2019), "Variational Information Distillation for
Knowledge Transfer", CVPR 2019, arXiv:1904.05835.

VID maximises a variational lower bound on the mutual information between each teacher
stage t and the paired student stage s, with a Gaussian q(t | s) whose mean μ(s) is a
regressor on the student's map and whose variance σ_c² is learned per channel:

    −log q(t | s) = Σ_c Σ_n [ log σ_c + (t_{c,n} − μ_{c,n}(s))² / (2σ_c²) ] + const

    L = CE(y, p_S) + Σ_k λ_k · mean_{c,n} [ log σ_c + (t − μ(s))² / (2σ_c²) ]

with σ_c² = softplus(α_c) + ε. Follows the authors' code as published in RepDistiller
(the CRD benchmark, Tian et al. 2020): μ is three 1×1 convolutions without bias, ReLU
between, hidden width the teacher's; the variance starts at 5.0 (ε = 1e-5); the negative
log-likelihood is averaged over every element (batch, channel, position) rather than
summed as in the paper's equation, the scale for which λ = 1 is that benchmark's weight;
the constant ½·log 2π is dropped.

Stage pairs are aligned from the deepest stage. Maps may be 1-D or 2-D; when paired maps
differ in spatial size, the larger one is average-pooled to the smaller one's size (so
the teacher's map is pooled to the student's in the usual case where it is the larger;
RepDistiller's rule). Flat stages (an MLP's hidden layers) work too: μ is then three
linear layers and the variance is per unit. A flat stage paired with a map is refused.
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
from kdbench.params import bounded
from kdbench.taps import Taps, TapShapes
from kdbench_methods._maps import CONVS, match_sizes, paired


def vid_loss(mu: Tensor, t: Tensor, var: Tensor) -> Tensor:
    """mean over elements of log σ_c + (t − μ)²/(2σ_c²); ``var`` holds σ_c² per channel."""
    var = var.view(1, -1, *([1] * (t.dim() - 2)))
    return (0.5 * torch.log(var) + (t - mu).pow(2) / (2 * var)).mean()




class Regressor(nn.Module):
    """μ(s) and the per-channel variance σ² = softplus(α) + ε for one stage pair."""

    def __init__(self, s: tuple[int, ...], t: tuple[int, ...], init_var: float,
                 eps: float) -> None:
        super().__init__()
        dims = len(t) - 1

        def layer(c_in: int, c_out: int) -> nn.Module:
            if dims == 0:
                return nn.Linear(c_in, c_out, bias=False)
            return CONVS[dims](c_in, c_out, kernel_size=1, bias=False)

        self.mu = nn.Sequential(layer(s[0], t[0]), nn.ReLU(), layer(t[0], t[0]), nn.ReLU(),
                                layer(t[0], t[0]))
        # softplus⁻¹ of the initial variance, so that σ² starts at init_var
        self.alpha = nn.Parameter(torch.full((t[0],), math.log(math.expm1(init_var - eps))))
        self.eps = eps

    def variance(self) -> Tensor:
        return F.softplus(self.alpha) + self.eps

    def forward(self, s: Tensor, t: Tensor) -> Tensor:
        s, t = match_sizes(s, t)
        return vid_loss(self.mu(s), t, self.variance())


@dataclass(frozen=True)
class VIDParams:
    lambdas: tuple[float, ...] = bounded((), low=0)
    """λ_k per stage pair, shallowest first; empty: 1 for every pair (the CRD benchmark's
    weight)."""
    init_var: float = bounded(5.0, low=0, low_open=True)
    """Initial variance σ² of every channel (the authors' initialisation)."""
    eps: float = bounded(1e-5, low=0, low_open=True)
    """Floor ε of the variance."""

    def __post_init__(self) -> None:
        # σ² = softplus(α) + ε starts at init_var only if init_var > ε (softplus⁻¹ of ≤ 0 is nan).
        if self.init_var <= self.eps:
            raise ValueError(f"init_var must be > eps ({self.eps:g}), got {self.init_var:g}")


class VID(Method):
    """Ahn et al. 2019: maximise a variational bound on teacher-student mutual information."""

    name = "vid"
    Params = VIDParams
    needs = frozenset({"logits", "stages"})
    teacher_needs = frozenset({"stages"})
    batchable = True  # a pure function of the taps: seeds can train stacked (kdbench.batched)

    def __init__(self, params: VIDParams | None = None) -> None:
        super().__init__(params or VIDParams())
        self.regressors: nn.ModuleList | None = None

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        if teacher is None or not teacher.stages or not student.stages:
            raise Incompatible("vid needs the stage taps of both the student and the teacher")
        pairs = paired(student, teacher)
        for s, t in pairs:
            if len(s) != len(t) or len(t) - 1 not in (0, *CONVS):
                raise Incompatible(
                    f"vid pairs stages of the same rank (flat, or 1-D to 3-D maps), got {s} "
                    f"(student) and {t} (teacher)")
        hp: VIDParams = self.params
        if hp.lambdas and len(hp.lambdas) != len(pairs):
            raise Incompatible(
                f"vid has {len(hp.lambdas)} weights in lambdas but these models give "
                f"{len(pairs)} stage pairs")

    def build(self, student: TapShapes, teacher: TapShapes | None,
              info: DataInfo) -> nn.Module:
        hp: VIDParams = self.params
        self.regressors = nn.ModuleList(
            Regressor(s, t, hp.init_var, hp.eps) for s, t in paired(student, teacher))
        return self.regressors

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        hp: VIDParams = self.params
        n = len(self.regressors)
        lambdas = hp.lambdas or (1.0,) * n
        return {
            "ce": F.cross_entropy(s.logits, y),
            "vid": sum(lam * q(f_s, f_t) for lam, q, f_s, f_t in zip(
                lambdas, self.regressors, s.stages[-n:], [f.detach() for f in t.stages[-n:]],
                strict=True)),
        }
