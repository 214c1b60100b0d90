"""FitNets: hint-based training of a thin student.

Romero, Ballas, Kahou, Chassang, Gatta and Bengio (2015), "FitNets: Hints for
Thin Deep Nets", ICLR 2015, arXiv:1412.6550.

A regressor r on the student's guided layer v_g is trained, with the student up
to that layer, to predict the teacher's hint layer u_h (eq. 3):

    L_HT(W_Guided, W_r) = ½ · ‖u_h(x) − r(v_g(x); W_r)‖²

Stage 1 minimises L_HT alone; stage 2 trains the whole student with KD
(Hinton et al. 2015). Choices here:

* The hint is reduced by the **mean over elements** (batch, channels,
  positions) of the squared difference, without the ½, as RepDistiller's and
  mdistiller's ``HintLoss`` (``MSELoss``) do; the paper's ½·sum only rescales
  it, and β = 100 of the CRD tables was tuned for the mean.
* The regressor is a 1×1 convolution to the teacher's channel count
  (``Conv1d`` for 1-D maps, ``Conv2d`` for 2-D, ``Linear`` for flat stages),
  followed by a ReLU because the paper requires r to have the hint layer's
  non-linearity and stage taps end in a ReLU (``relu=False`` for signed hints).
  The paper sizes the kernel N_g − N_h + 1 so that the student's map shrinks to
  the teacher's; 1×1 is that kernel for equal sizes. When the spatial sizes
  differ, the larger map is adaptive-average-pooled to the smaller one instead
  (the teacher's hint to the student's size when the teacher's is larger).
* ``batchnorm=True`` puts a BatchNorm between the regressor's convolution and its
  ReLU, as RepDistiller's ``ConvReg`` does (the CRD tables' FitNet, whose β = 100
  assumes it: without it the hint's first gradients, β times a mean square of
  order 10 for BN-scaled teacher maps, throw a wrn_16_2 student's regressor to
  overflow within three steps at lr 0.05, measured). The paper's regressor has
  none (off by default).
* Guided layer: the student's middle stage by default (``guided``); the hint
  layer is the teacher's stage of the same index.
* Stage 1 ("hint", ``hint_epochs`` = 5 epochs here; the paper trains it to
  convergence) reaches only the student up to the guided layer and the
  regressor, as in the paper. Stage 2 is the plain KD loss with T = 4,
  α = 0.9 (the CRD tables' values), not the paper's annealed λ.
* ``two_stage=False`` gives the one-stage variant of later benchmarks (CRD,
  Tian et al. 2020): L = CE + β · L_HT with β = 100, and no KD term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.errors import Incompatible
from kdbench.method import LossTerms, Method, Stage
from kdbench.params import MAX_EPOCHS, LogUniform, Uniform, bounded
from kdbench.taps import Taps, TapShapes
from kdbench_methods._maps import connector, match_sizes
from kdbench_methods.kd import kd_loss

_NORMS = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
"""The BatchNorm over the channels of a map with that many spatial axes (0: flat)."""


def hint_loss(u_h: Tensor, r_v: Tensor) -> Tensor:
    """mean over elements of (u_h − r(v_g))², the paper's ½‖·‖² up to a constant factor."""
    r_v, u_h = match_sizes(r_v, u_h) if u_h.dim() > 2 else (r_v, u_h)
    return (u_h.float() - r_v.float()).pow(2).mean()


@dataclass(frozen=True)
class FitNetParams:
    guided: int | None = None
    """Index of the student's guided stage and the teacher's hint stage; None: the student's
    middle stage."""
    two_stage: bool = True
    """The paper's recipe: a hint stage, then KD. False: one stage of CE + β · hint (CRD)."""
    hint_epochs: int = bounded(5, low=0, high=MAX_EPOCHS)
    """Epochs of the hint stage (the paper trains it to convergence)."""
    beta: float = bounded(100.0, low=0)
    """Weight of the hint in the one-stage variant (CRD: 100)."""
    T: float = bounded(4.0, low=0, low_open=True, search=LogUniform(1, 16))
    """KD temperature in stage 2."""
    alpha: float = bounded(0.9, low=0, high=1, search=Uniform(0, 1))
    """Weight of the KD term in stage 2; the label term gets 1 − α."""
    relu: bool = True
    """End the regressor with a ReLU, the hint layer's non-linearity for the usual taps."""
    batchnorm: bool = False
    """A BatchNorm after the regressor's convolution (RepDistiller's ConvReg, the CRD tables)."""


class FitNet(Method):
    """Romero et al. 2015: regress the teacher's middle feature map from the student's."""

    name = "fitnet"
    Params = FitNetParams
    needs = frozenset({"logits", "stages"})
    teacher_needs = None

    def __init__(self, params: FitNetParams | None = None) -> None:
        super().__init__(params or FitNetParams())
        self.regressor: nn.Module | None = None
        self.g = 0

    def teacher_taps(self) -> frozenset[str]:  # an instance's: it depends on two_stage
        """The teacher's stages, and its logits for the KD stage: the one-stage variant reads
        no logits, so a teacher without them (PCA features) can give hints."""
        return self.needs if self.params.two_stage else frozenset({"stages"})

    def uses_teacher(self) -> bool:
        return True

    def _index(self, shapes: TapShapes) -> int:
        p: FitNetParams = self.params
        return len(shapes.stages) // 2 if p.guided is None else p.guided

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        if not student.stages:
            raise Incompatible("FitNets needs stage taps and the student names none")
        g = self._index(student)
        for who, shapes in (("student", student), ("teacher", teacher)):
            if shapes is not None and not -len(shapes.stages) <= g < len(shapes.stages):
                raise Incompatible(f"guided stage {g} is out of range: the {who} has "
                                   f"{len(shapes.stages)} stages")
        if teacher is not None and len(student.stages[g]) != len(teacher.stages[g]):
            raise Incompatible(f"the student's guided stage {student.stages[g]} and the "
                               f"teacher's hint stage {teacher.stages[g]} are not the same kind "
                               "of map (flat, 1-D or 2-D)")

    def build(self, student: TapShapes, teacher: TapShapes | None,
              info: DataInfo) -> nn.Module:
        self.g = self._index(student)
        v, u = student.stages[self.g], teacher.stages[self.g]
        layers = [connector(v[0], u[0], len(v) - 1)]
        if self.params.batchnorm:
            layers.append(_NORMS[len(v) - 1](u[0]))
        if self.params.relu:
            layers.append(nn.ReLU())
        self.regressor = nn.Sequential(*layers)
        return self.regressor

    def hint(self, s: Taps, t: Taps) -> Tensor:
        """L_HT between the teacher's hint stage and the regressed guided stage."""
        return hint_loss(t.stages[self.g].detach(), self.regressor(s.stages[self.g]))

    def _hint_stage(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        return {"hint": self.hint(s, t)}

    def stages(self) -> list[Stage]:
        p: FitNetParams = self.params
        if not p.two_stage or p.hint_epochs <= 0:
            return []
        return [Stage("hint", p.hint_epochs, self._hint_stage)]

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        p: FitNetParams = self.params
        if p.two_stage:
            return {
                "ce": (1 - p.alpha) * F.cross_entropy(s.logits, y),
                "kd": p.alpha * kd_loss(s.logits, t.logits.detach(), p.T),
            }
        return {"ce": F.cross_entropy(s.logits, y), "hint": p.beta * self.hint(s, t)}
