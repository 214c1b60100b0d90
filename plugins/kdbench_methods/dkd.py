"""Decoupled knowledge distillation.

Zhao, Cui, Song, Qiu and Liang (2022), "Decoupled Knowledge Distillation",
CVPR 2022, pp. 11953–11962, arXiv:2203.08679.

Split the softened class probabilities ``p = softmax(z / T)`` of the target
class ``t`` into the binary vector ``b = [p_t, 1 − p_t]`` and the distribution
``p̂ = softmax(z_{\\t} / T)`` over the non-target classes. Classical KD equals
``TCKD + (1 − p_t^T) · NCKD`` (paper, eq. 7); DKD drops the coupling factor and
weights both parts freely:

    L = CE(y, p_S) + w(e) · T² · (α · KL(b^T ‖ b^S) + β · KL(p̂^T ‖ p̂^S))

with the linear warm-up ``w(e) = min(e / warmup, 1)`` at the 1-based epoch
``e`` (authors' code, mdistiller ``DKD.forward_train``). Both KL divergences
are summed over classes and averaged over the batch, as in the authors' code.
The non-target distribution is computed exactly, by dropping the target
column; the authors subtract 1000 from the target logit instead, which differs
by ``e^{-1000}``.

Defaults are the authors' CIFAR-100 configuration (mdistiller ``CFG.DKD``):
α = 1, β = 8, T = 4, CE weight 1, warm-up over 20 epochs of a 240-epoch
schedule. β is tuned per setting: some CIFAR-100 pairs use another value
(6 for WRN-40-2 → WRN-16-2), ImageNet uses β = 0.5, T = 1 and a 1-epoch warm-up.
The warm-up counts epochs, not a fraction of training: with a much shorter
recipe, scale ``warmup`` down (e.g. 20/240 of the epochs) or set it to 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from kdbench.errors import Incompatible
from kdbench.method import LossTerms, Method
from kdbench.params import MAX_EPOCHS, Around, LogUniform, bounded
from kdbench.taps import Taps, TapShapes


def _target_mask(z: Tensor, y: Tensor) -> Tensor:
    return F.one_hot(y, z.shape[1]).bool()


def _binary_log_probs(z: Tensor, y: Tensor, T: float) -> Tensor:
    """log b = [log p_t, log(1 − p_t)] of softmax(z/T), with log(1 − p_t) as a stable
    log-sum-exp over the non-target classes."""
    log_p = F.log_softmax(z / T, dim=1)
    target = log_p.gather(1, y[:, None])
    others = log_p.masked_fill(_target_mask(z, y), float("-inf")).logsumexp(1, keepdim=True)
    return torch.cat([target, others], dim=1)


def tckd_loss(z_s: Tensor, z_t: Tensor, y: Tensor, T: float) -> Tensor:
    """T² · KL(b^T ‖ b^S): target-class knowledge, averaged over the batch."""
    return F.kl_div(_binary_log_probs(z_s, y, T), _binary_log_probs(z_t, y, T),
                    reduction="batchmean", log_target=True) * T * T


def nckd_loss(z_s: Tensor, z_t: Tensor, y: Tensor, T: float) -> Tensor:
    """T² · KL(p̂^T ‖ p̂^S) over the non-target classes, averaged over the batch."""
    keep = ~_target_mask(z_s, y)
    n, c = z_s.shape
    log_q_s = F.log_softmax(z_s[keep].view(n, c - 1) / T, dim=1)
    log_q_t = F.log_softmax(z_t[keep].view(n, c - 1) / T, dim=1)
    return F.kl_div(log_q_s, log_q_t, reduction="batchmean", log_target=True) * T * T


@dataclass(frozen=True)
class DKDParams:
    alpha: float = bounded(1.0, low=0, search=Around(10))
    """Weight α of the target-class term (TCKD)."""
    beta: float = bounded(8.0, low=0, search=Around(10))
    """Weight β of the non-target-class term (NCKD); the paper's CIFAR-100 value."""
    T: float = bounded(4.0, low=0, low_open=True, search=LogUniform(1, 16))
    """Temperature of both distributions."""
    ce_weight: float = bounded(1.0, low=0)
    """Weight of the cross-entropy on the labels."""
    warmup: int = bounded(20, low=0, high=MAX_EPOCHS)
    """Epochs over which the KD terms' weight rises linearly to 1; 0 disables the ramp."""


class DKD(Method):
    """Zhao et al. 2022: target and non-target class knowledge, weighted separately."""

    name = "dkd"
    Params = DKDParams
    needs = frozenset({"logits"})
    teacher_needs = None

    def __init__(self, params: DKDParams | None = None) -> None:
        super().__init__(params)
        self.ramp = 1.0
        if params is not None:
            self.start_epoch(0, 1)

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        if teacher is not None and student.logits != teacher.logits:
            raise Incompatible(f"DKD compares class probabilities, but the student has "
                               f"{student.logits} logits and the teacher {teacher.logits}")

    def start_epoch(self, epoch: int, epochs: int) -> None:
        w = self.params.warmup
        # The authors count epochs from 1, so the first epoch already has weight 1/warmup.
        self.ramp = min((epoch + 1) / w, 1.0) if w > 0 else 1.0

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        p: DKDParams = self.params
        z_t = t.logits.detach()  # the authors compute the teacher under no_grad
        return {
            "ce": p.ce_weight * F.cross_entropy(s.logits, y),
            "tckd": self.ramp * p.alpha * tckd_loss(s.logits, z_t, y, p.T),
            "nckd": self.ramp * p.beta * nckd_loss(s.logits, z_t, y, p.T),
        }
