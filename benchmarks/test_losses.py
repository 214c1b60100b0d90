"""The expensive losses against the formulas they replaced, per batch, forward and backward
(pytest-benchmark; ``python -m pytest benchmarks/test_losses.py --benchmark-only
--benchmark-enable -s``; never in the plain test run).

Each case computes one method's loss terms for a batch of B = 100 (``BATCH``) from taps of
the default board's shapes (``leaderboard/mnist1d.toml``: the 16-channel student's stages
(16, 19), (16, 10), (16, 5) and 80-wide embedding; the 25-channel teacher's (25, ·) stages
and 125-wide embedding; 3,601 training samples, CRD's memory banks), post-ReLU random
values, and backpropagates their sum. ``old`` is the formula as it was, kept here as the
reference (``tests/test_loss_references.py`` checks that both give the same values); ``new``
is the method's ``loss``. Both run in the same process on one thread, interleaved round by
round (old first, then new first...), so that load from other processes falls on both alike,
and are timed in CPU seconds (``time.process_time``): the median per batch of each side, and
their ratio, are printed and kept in the benchmark's ``extra_info``.

KD-SVD runs twice: with the teacher's targets computed per batch (the default board, whose
random crops change the teacher's input every epoch) and indexed from the per-sample cache
(a benchmark without augmentation). ``rkd-gram-teacher`` measures a candidate that was not
adopted (RKD's loss is unchanged): the frozen teacher's angles from its Gram matrix
(:func:`gram_angles`) against RKD's loss as it is.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from kdbench_methods.crd import CRD, CRDParams, crd_nce_loss, crd_softmax_loss
from kdbench_methods.kdsvd import (
    KDSVD,
    KDSVDParams,
    align,
    as_matrices,
    canonical_sign,
    kdsvd_loss,
)
from kdbench_methods.rkd import RKD, angle_potential, distance_potential

from kdbench.data import DataInfo
from kdbench.taps import Taps, TapShapes

BATCH = 100
NUM_TRAIN = 3601  # the default board's training split (4,000 less test, less validation)
CALLS = 20  # batches per side and round
ROUNDS = 5

STUDENT = TapShapes((10,), (80,), ((16, 19), (16, 10), (16, 5)))
TEACHER = TapShapes((10,), (125,), ((25, 19), (25, 10), (25, 5)))


def _taps(shapes: TapShapes, grad: bool, seed: int, n: int = BATCH) -> Taps:
    g = torch.Generator().manual_seed(seed)

    def relu(*shape: int) -> torch.Tensor:
        return torch.relu(torch.randn(n, *shape, generator=g)).requires_grad_(grad)

    return Taps(torch.randn(n, *shapes.logits, generator=g).requires_grad_(grad),
                relu(*shapes.embedding), [relu(*s) for s in shapes.stages])


# --- the formulas as they were -----------------------------------------------------------


def old_student_vectors(X: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A wide student matrix decomposed by a full SVD, for the complete basis the gradient
    sums over."""
    c = X.shape[2]
    G = X.mT @ X
    with torch.no_grad():
        _, sigma, Vh = torch.linalg.svd(X.detach(), full_matrices=True)
        V, lam = Vh.mT, F.pad(sigma.pow(2), (0, c - sigma.shape[1]))
    V_k, sigma_k = V[..., :k], lam[:, :k].sqrt()
    gap = lam[:, None, :k] - lam[:, :, None]
    delta = 1e-3 * lam[:, :1, None] + 1e-12
    dV = V @ ((V.mT @ (G @ V_k)) * (gap / (gap.pow(2) + delta.pow(2))))
    return V_k + (dV - dV.detach()), sigma_k


def old_kdsvd(method: KDSVD, s: Taps, t: Taps, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Both sides' maps decomposed by a full SVD, the teacher's every batch."""
    n = len(method.connectors)
    V_s, V_t = [], []
    for r, f_s, f_t in zip(method.connectors, s.stages[-n:], t.stages[-n:], strict=True):
        X = as_matrices(f_t.detach().float())
        _, sigma, Vh = torch.linalg.svd(X, full_matrices=True)
        v_t = canonical_sign(Vh.mT[..., :method.params.k])
        sigma_t = F.pad(sigma, (0, X.shape[2] - sigma.shape[1]))[:, :method.params.k]
        v_s, _ = old_student_vectors(as_matrices(r(f_s.float())),
                                     method.params.k + method.params.candidates)
        w = F.normalize(sigma_t, dim=1)[:, None, :]
        V_s.append(align(v_s, v_t) * w)
        V_t.append(v_t * w)
    return {"ce": F.cross_entropy(s.logits, y),
            "kdsvd": method.params.beta * method.weight * kdsvd_loss(V_s, V_t)}


@torch.no_grad()
def gram_angles(t: torch.Tensor, block: int = 4) -> torch.Tensor:
    """RKD's ψ_A from the Gram matrix G of the centred points, in float64 (a float32 Gram is
    1.6e-2 off for two points 1e-3 of the spread apart): ψ_A[j, i, k] = q_ji q_jk (G_ik −
    r_ji − r_jk), q_ji = 1/‖t_i − t_j‖, r_ji = G_ji − G_jj/2, ``block`` vertices at a time
    (their float64 temporaries in cache). A candidate for the frozen teacher's angles, NOT
    adopted: measured here it saves too little of RKD's cost (below)."""
    dtype, t = t.dtype, t.double()
    t = t - t.mean(0)
    G = t @ t.T
    g = G.diagonal()
    d2 = g[:, None] + g[None, :] - 2 * G
    q = torch.where(d2 > 1e-12 * g.max(), d2.clamp(min=1e-300).rsqrt(), 0)
    r = (G - g[:, None] / 2) * q
    rq, qr = torch.stack([r, q], 2), torch.stack([q, r], 1)
    return torch.cat([
        torch.baddbmm(torch.mul(q[j:j + block, :, None], q[j:j + block, None, :]).mul_(G),
                      rq[j:j + block], qr[j:j + block], alpha=-1).to(dtype)
        for j in range(0, len(t), block)])


def gram_rkd(method: RKD, s: Taps, t: Taps, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """RKD with the teacher's angles from :func:`gram_angles` (``new`` of the ``rkd`` case)."""
    p = method.params
    e_s, e_t = s.embedding, t.embedding.detach()
    return {"ce": p.ce_weight * F.cross_entropy(s.logits, y),
            "distance": p.lambda_d * F.smooth_l1_loss(distance_potential(e_s),
                                                      distance_potential(e_t)),
            "angle": p.lambda_a * F.smooth_l1_loss(angle_potential(e_s), gram_angles(e_t))}


def old_crd(method: CRD, s: Taps, t: Taps, y: torch.Tensor, idx: torch.Tensor
            ) -> dict[str, torch.Tensor]:
    """Every other sample's index listed, and its score gathered, for each anchor."""
    critic, p = method.critic, method.params
    v_s = F.normalize(critic.embed_s(s.embedding), dim=1)
    v_t = F.normalize(critic.embed_t(t.embedding.detach()), dim=1)
    others = torch.arange(critic.M - 1).expand(len(idx), -1)
    neg = others + (others >= idx.unsqueeze(1)).long()
    sides = []
    for anchor, bank in ((v_s, critic.memory_t), (v_t, critic.memory_s)):
        every = anchor @ bank.t().clone()
        sides.append((every.gather(1, idx.unsqueeze(1)).squeeze(1), every.gather(1, neg)))
    if p.objective == "softmax":
        loss = sum(crd_softmax_loss(pos, ng, p.tau) for pos, ng in sides)
    else:
        loss = sum(crd_nce_loss(pos, ng, p.tau, z.exp(), critic.M)
                   for (pos, ng), z in zip(sides, critic.log_z, strict=True))
    critic._update(idx, v_s, v_t)
    return {"ce": F.cross_entropy(s.logits, y), "crd": p.beta * loss}


# --- the cases ---------------------------------------------------------------------------


def _kdsvd(cached: bool) -> tuple[Callable, Callable]:
    method = KDSVD(KDSVDParams(ramp=False))
    method.check(STUDENT, TEACHER)
    method.build(STUDENT, TEACHER, DataInfo((40,), 10, NUM_TRAIN))
    s, t = _taps(STUDENT, True, 0), _taps(TEACHER, False, 1)
    y, idx = torch.zeros(BATCH, dtype=torch.long), torch.arange(BATCH)
    targets = method.teacher_targets(t) if cached else {}

    def new() -> dict:
        if cached:  # what the loop's cache hands the loss: the targets, indexed
            return method.loss(s, Taps(t.logits, t.embedding, t.stages,
                                       {k: v[idx] for k, v in targets.items()}), y, idx)
        return method.loss(s, t, y, idx)

    return (lambda: old_kdsvd(method, s, t, y)), new


def _rkd() -> tuple[Callable, Callable]:
    """``old``: RKD's loss as it is; ``new``: the Gram candidate for the teacher's angles."""
    method = RKD(RKD.Params())
    s, t = _taps(STUDENT, True, 0), _taps(TEACHER, False, 1)
    y, idx = torch.zeros(BATCH, dtype=torch.long), torch.arange(BATCH)
    return (lambda: method.loss(s, t, y, idx)), (lambda: gram_rkd(method, s, t, y))


def _crd(objective: str) -> tuple[Callable, Callable]:
    torch.manual_seed(0)
    method = CRD(CRDParams(objective=objective))
    method.check(STUDENT, TEACHER)
    method.build(STUDENT, TEACHER, DataInfo((40,), 10, NUM_TRAIN))
    reference = copy.deepcopy(method)
    s, t = _taps(STUDENT, True, 0), _taps(TEACHER, False, 1)
    y = torch.zeros(BATCH, dtype=torch.long)
    idx = torch.randperm(NUM_TRAIN)[:BATCH]
    method.loss(s, t, y, idx)  # Z estimated on a first batch, as in training
    reference.critic.log_z.copy_(method.critic.log_z)
    return (lambda: old_crd(reference, s, t, y, idx)), (lambda: method.loss(s, t, y, idx))


CASES = {
    "kdsvd-per-batch": lambda: _kdsvd(False),
    "kdsvd-cached": lambda: _kdsvd(True),
    "rkd-gram-teacher": _rkd,
    "crd-nce": lambda: _crd("nce"),
    "crd-softmax": lambda: _crd("softmax"),
}


@pytest.mark.parametrize("case", CASES)
def test_loss_before_and_after(benchmark, case: str) -> None:
    torch.set_num_threads(1)
    old, new = CASES[case]()
    times: dict[str, list[float]] = {"old": [], "new": []}

    def step(loss: Callable[[], dict]) -> None:
        sum(loss().values()).backward()

    def timed(name: str, loss: Callable[[], dict]) -> None:
        step(loss)  # warm
        for _ in range(CALLS):
            start = time.process_time()
            step(loss)
            times[name].append(time.process_time() - start)

    def one_round() -> None:
        first = len(times["old"]) // CALLS % 2 == 0
        for name, loss in [("old", old), ("new", new)][::1 if first else -1]:
            timed(name, loss)

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    old_ms, new_ms = (1e3 * statistics.median(times[k]) for k in ("old", "new"))
    benchmark.extra_info.update(old_ms=old_ms, new_ms=new_ms, ratio=new_ms / old_ms)
    print(f"\n{case}: B = {BATCH}, forward and backward, 1 thread, median CPU ms per batch of "
          f"{ROUNDS} x {CALLS}: old {old_ms:.2f}, new {new_ms:.2f}: x{new_ms / old_ms:.2f} "
          f"({1 - new_ms / old_ms:+.0%} saved)")
    assert math.isfinite(new_ms)

