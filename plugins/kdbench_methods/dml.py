"""Deep mutual learning.

Zhang, Xiang, Hospedales and Lu (2018), "Deep Mutual Learning", CVPR 2018,
arXiv:1706.00384.

Two networks learn together from scratch, each from the labels and from the
other's class probabilities (the paper's equations 5 and 6, at temperature 1):

    L_Θ1 = CE(y, p_1) + KL(p_2 ‖ p_1)
    L_Θ2 = CE(y, p_2) + KL(p_1 ‖ p_2)

Here network 1 is the student and network 2 the "teacher" architecture of the
benchmark, freshly initialised and trained as a peer (``trains_teacher``). The
paper alternates the two updates within a step (network 1 first, then network 2
on its new predictions); as common re-implementations do, we update both at
once from the same forward pass: each KL term treats the other network's
probabilities as a constant (detached), so the summed loss gives each network
exactly its own L_Θ gradient. The KL is
averaged over the batch (``batchmean``), the true per-sample divergence.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdbench.method import LossTerms, Method
from kdbench.taps import Taps


def dml_kl(z_target: Tensor, z: Tensor) -> Tensor:
    """KL(softmax(z_target) ‖ softmax(z)), averaged over the batch; the target is detached."""
    return F.kl_div(F.log_softmax(z, dim=1), F.log_softmax(z_target.detach(), dim=1),
                    reduction="batchmean", log_target=True)


class DML(Method):
    """Zhang et al. 2018: student and peer learn from the labels and from each other."""

    name = "dml"
    needs = frozenset({"logits"})
    teacher_needs = None
    trains_teacher = True

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        return {
            "ce": F.cross_entropy(s.logits, y),
            "kl": dml_kl(t.logits, s.logits),
            "peer_ce": F.cross_entropy(t.logits, y),
            "peer_kl": dml_kl(s.logits, t.logits),
        }
