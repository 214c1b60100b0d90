"""Contrastive representation distillation.

Tian, Krishnan and Isola (2020), "Contrastive Representation Distillation",
ICLR 2020, arXiv:1910.10699.

Linear maps ``g_S``, ``g_T`` project the student's and teacher's embeddings to
``feat_dim`` dimensions, L2-normalised. A critic tells the pair (teacher and
student of the same sample) from K negatives (the other network's features of
other samples), read from memory banks ``s̄``, ``t̄`` of every training sample:

    P(t, s) = exp(t · s / τ) / Z,     h(t, s) = P(t, s) / (P(t, s) + K / M)
    L_nce(t; s̄) = −(1/B) Σ_i [ log h(t_i, s̄_i) + Σ_{k=1..K} log(1 − h(t_i, s̄_k)) ]
    L_crd = L_nce(t; s̄) + L_nce(s; t̄)
    L = CE(y, p_S) + β · L_crd

where M is the number of training samples and B the batch size. After each
batch, the banks move towards the batch's features:
``s̄_i ← normalise(m · s̄_i + (1 − m) · s_i)`` with m = 0.5, and likewise ``t̄``.

Convention: the authors' code (RepDistiller, ``crd/``). Both anchors are used
(teacher against the student bank and student against the teacher bank), and
``P`` is divided by a constant ``Z``, estimated once on the first batch as
``M · mean(exp(score / τ))`` (the paper's h leaves Z out). Two differences: a
sample's negatives exclude its own index (the authors' uniform draw may hit
it), and they are drawn uniformly from the whole training set as the paper
describes, not from other classes only as the authors' data loader does.

K: the paper uses 16384 negatives; here K is capped at M − 1. When K = M − 1
every other sample is a negative: the banks are scored with one matrix product,
with no sampling, and the anchor's own column of the scores is masked with −∞
(no pair) instead of gathering the M − 1 others. ``objective = "softmax"`` replaces the NCE loss by
the (K+1)-way cross-entropy ``−log softmax(score / τ)`` at the positive
(InfoNCE, as the authors' CMC code's ``NCESoftmaxLoss``), which needs no Z.
Defaults (feat_dim 128, τ = 0.07, m = 0.5, β = 0.8, CE weight 1, no KD term)
are those of the paper's CIFAR-100 tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.errors import Incompatible
from kdbench.method import LossTerms, Method
from kdbench.params import Around, bounded
from kdbench.taps import Taps, TapShapes


def crd_nce_loss(s_pos: Tensor, s_neg: Tensor, tau: float, Z: Tensor | float, M: int,
                 K: int | None = None) -> Tensor:
    """NCE loss of CRD for one anchor side.

    ``s_pos`` (B,) holds the scores of the positive pairs, ``s_neg`` (B, K) those
    of the negatives (dot products of unit vectors); a score of −∞ is no pair and
    adds nothing (the anchor's own column when the whole bank is scored, K then
    given). With P = exp(s/τ)/Z and h = P / (P + K/M):
    −(1/B) Σ_i [log h(s_pos_i) + Σ_k log(1 − h(s_neg_ik))].
    Computed in the log domain, where exp(s/τ) cannot overflow: with
    x = log P − log(K/M), log h = −softplus(−x) and log(1 − h) = −softplus(x).
    """
    K = s_neg.shape[1] if K is None else K
    shift = torch.log(torch.as_tensor(Z, dtype=s_pos.dtype, device=s_pos.device)) \
        + math.log(K / M)
    x_pos = s_pos / tau - shift
    x_neg = s_neg / tau - shift
    return (F.softplus(-x_pos).sum() + F.softplus(x_neg).sum()) / s_pos.shape[0]


def crd_softmax_loss(s_pos: Tensor, s_neg: Tensor, tau: float) -> Tensor:
    """(K+1)-way cross-entropy at the positive: −(1/B) Σ_i log softmax([s_pos, s_neg]/τ)_0
    (a negative score of −∞ is no pair)."""
    logits = torch.cat([s_pos.unsqueeze(1), s_neg], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(len(s_pos), dtype=torch.long,
                                               device=s_pos.device))


@dataclass(frozen=True)
class CRDParams:
    feat_dim: int = bounded(128, low=1)
    """Dimension of the normalised embeddings both networks are projected to."""
    K: int = bounded(16384, low=1)
    """Negatives per anchor; capped at the number of training samples − 1."""
    tau: float = bounded(0.07, low=0, low_open=True)
    """Temperature τ of the critic."""
    momentum: float = bounded(0.5, low=0, high=1)
    """Momentum m of the memory banks' update."""
    beta: float = bounded(0.8, low=0, search=Around(10))
    """Weight β of the CRD term (the cross-entropy has weight 1)."""
    objective: Literal["nce", "softmax"] = "nce"
    """``nce``: the paper's NCE loss; ``softmax``: the (K+1)-way cross-entropy (InfoNCE)."""


class CRDCritic(nn.Module):
    """The two embeddings (trained) and the two memory banks (buffers, moved by momentum)."""

    def __init__(self, d_s: int, d_t: int, num_train: int, p: CRDParams) -> None:
        super().__init__()
        self.p = p
        self.M = num_train
        self.K = min(p.K, num_train - 1)
        self.embed_s = nn.Linear(d_s, p.feat_dim)
        self.embed_t = nn.Linear(d_t, p.feat_dim)
        # The authors' initialisation: uniform entries of variance 1/feat_dim, norm ≈ 1.
        stdv = 1.0 / math.sqrt(p.feat_dim / 3)
        self.register_buffer("memory_s", torch.rand(num_train, p.feat_dim) * 2 * stdv - stdv)
        self.register_buffer("memory_t", torch.rand(num_train, p.feat_dim) * 2 * stdv - stdv)
        # log Z for the student anchor and the teacher anchor; NaN until the first batch.
        self.register_buffer("log_z", torch.full((2,), float("nan")))
        self.z_known = False

    @property
    def every_other(self) -> bool:
        """Whether every other sample is a negative (K = M − 1): nothing to draw."""
        return self.K >= self.M - 1

    def negatives(self, idx: Tensor) -> Tensor | None:
        """(B, K) indices of each anchor's negatives, K drawn uniformly (with replacement)
        among the other samples; ``None`` when every other sample is one."""
        if self.every_other:
            return None
        others = torch.randint(0, self.M - 1, (len(idx), self.K), device=idx.device)
        # Shifting the draws at or above idx_i skips the anchor's own index.
        return others + (others >= idx.unsqueeze(1)).long()

    def scores(self, anchor: Tensor, bank: Tensor, idx: Tensor, neg: Tensor | None
               ) -> tuple[Tensor, Tensor]:
        """Scores of ``anchor`` (B, d) against its positive ``bank[idx]`` and its negatives
        (``neg`` None: the whole bank, the positive's column −∞)."""
        if neg is None:
            # Masking one column of the scores is cheaper than gathering the M − 1 others
            # (and the backward's scatter into the whole bank's width). The copy: the bank is
            # updated in place before the backward pass reads it.
            every = anchor @ bank.t().clone()
            at = idx.unsqueeze(1)
            return every.gather(1, at).squeeze(1), every.scatter(1, at, -math.inf)
        if self.M <= 8 * self.K:
            # Scoring the whole bank and picking columns moves far less memory than
            # gathering B·K bank rows, unless the bank is much larger than K.
            # The copy: the bank is updated in place before the backward pass reads it.
            every = anchor @ bank.t().clone()
            return every.gather(1, idx.unsqueeze(1)).squeeze(1), every.gather(1, neg)
        pos = (anchor * bank[idx]).sum(1)
        return pos, torch.einsum("bd,bkd->bk", anchor, bank[neg])

    def forward(self, f_s: Tensor, f_t: Tensor, idx: Tensor) -> Tensor:
        p = self.p
        idx = idx.to(self.memory_s.device)
        # exp(s/τ) over thousands of negatives needs float32 even under bf16 autocast.
        with torch.autocast(f_s.device.type, enabled=False):
            v_s = F.normalize(self.embed_s(f_s.float()), dim=1)
            v_t = F.normalize(self.embed_t(f_t.float()), dim=1)
            neg = self.negatives(idx)
            pos_s, neg_s = self.scores(v_s, self.memory_t, idx, neg)
            pos_t, neg_t = self.scores(v_t, self.memory_s, idx, neg)
            if p.objective == "softmax":
                loss = crd_softmax_loss(pos_s, neg_s, p.tau) + crd_softmax_loss(pos_t, neg_t,
                                                                                p.tau)
            else:
                log_z = self._log_z(pos_s, neg_s, pos_t, neg_t)
                loss = (crd_nce_loss(pos_s, neg_s, p.tau, log_z[0].exp(), self.M, self.K)
                        + crd_nce_loss(pos_t, neg_t, p.tau, log_z[1].exp(), self.M, self.K))
            self._update(idx, v_s, v_t)
        return loss

    @torch.no_grad()
    def _log_z(self, *scores: Tensor) -> Tensor:
        """The fixed normaliser: M · mean(exp(score/τ)) on the first batch, per anchor side."""
        if not self.z_known:
            estimate = []
            for pos, neg in zip(scores[::2], scores[1::2], strict=True):
                all_scores = torch.cat([pos.unsqueeze(1), neg], dim=1) / self.p.tau
                # The mean over the B·(1 + K) pairs; a masked −∞ adds nothing to the sum.
                estimate.append(torch.logsumexp(all_scores.flatten(), 0)
                                - math.log(len(pos) * (1 + self.K)) + math.log(self.M))
            self.log_z.copy_(torch.stack(estimate))
            self.z_known = True
        return self.log_z

    @torch.no_grad()
    def _update(self, idx: Tensor, v_s: Tensor, v_t: Tensor) -> None:
        m = self.p.momentum
        for bank, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
            moved = F.normalize(bank[idx] * m + v.detach() * (1 - m), dim=1)
            bank.index_copy_(0, idx, moved.to(bank.dtype))


class CRD(Method):
    """Tian et al. 2020: contrast the student's embedding with the teacher's across samples."""

    name = "crd"
    Params = CRDParams
    needs = frozenset({"logits", "embedding"})
    teacher_needs = frozenset({"embedding"})

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        if student.embedding is None or teacher is None or teacher.embedding is None:
            raise Incompatible("CRD needs an embedding tap on both the student and the teacher")

    def build(self, student: TapShapes, teacher: TapShapes | None,
              info: DataInfo) -> nn.Module:
        if info.num_train < 2:
            raise Incompatible("CRD needs at least two training samples to draw negatives")
        self.critic = CRDCritic(math.prod(student.embedding), math.prod(teacher.embedding),
                                info.num_train, self.params)
        return self.critic

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        # Only the teacher's embedding map g_T learns from the teacher side, never the teacher.
        f_t = t.embedding.detach()
        return {"ce": F.cross_entropy(s.logits, y),
                "crd": self.params.beta * self.critic(s.embedding, f_t, idx)}
