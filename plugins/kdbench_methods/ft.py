"""Factor Transfer (FT).

Kim, Park and Kwak (2018), "Paraphrasing Complex Network: Network Compression via
Factor Transfer", NeurIPS 2018, arXiv:1802.04977.

A paraphraser P, a convolutional autoencoder on the teacher's last stage x, is first
trained alone to reconstruct it (stage ``paraphraser``; the teacher is frozen and the
student is not reached by this loss, so only P learns):

    L_rec = ‖x − P(x)‖₁

Its encoder's output, with m = round(k·C_T) channels (paraphrase rate k = 0.5), is the
teacher factor F_T. A translator (an encoder of the same shape) on the student's last
stage gives the student factor F_S, and the student is trained with

    L = CE(y, p_S) + β · ‖ F_T/‖F_T‖₂ − F_S/‖F_S‖₂ ‖_p ,   p = 1

Follows the authors' code (Jangho-Kim/Factor-Transfer-pytorch): three 3-wide
convolutions with LeakyReLU(0.1) and no batch norm in both modules (transposed
convolutions in the decoder), L1 reconstruction, factors flattened per sample before
the l2 normalisation, and the p-norm taken as the mean of |·|^p over the elements
(their ``nn.L1Loss``), the scale for which β = 500 is the authors' value. That mean
makes the term shrink as about 1/√D with the factor's size D: on MNIST-1D's small last
stage (12 × 5) it starts near 45 against a cross-entropy of 2.3. The CRD
benchmark (Tian et al. 2020, RepDistiller) uses β = 200 with a different, attention-like
factor (the channel mean of F²); that variant is not reproduced here. The paraphraser is
frozen after its stage: F_T carries no gradient, so the translator cannot drag it.

Maps may be 1-D ``(C, L)`` or 2-D ``(C, H, W)`` (Conv1d or Conv2d by the map's rank);
flat stages are refused. If the two last stages differ in spatial size, the larger
factor is average-pooled to the smaller one's size (as RepDistiller does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.errors import Incompatible
from kdbench.method import LossTerms, Method, Stage
from kdbench.params import MAX_EPOCHS, Around, bounded
from kdbench.taps import Taps, TapShapes
from kdbench_methods._maps import CONVS, match_sizes

_DECONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def ft_loss(F_s: Tensor, F_t: Tensor, p: int = 1) -> Tensor:
    """mean |F_T/‖F_T‖₂ − F_S/‖F_S‖₂|^p, each factor flattened per sample."""
    # float32: under bfloat16 autocast the normalisation and the mean lose most digits
    d = F.normalize(F_t.flatten(1).float(), dim=1) - F.normalize(F_s.flatten(1).float(), dim=1)
    return d.abs().pow(p).mean()


def reconstruction_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """‖x − P(x)‖₁ averaged over the elements (the authors' ``nn.L1Loss``)."""
    return (x_hat - x).abs().mean()



def _encoder(c_in: int, m: int, dims: int) -> nn.Sequential:
    conv = CONVS[dims]
    return nn.Sequential(
        conv(c_in, c_in, 3, padding=1), nn.LeakyReLU(0.1),
        conv(c_in, m, 3, padding=1), nn.LeakyReLU(0.1),
        conv(m, m, 3, padding=1), nn.LeakyReLU(0.1),
    )


class Paraphraser(nn.Module):
    """Autoencoder on the teacher's map; the encoder's output is the teacher factor."""

    def __init__(self, c_t: int, m: int, dims: int) -> None:
        super().__init__()
        deconv = _DECONV[dims]
        self.encoder = _encoder(c_t, m, dims)
        self.decoder = nn.Sequential(
            deconv(m, m, 3, padding=1), nn.LeakyReLU(0.1),
            deconv(m, c_t, 3, padding=1), nn.LeakyReLU(0.1),
            deconv(c_t, c_t, 3, padding=1), nn.LeakyReLU(0.1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


@dataclass(frozen=True)
class FTParams:
    beta: float = bounded(500.0, low=0, search=Around(10))
    """Weight β of the factor loss (authors' code; the CRD benchmark uses 200 with its own
    factor)."""
    rate: float = bounded(0.5, low=0, low_open=True)
    """Paraphrase rate k: the factor has round(k·C_T) channels."""
    p: Literal[1, 2] = 1
    """Norm of the factor difference (the paper's choice is 1)."""
    paraphraser_epochs: int = bounded(5, low=0, high=MAX_EPOCHS)
    """Epochs of paraphraser training before the student's (the authors' script: 5)."""


class FT(Method):
    """Kim et al. 2018: match the student's translated factor to the teacher's paraphrased one."""

    name = "ft"
    Params = FTParams
    needs = frozenset({"logits", "stages"})
    teacher_needs = frozenset({"stages"})

    def __init__(self, params: FTParams | None = None) -> None:
        super().__init__(params or FTParams())
        self.paraphraser: Paraphraser | None = None
        self.translator: nn.Module | None = None

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        if teacher is None or not teacher.stages or not student.stages:
            raise Incompatible("ft needs the stage taps of both the student and the teacher")
        s, t = student.stages[-1], teacher.stages[-1]
        if len(s) < 2 or len(t) < 2:
            raise Incompatible(
                f"ft needs feature maps at the last stage, got flat stages {s} (student) and "
                f"{t} (teacher)")
        if len(s) != len(t) or len(s) - 1 not in CONVS:
            raise Incompatible(
                f"ft needs last-stage maps of the same rank (1-D to 3-D), got {s} (student) "
                f"and {t} (teacher)")

    def build(self, student: TapShapes, teacher: TapShapes | None,
              info: DataInfo) -> nn.Module:
        hp: FTParams = self.params
        s, t = student.stages[-1], teacher.stages[-1]
        dims = len(t) - 1
        m = max(1, round(hp.rate * t[0]))
        self.paraphraser = Paraphraser(t[0], m, dims)
        self.translator = _encoder(s[0], m, dims)
        return nn.ModuleDict({"paraphraser": self.paraphraser, "translator": self.translator})

    def stages(self) -> list[Stage]:
        hp: FTParams = self.params
        if hp.paraphraser_epochs <= 0:
            return []
        return [Stage("paraphraser", hp.paraphraser_epochs, self.reconstruction,
                      trains_student=False)]

    def reconstruction(self, s: Taps | None, t: Taps | None, y: Tensor, idx: Tensor
                       ) -> LossTerms:
        x = t.stages[-1].detach()
        return {"rec": reconstruction_loss(self.paraphraser(x), x)}

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        hp: FTParams = self.params
        with torch.no_grad():
            F_t = self.paraphraser.encoder(t.stages[-1])
        F_s = self.translator(s.stages[-1])
        F_s, F_t = match_sizes(F_s, F_t)
        return {
            "ce": F.cross_entropy(s.logits, y),
            "ft": hp.beta * ft_loss(F_s, F_t, hp.p),
        }
