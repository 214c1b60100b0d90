"""The cheaper formulas of CRD and KD-SVD against the formulas they replaced, kept here as
the reference (not in the product): the same values and gradients up to float noise, with
the bound measured. And the loop's once-per-epoch reading of the loss terms
against the per-step ``.item()`` it replaced: the same logged values, to the bit."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import briefly
from kdbench_methods.crd import CRD, CRDParams, crd_nce_loss, crd_softmax_loss
from kdbench_methods.kd import KD
from kdbench_methods.kdsvd import (
    KDSVD,
    KDSVDParams,
    align,
    as_matrices,
    canonical_sign,
    kdsvd_loss,
    right_singular_vectors,
)

from kdbench import contract
from kdbench.data import DataInfo
from kdbench.errors import Diverged
from kdbench.taps import Taps, TapShapes

# --- CRD: the whole bank scored when K = M − 1 ------------------------------------------


def reference_crd(critic, f_s: torch.Tensor, f_t: torch.Tensor, idx: torch.Tensor,
                  log_z: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The critic's loss as it was: every other sample's index listed and gathered."""
    p, M = critic.p, critic.M
    v_s = F.normalize(critic.embed_s(f_s), dim=1)
    v_t = F.normalize(critic.embed_t(f_t), dim=1)
    others = torch.arange(M - 1).expand(len(idx), -1)
    neg = others + (others >= idx.unsqueeze(1)).long()
    sides = []
    for anchor, bank in ((v_s, critic.memory_t), (v_t, critic.memory_s)):
        every = anchor @ bank.t().clone()  # the bank moves before the backward pass
        sides.append((every.gather(1, idx.unsqueeze(1)).squeeze(1), every.gather(1, neg)))
    if p.objective == "softmax":
        return sum(crd_softmax_loss(pos, ng, p.tau) for pos, ng in sides), log_z
    if log_z is None:
        log_z = torch.stack([
            torch.logsumexp(torch.cat([pos.unsqueeze(1), ng], 1).flatten() / p.tau, 0)
            - math.log(len(idx) * M) + math.log(M) for pos, ng in sides]).detach()
    return sum(crd_nce_loss(pos, ng, p.tau, z.exp(), M)
               for (pos, ng), z in zip(sides, log_z, strict=True)), log_z


@pytest.mark.parametrize("objective", ["nce", "softmax"])
def test_crd_scoring_the_whole_bank_matches_gathering_the_negatives(objective: str) -> None:
    torch.manual_seed(0)
    M, B = 300, 32
    method = CRD(CRDParams(objective=objective, feat_dim=16))
    shapes = (TapShapes((3,), (8,), ()), TapShapes((3,), (12,), ()))
    method.check(*shapes)
    critic = method.build(*shapes, DataInfo((8,), 3, M))
    assert critic.every_other
    reference = copy.deepcopy(critic)
    log_z = None
    for step in range(3):  # Z estimated on the first batch, then fixed; the banks move
        idx = torch.randperm(M)[:B]
        f_s = torch.randn(B, 8, requires_grad=True)
        f_t = torch.randn(B, 12)
        old, log_z = reference_crd(reference, f_s, f_t, idx, log_z)
        with torch.no_grad():
            reference._update(idx, F.normalize(reference.embed_s(f_s), dim=1),
                              F.normalize(reference.embed_t(f_t), dim=1))
        new = critic(f_s, f_t, idx)
        assert math.isclose(new.item(), old.item(), rel_tol=1e-5), step
        g_new = torch.autograd.grad(new, [f_s, *critic.parameters()])
        g_old = torch.autograd.grad(old, [f_s, *reference.parameters()])
        for a, b in zip(g_new, g_old, strict=True):
            assert (a - b).abs().max() <= 1e-5 * b.abs().max() + 1e-7, step
        assert torch.equal(critic.memory_s, reference.memory_s)
        assert torch.equal(critic.memory_t, reference.memory_t)
    if objective == "nce":
        assert torch.allclose(critic.log_z, log_z, rtol=1e-6)


# --- KD-SVD: both sides from the smaller Gram matrix, the teacher's once per sample -----


def reference_teacher_vectors(X: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's side as it was (for wide matrices; tall ones went through XᵀX): a full
    SVD (float32)."""
    c = X.shape[2]
    _, sigma, Vh = torch.linalg.svd(X, full_matrices=True)
    return Vh.mT[..., :k], F.pad(sigma, (0, c - sigma.shape[1]))[:, :k]


@pytest.mark.parametrize(("m", "c", "k"), [(19, 25, 1), (5, 25, 2), (3, 8, 5), (30, 12, 2)])
def test_kdsvd_teacher_vectors_match_a_full_svd(m: int, c: int, k: int) -> None:
    X = torch.relu(torch.randn(50, m, c, generator=torch.Generator().manual_seed(m)))
    V, sigma = right_singular_vectors(X, k)
    V_ref, sigma_ref = reference_teacher_vectors(X, k)
    assert V.shape == V_ref.shape == (50, c, k)
    assert (sigma - sigma_ref).abs().max() <= 1e-5 * sigma_ref.max()
    rank = min(m, c)
    # Singular vectors up to sign; those beyond the rank are zero here, arbitrary there.
    cos = (V[..., :rank] * V_ref[..., :rank]).sum(1).abs()
    assert (cos - 1).abs().max() < 1e-4
    assert not V[..., rank:].any() and not sigma[:, rank:].any()
    V, sigma = right_singular_vectors(torch.zeros(2, m, c), k)  # a dead map: no NaN
    assert V.isfinite().all() and not sigma.any()


def reference_student_vectors(X: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's side as it was (for wide matrices): a full SVD for the complete basis
    the gradient sums over, nothing implicit."""
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


def reference_kdsvd(method: KDSVD, s: Taps, t: Taps) -> torch.Tensor:
    """The distillation term as it was: full SVDs, the teacher's every batch."""
    hp = method.params
    n = len(method.connectors)
    V_s, V_t = [], []
    for r, f_s, f_t in zip(method.connectors, s.stages[-n:], t.stages[-n:], strict=True):
        v_t, sigma_t = reference_teacher_vectors(as_matrices(f_t.detach().float()), hp.k)
        v_t = canonical_sign(v_t)
        v_s, _ = reference_student_vectors(as_matrices(r(f_s.float())), hp.k + hp.candidates)
        w = F.normalize(sigma_t, dim=1)[:, None, :]
        V_s.append(align(v_s, v_t) * w)
        V_t.append(v_t * w)
    return kdsvd_loss(V_s, V_t)


def test_kdsvd_loss_with_cached_teacher_targets_matches_the_reference() -> None:
    """The default board's shapes (student 16 channels through a connector, teacher 25);
    the teacher's targets computed on the whole set and indexed, as the loop caches them."""
    g = torch.Generator().manual_seed(0)
    s_shapes = TapShapes((10,), None, ((16, 19), (16, 10), (16, 5)))
    t_shapes = TapShapes((10,), None, ((25, 19), (25, 10), (25, 5)))
    method = KDSVD(KDSVDParams(ramp=False))
    method.check(s_shapes, t_shapes)
    method.build(s_shapes, t_shapes, DataInfo((40,), 10, 200))
    everything = Taps(None, None, [torch.relu(torch.randn(200, *c, generator=g))
                                   for c in t_shapes.stages])
    cached = method.teacher_targets(everything)
    idx = torch.randperm(200, generator=g)[:50]
    s = Taps(torch.randn(50, 10, generator=g),
             None, [torch.relu(torch.randn(50, *c, generator=g)).requires_grad_()
                    for c in s_shapes.stages])
    t = Taps(None, None, [f[idx] for f in everything.stages],
             {k: v[idx] for k, v in cached.items()})
    y = torch.zeros(50, dtype=torch.long)
    new = method.loss(s, t, y, idx)["kdsvd"]
    plain = method.loss(s, Taps(None, None, t.stages), y, idx)["kdsvd"]  # computed per batch
    old = reference_kdsvd(method, s, t)
    assert math.isclose(new.item(), old.item(), rel_tol=1e-5)
    assert math.isclose(plain.item(), new.item(), rel_tol=1e-6)
    g_new = torch.autograd.grad(new, s.stages)
    g_old = torch.autograd.grad(old, s.stages)
    for a, b in zip(g_new, g_old, strict=True):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max()


def test_kdsvd_teacher_targets_are_cached_with_the_teachers_taps(cache_dir) -> None:
    """Without augmentation the loop computes the teacher's targets once per sample (and the
    run trains as before); with crops, once per batch."""
    calls: list[int] = []
    original = KDSVD.teacher_targets

    def counted(self, t):
        calls.append(len(t.stages[0]))
        return original(self, t)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KDSVD, "teacher_targets", counted)
        result = briefly("kdsvd", cache=cache_dir)
        assert result.status == "finished", result.error
        cached_calls = list(calls)
        calls.clear()
        result = briefly("kdsvd", cache=cache_dir, dataset_params={"num_samples": 600,
                                                                   "augment": "crop"})
        assert result.status == "finished", result.error
    # 432 training samples (480 less validation): one to size the cache, then chunks of 4
    # batches of 100.
    assert cached_calls == [1, 400, 32]
    assert calls == 2 * [100, 100, 100, 100, 32]  # every batch of both epochs


# --- The loop reads the loss terms once per epoch -------------------------------------


# ``deferred``: the values kept on the device and read at the end of the epoch, as on a
# GPU; otherwise read at each step, as on the CPU.
DEFERRED = pytest.mark.parametrize("deferred", [False, True], ids=["host", "deferred"])


@DEFERRED
def test_logged_losses_are_the_per_step_item_sums(cache_dir, deferred: bool) -> None:
    """Each epoch's logged terms are the means of the per-step Python floats, summed in step
    order exactly as the per-step ``.item()`` did."""
    seen: list[dict[str, float]] = []
    original = KD.loss

    def recorded(self, s, t, y, idx):
        terms = original(self, s, t, y, idx)
        seen.append({k: v.item() for k, v in terms.items()})
        return terms

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KD, "loss", recorded)
        mp.setattr(contract, "StepLog", functools.partial(contract.StepLog, defer=deferred))
        result = briefly("kd", cache=cache_dir, epochs=2)
    assert result.status == "finished", result.error
    per_epoch = len(seen) // 2
    for epoch, row in enumerate(result.history):
        steps = seen[epoch * per_epoch:(epoch + 1) * per_epoch]
        for name in steps[0]:
            total = 0.0
            for step in steps:
                total += step[name]
            assert row[f"loss.{name}"] == total / per_epoch  # to the bit


@DEFERRED
def test_an_error_after_a_non_finite_step_reports_the_non_finite_step(cache_dir,
                                                                      deferred: bool) -> None:
    """Deferred, steps are checked at the end of the epoch, and an error raised later in it
    (here by a loss fed the non-finite weights) gives way to the non-finite step that caused
    it. On the host the run stops at that step, before the error."""
    calls = []
    original = KD.loss

    def breaking(self, s, t, y, idx):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("linalg.eigh: the algorithm failed to converge")
        terms = original(self, s, t, y, idx)
        return {**terms, "kd": terms["kd"] * math.nan} if len(calls) == 3 else terms

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KD, "loss", breaking)
        mp.setattr(contract, "StepLog", functools.partial(contract.StepLog, defer=deferred))
        result = briefly("kd", cache=cache_dir, epochs=2)
    assert result.status == "failed"
    assert "gave non-finite loss term 'kd' = nan (finite: 'ce') in phase 'train', epoch 1 " \
           "of 2, step 3 of 5: the network's outputs are finite" in result.error
    assert ("failed to converge" in result.traceback) == deferred  # the later one, chained
    assert len(calls) == (4 if deferred else 3)


@DEFERRED
def test_step_log_reads_each_run_of_a_stack_alone(deferred: bool) -> None:
    log = contract.StepLog("kd", "train", 1, 1, 4, runs=3, defer=deferred)
    for batch, bad in enumerate([1.0, math.inf, 2.0], 1):
        log.add({"ce": torch.tensor([0.5, bad, 0.5])}, torch.tensor([0.5, bad, 0.5]), batch,
                batch - 1, torch.zeros(3, dtype=torch.float64))
    log.add({"ce": torch.tensor([0.5, 1.0, 0.5])}, torch.tensor([0.5, 1.0, 0.5]), 4, 3,
            torch.tensor([0.0, 0.0, math.nan], dtype=torch.float64))
    assert [r["ce"] for r in log.read(0)] == [0.5] * 4
    with pytest.raises(Diverged, match=r"'ce' = inf in phase 'train', epoch 1 of 1, step 2 "
                                       r"of 4: the network's outputs are finite"):
        log.read(1)
    with pytest.raises(Diverged, match=r"a finite loss with a non-finite gradient in phase "
                                       r"'train', epoch 1 of 1, step 4 of 4 \(after 3 updates"):
        log.read(2)


@DEFERRED
def test_step_log_names_divergence_from_the_outputs_of_the_failing_step(deferred: bool) -> None:
    log = contract.StepLog("the baseline", "train", 2, 3, 9, defer=deferred)
    asked = []

    def outputs(value: float):
        def total() -> torch.Tensor:
            asked.append(value)
            return torch.tensor(value, dtype=torch.float64)
        return total

    log.add({"ce": torch.tensor(0.25)}, torch.tensor(0.25), 1, 9, torch.tensor(0.0), outputs(1.0))
    # On the host the outputs are summed only for the failing step, which raises at once;
    # deferred, every step's, and the error comes when the epoch's steps are read.
    with pytest.raises(Diverged, match=r"^the baseline gave non-finite loss term 'ce' = nan in "
                       r"phase 'train', epoch 2 of 3, step 2 of 9: training diverged at epoch 2 "
                       r"\(the network's outputs are non-finite too, after 10 updates\)"):
        log.add({"ce": torch.tensor([math.nan])}, torch.tensor([math.nan]), 2, 10,
                torch.tensor(math.nan), outputs(math.inf))
        assert deferred
        log.read()
    assert asked == ([1.0, math.inf] if deferred else [math.inf])
