"""Logit standardisation before knowledge distillation.

Sun, Ren, Li, Wang and Cao (2024), "Logit Standardization in Knowledge Distillation",
CVPR 2024, arXiv:2403.01427.

    Z(z) = (z − mean(z)) / std(z)                      per sample, over the classes
    L = λ_CE · CE(y, p_S) + λ_KD · τ² · KL(softmax(Z(z_T) / τ) ‖ softmax(Z(z_S) / τ))

Standardising both logit vectors before the shared temperature τ means the student matches
the teacher's logit *relations*, not their range: a student whose logits are any positive
affine map of the teacher's (a z + b, a > 0) has zero distillation loss, which plain KD
(Hinton et al. 2015) would penalise. Defaults follow the authors' code
(``sunshangquan/logit-standardization-KD``: ``--logit-stand --base-temp 2 --kd-weight 9``
with mdistiller's CE weight 1): τ = 2, λ_KD = 9, λ_CE = 1; the standard deviation is
Bessel-corrected (``torch.std``) with 1e-7 added, as there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

import kdbench
from kdbench.method import LossTerms, Method
from kdbench.params import Around, LogUniform, bounded
from kdbench.registry import Register
from kdbench.taps import Taps


def standardise(z: Tensor, eps: float = 1e-7) -> Tensor:
    """Z(z): each row's logits minus their mean, divided by their standard deviation."""
    return (z - z.mean(1, keepdim=True)) / (z.std(1, keepdim=True) + eps)


def lskd_loss(z_s: Tensor, z_t: Tensor, tau: float) -> Tensor:
    """τ² · KL(softmax(Z(z_t)/τ) ‖ softmax(Z(z_s)/τ)), averaged over the batch."""
    log_p_s = F.log_softmax(standardise(z_s) / tau, dim=1)
    log_p_t = F.log_softmax(standardise(z_t) / tau, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * tau * tau


@dataclass(frozen=True)
class LSKDParams:
    tau: float = bounded(2.0, low=0, low_open=True, search=LogUniform(1, 8))
    """The base temperature τ, applied to the standardised logits."""
    kd_weight: float = bounded(9.0, low=0, search=Around(10))
    """λ_KD, the weight of the distillation term."""
    ce_weight: float = bounded(1.0, low=0)
    """λ_CE, the weight of the label term."""


class LSKD(Method):
    """Sun et al. CVPR 2024: KD on Z-score standardised logits."""

    name = "lskd"
    Params = LSKDParams
    needs = frozenset({"logits"})          # the student's taps the loss reads
    teacher_needs = frozenset({"logits"})  # the teacher's: without it, t would be None
    batchable = True                       # a pure function of the logits: seeds may stack

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        p: LSKDParams = self.params
        return {"ce": p.ce_weight * F.cross_entropy(s.logits, y),
                "kd": p.kd_weight * lskd_loss(s.logits, t.logits, p.tau)}


@kdbench.hookimpl
def kdbench_methods(register: Register) -> None:
    register("lskd", LSKD)
