"""Activation Boundaries (AB).

Heo, Lee, Yun and Choi (2019), "Knowledge Transfer via Distillation of Activation
Boundaries Formed by Hidden Neurons", AAAI 2019, arXiv:1811.03233.

A neuron's activation boundary separates the inputs where it fires from those where it
does not. The student learns the teacher's boundaries through connectors r (a 1×1
convolution, or a linear layer on flat stages, then batch norm, to the teacher's width)
with the paper's piecewise-differentiable alternative loss, a squared hinge of margin μ:

    L(I) = ‖ ρ(T) ⊙ σ(μ1 − r(S))² + (1 − ρ(T)) ⊙ σ(μ1 + r(S))² ‖₁

where ρ(T) = 1[T > 0] marks the teacher's active neurons and σ(x) = max(0, x). As in the
paper this loss alone initialises the student (stage ``ab_init``, student and
connectors), and the student is then trained on the labels (cross-entropy; optionally
with the soft-target term of Hinton et al., ``alpha`` > 0, as the authors' CIFAR script
does with T = 3).

Follows the authors' code (bhheo/AB_distillation): μ = 1, the loss summed over the
elements and divided by the batch size, stages weighted 2^(l − L) (1 for the deepest,
halved for each shallower one) and the sum scaled by 3/1000 (``beta``); connectors are
initialised as theirs (He-normal convolution, batch norm at 1 and 0). Stage pairs are
aligned from the deepest stage; paired maps must have the same spatial size, since
neurons are matched position by position. Flat stages (an MLP's hidden layers) work too.

Our taps are the post-ReLU stage outputs, where the authors tap pre-ReLU responses. For
the teacher nothing is lost: ReLU(z) > 0 exactly when z > 0, so ρ(T) is recovered, and the
loss never uses the teacher's pre-activation magnitude (a neuron barely active and one
strongly active are the same target; the margin μ is a fixed constant, not derived from
the teacher's responses). For the student, r(S) acts on the post-ReLU output, so the
boundary that is trained is the connector's, and μ = 1 is measured in the units of its
batch norm (about one standard deviation). This is why a connector is always used, even
when the widths agree (the authors then use the identity): a post-ReLU output is never
below 0, so without one no inactive teacher neuron could be matched with margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.errors import Incompatible
from kdbench.method import LossTerms, Method, Stage
from kdbench.params import MAX_EPOCHS, Around, bounded
from kdbench.taps import Taps, TapShapes
from kdbench_methods._maps import CONVS, paired
from kdbench_methods.kd import kd_loss

_NORM = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def ab_loss(r_s: Tensor, T: Tensor, mu: float = 1.0) -> Tensor:
    """‖ρ(T) ⊙ σ(μ − r(S))² + (1 − ρ(T)) ⊙ σ(μ + r(S))²‖₁ divided by the batch size."""
    r_s = r_s.float()  # the sum runs over every element: bfloat16 would keep 3 digits of it
    rho = (T > 0).to(r_s.dtype)
    per_element = rho * F.relu(mu - r_s).pow(2) + (1 - rho) * F.relu(mu + r_s).pow(2)
    return per_element.sum() / r_s.shape[0]


def connector(s: tuple[int, ...], t: tuple[int, ...]) -> nn.Sequential:
    """r: student width to teacher width, then batch norm, initialised as the authors'."""
    dims = len(t) - 1
    if dims == 0:
        layer: nn.Module = nn.Linear(s[0], t[0], bias=False)
        nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / t[0]))
    else:
        layer = CONVS[dims](s[0], t[0], kernel_size=1, bias=False)
        nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / t[0]))
    norm = _NORM[dims](t[0])
    nn.init.ones_(norm.weight)
    nn.init.zeros_(norm.bias)
    return nn.Sequential(layer, norm)



@dataclass(frozen=True)
class ABParams:
    mu: float = bounded(1.0, low=0)
    """Margin μ of the alternative loss."""
    beta: float = bounded(3e-3, low=0, search=Around(10))
    """Scale of the initialisation loss (the authors' CIFAR script: 3/1000)."""
    epochs: int = bounded(30, low=0, high=MAX_EPOCHS)
    """Epochs of the AB initialisation before the label training (the CRD benchmark's
    ``init_epochs``; the authors' script leaves it to the user)."""
    alpha: float = bounded(0.0, low=0, high=1)
    """Weight of the soft-target term after the initialisation; the label term gets 1 − α
    (0: the paper's cross-entropy training)."""
    T: float = bounded(3.0, low=0, low_open=True)
    """Temperature of the soft-target term (the authors' script)."""


class AB(Method):
    """Heo et al. 2019: initialise the student's neurons to fire where the teacher's do."""

    name = "ab"
    Params = ABParams
    needs = frozenset({"logits", "stages"})
    teacher_needs = frozenset({"logits", "stages"})

    def __init__(self, params: ABParams | None = None) -> None:
        super().__init__(params or ABParams())
        self.connectors: nn.ModuleList | None = None

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        if teacher is None or not teacher.stages or not student.stages:
            raise Incompatible("ab needs the stage taps of both the student and the teacher")
        for s, t in paired(student, teacher):
            if len(s) != len(t) or len(t) - 1 not in _NORM:
                raise Incompatible(
                    f"ab pairs stages of the same rank (flat to 3-D maps), got {s} (student) "
                    f"and {t} (teacher)")
            if s[1:] != t[1:]:
                raise Incompatible(
                    f"ab matches neurons position by position, so paired stages need the same "
                    f"spatial size, got {s} (student) and {t} (teacher)")

    def build(self, student: TapShapes, teacher: TapShapes | None,
              info: DataInfo) -> nn.Module:
        self.connectors = nn.ModuleList(connector(s, t) for s, t in paired(student, teacher))
        return self.connectors

    def stages(self) -> list[Stage]:
        hp: ABParams = self.params
        return [Stage("ab_init", hp.epochs, self.initialisation)] if hp.epochs > 0 else []

    def initialisation(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        hp: ABParams = self.params
        n = len(self.connectors)
        total = sum(
            2.0 ** (i - n + 1) * ab_loss(r(f_s), f_t, hp.mu)
            for i, (r, f_s, f_t) in enumerate(
                zip(self.connectors, s.stages[-n:], t.stages[-n:], strict=True)))
        return {"ab": hp.beta * total}

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        hp: ABParams = self.params
        if hp.alpha == 0:
            return {"ce": F.cross_entropy(s.logits, y)}
        return {
            "ce": (1 - hp.alpha) * F.cross_entropy(s.logits, y),
            "kd": hp.alpha * kd_loss(s.logits, t.logits.detach(), hp.T),
        }
