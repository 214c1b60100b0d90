"""Probabilistic knowledge transfer.

Passalis and Tefas (2018), "Learning Deep Representations with Probabilistic
Knowledge Transfer", ECCV 2018, pp. 268–284, arXiv:1803.10837.

The student matches the teacher's conditional probabilities of choosing each
sample of the batch as a neighbour, estimated with the cosine-similarity
kernel ``K(a, b) = (1 + cos(a, b)) / 2``:

    p_{j|i} = K(t_i, t_j) / Σ_k K(t_i, t_k),   q_{j|i} likewise for the student
    L = CE + w · (1/B²) Σ_i Σ_j p_{j|i} · log((p_{j|i} + ε) / (q_{j|i} + ε))

Convention: the authors' code (passalis/probabilistic_kt,
``cosine_similarity_loss``): ε = 1e-7 both in the L2 normalisation and inside
the logarithm, the sum in the denominator includes ``k = i`` and the KL terms
are averaged over all ``B²`` entries (the paper writes a sum over ``i ≠ j``).
The loss is applied to the embedding (the penultimate features), as in the
CRD benchmark, whose weight w = 30000 is the default; because of the mean over
``B²`` entries the loss scales as 1/B, so that weight belongs to its batch of
64 (here the recipe's batch size, 100 by default). The similarities only depend
on the batch, so student and teacher embeddings may differ in width.
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


def conditional_probabilities(f: Tensor, eps: float = 1e-7) -> Tensor:
    """``B × B`` matrix of p_{j|i} under the cosine kernel (rows sum to 1)."""
    f = f / (f.norm(dim=1, keepdim=True) + eps)
    k = (f @ f.T + 1) / 2
    return k / k.sum(1, keepdim=True)


def pkt_loss(f_s: Tensor, f_t: Tensor, eps: float = 1e-7) -> Tensor:
    """Mean over the ``B²`` entries of p log((p + ε) / (q + ε)), p the teacher's."""
    q = conditional_probabilities(f_s, eps)
    p = conditional_probabilities(f_t, eps)
    return (p * torch.log((p + eps) / (q + eps))).mean()


@dataclass(frozen=True)
class PKTParams:
    weight: float = bounded(30000.0, low=0, search=Around(10))
    """Weight of the PKT loss (CRD benchmark, batch size 64)."""
    eps: float = bounded(1e-7, low=0, low_open=True)
    """ε of the authors' code, in the normalisation and the logarithm."""
    ce_weight: float = bounded(1.0, low=0)
    """Weight of the cross-entropy on the labels."""


class PKT(Method):
    """Passalis and Tefas 2018: match the teacher's kernel-density neighbour probabilities."""

    name = "pkt"
    Params = PKTParams
    needs = frozenset({"logits", "embedding"})
    teacher_needs = frozenset({"embedding"})
    batchable = True  # a pure function of the taps: seeds can train stacked (kdbench.batched)

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        for role, shapes in (("student", student), ("teacher", teacher)):
            if shapes is not None and shapes.embedding is None:
                raise Incompatible(f"PKT compares embeddings and the {role} has none")

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        p: PKTParams = self.params
        # In float32: under bf16 autocast the probabilities (about 1/B) keep three digits,
        # which the weight of 30000 would turn into noise.
        with torch.autocast(s.embedding.device.type, enabled=False):
            pkt = pkt_loss(s.embedding.float(), t.embedding.detach().float(), p.eps)
        return {"ce": p.ce_weight * F.cross_entropy(s.logits, y), "pkt": p.weight * pkt}
