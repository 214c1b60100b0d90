"""Knowledge distillation with soft targets.

Hinton, Vinyals and Dean (2015), "Distilling the Knowledge in a Neural
Network", arXiv:1503.02531.

    L = (1 − α) · CE(y, p_S) + α · T² · KL(p_T^T ‖ p_S^T)

where ``p^T = softmax(z / T)``. The T² factor keeps the soft term's gradient
magnitude independent of T (paper, section 2). The KL divergence is averaged
over the batch (``batchmean``), which is the true KL per sample; a mean over
elements, a common slip, would divide it by the number of classes.
Defaults T = 4, α = 0.9 are those of the CRD benchmark tables (Tian et al.
2020), the usual reference point; the paper leaves them to the task.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from kdbench.method import LossTerms, Method
from kdbench.params import LogUniform, Uniform, bounded
from kdbench.taps import Taps


def kd_loss(z_s: Tensor, z_t: Tensor, T: float) -> Tensor:
    """T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)), averaged over the batch."""
    log_p_s = F.log_softmax(z_s / T, dim=1)
    log_p_t = F.log_softmax(z_t / T, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * T * T


@dataclass(frozen=True)
class KDParams:
    T: float = bounded(4.0, low=0, low_open=True, search=LogUniform(1, 16))
    """Temperature that softens both distributions."""
    alpha: float = bounded(0.9, low=0, high=1, search=Uniform(0, 1))
    """Weight of the soft term; the hard (label) term gets 1 − α."""


class KD(Method):
    """Hinton et al. 2015: match the teacher's softened class probabilities."""

    name = "kd"
    Params = KDParams
    needs = frozenset({"logits"})
    teacher_needs = None
    batchable = True  # a pure function of the logits: seeds can train stacked (kdbench.batched)

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        p: KDParams = self.params
        return {
            "ce": (1 - p.alpha) * F.cross_entropy(s.logits, y),
            "kd": p.alpha * kd_loss(s.logits, t.logits, p.T),
        }
