"""DKD, DIST, RKD, PKT, SP and CC: each loss against an independent hand computation,
gradients that reach only the student and connectors, short trainings, and refusals."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import briefly
from kdbench_methods.cc import CC, CCParams, cc_loss
from kdbench_methods.dist import DIST, DISTParams, dist_losses
from kdbench_methods.dkd import DKD, DKDParams, nckd_loss, tckd_loss
from kdbench_methods.kd import kd_loss
from kdbench_methods.pkt import PKT, PKTParams, pkt_loss
from kdbench_methods.rkd import RKD, RKDParams, rkd_angle_loss, rkd_distance_loss
from kdbench_methods.sp import SP, SPParams, sp_loss

from kdbench.data import DataInfo
from kdbench.errors import Incompatible
from kdbench.taps import Taps, TapShapes

INFO = DataInfo(input_shape=(40,), num_classes=10, num_train=480)
CNN_T = TapShapes((10,), (125,), ((25, 19), (25, 10), (25, 5)))
CNN_S = TapShapes((10,), (40,), ((8, 19), (8, 10), (8, 5)))
MLP_S = TapShapes((10,), (100,), ((100,), (100,)))
CNN2D_S = TapShapes((10,), (32,), ((8, 8, 8), (16, 4, 4)))

METHODS = {"dkd": (DKD, DKDParams), "dist": (DIST, DISTParams), "rkd": (RKD, RKDParams),
           "pkt": (PKT, PKTParams), "sp": (SP, SPParams), "cc": (CC, CCParams)}


def softmax(z: list[float], T: float = 1.0) -> list[float]:
    e = [math.exp(v / T) for v in z]
    return [v / sum(e) for v in e]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def huber(a: float, b: float) -> float:
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


# -- (a) the equations, computed independently ------------------------------------------


def test_dkd_terms_match_a_hand_computation() -> None:
    z_s = [[1.0, 0.0, 2.0, -1.0], [0.0, 1.0, 0.0, 0.5]]
    z_t = [[0.0, 2.0, 1.0, 0.0], [1.0, 1.0, -1.0, 2.0]]
    y, T = [2, 0], 2.0
    tckd = nckd = 0.0
    for s, t, c in zip(z_s, z_t, y, strict=True):
        p_s, p_t = softmax(s, T), softmax(t, T)
        tckd += kl([p_t[c], 1 - p_t[c]], [p_s[c], 1 - p_s[c]])
        q_s = [v / (1 - p_s[c]) for k, v in enumerate(p_s) if k != c]
        q_t = [v / (1 - p_t[c]) for k, v in enumerate(p_t) if k != c]
        nckd += kl(q_t, q_s)
    args = (torch.tensor(z_s), torch.tensor(z_t), torch.tensor(y), T)
    assert math.isclose(tckd_loss(*args).item(), T * T * tckd / 2, rel_tol=1e-5)
    assert math.isclose(nckd_loss(*args).item(), T * T * nckd / 2, rel_tol=1e-5)


def test_kd_decomposes_into_tckd_and_weighted_nckd() -> None:
    # The paper's eq. 7, sample by sample: KD = TCKD + (1 − p_t^T) · NCKD.
    torch.manual_seed(0)
    T = 3.0
    for _ in range(5):
        z_s, z_t, y = torch.randn(1, 6), torch.randn(1, 6), torch.randint(0, 6, (1,))
        p_t = torch.softmax(z_t / T, dim=1)[0, y].item()
        decomposed = tckd_loss(z_s, z_t, y, T) + (1 - p_t) * nckd_loss(z_s, z_t, y, T)
        assert math.isclose(decomposed.item(), kd_loss(z_s, z_t, T).item(), rel_tol=1e-5)


def test_dist_matches_pearson_correlations_from_numpy() -> None:
    rng = np.random.default_rng(0)
    z_s, z_t, tau = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)), 4.0

    def probs(z: np.ndarray) -> np.ndarray:
        e = np.exp(z / tau)
        return e / e.sum(1, keepdims=True)

    y_s, y_t = probs(z_s), probs(z_t)
    rho_rows = [np.corrcoef(y_s[i], y_t[i])[0, 1] for i in range(5)]
    rho_cols = [np.corrcoef(y_s[:, j], y_t[:, j])[0, 1] for j in range(4)]
    inter, intra = dist_losses(torch.tensor(z_s), torch.tensor(z_t), tau)
    assert math.isclose(inter.item(), tau**2 * (1 - np.mean(rho_rows)), rel_tol=1e-6)
    assert math.isclose(intra.item(), tau**2 * (1 - np.mean(rho_cols)), rel_tol=1e-6)
    # Identical predictions correlate perfectly; only the authors' ε = 1e-8 in the
    # denominator, against centred probabilities of norm ~1e-2, keeps it off zero.
    same = dist_losses(torch.tensor(z_s), torch.tensor(z_s), tau)
    assert max(v.abs().item() for v in same) < 1e-3


def test_rkd_losses_match_loops_over_pairs_and_triplets() -> None:
    s = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
    t = [[0.0, 0.0], [3.0, 1.0], [1.0, 1.0], [0.0, 4.0]]
    n = len(s)

    def distances(e: list[list[float]]) -> list[list[float]]:
        d = [[math.dist(e[i], e[j]) for j in range(n)] for i in range(n)]
        mu = sum(d[i][j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        return [[v / mu for v in row] for row in d]

    def cos_at(e: list[list[float]], i: int, j: int, k: int) -> float:
        a = [e[i][c] - e[j][c] for c in range(2)]
        b = [e[k][c] - e[j][c] for c in range(2)]
        na, nb = math.hypot(*a), math.hypot(*b)
        return 0.0 if na == 0 or nb == 0 else (a[0] * b[0] + a[1] * b[1]) / (na * nb)

    ds, dt = distances(s), distances(t)
    dist = sum(huber(ds[i][j], dt[i][j]) for i in range(n) for j in range(n)) / n**2
    angle = sum(huber(cos_at(s, i, j, k), cos_at(t, i, j, k))
                for i, j, k in itertools.product(range(n), repeat=3)) / n**3
    e_s, e_t = torch.tensor(s), torch.tensor(t)
    assert math.isclose(rkd_distance_loss(e_s, e_t).item(), dist, rel_tol=1e-5)
    assert math.isclose(rkd_angle_loss(e_s, e_t).item(), angle, rel_tol=1e-5)


def test_rkd_ignores_scale_rotation_translation_and_width() -> None:
    torch.manual_seed(0)
    e_s = torch.randn(6, 3)
    q, _ = torch.linalg.qr(torch.randn(5, 5))
    e_t = 3 * torch.cat([e_s, torch.zeros(6, 2)], 1) @ q + 1.5  # wider teacher, same shape
    assert rkd_distance_loss(e_s, e_t).item() < 1e-6
    assert rkd_angle_loss(e_s, e_t).item() < 1e-6


def test_pkt_matches_a_loop_over_conditional_probabilities() -> None:
    rng = np.random.default_rng(1)
    f_s, f_t, eps = rng.normal(size=(4, 3)), rng.normal(size=(4, 5)), 1e-7

    def conditional(f: np.ndarray) -> list[list[float]]:
        unit = [row / (np.linalg.norm(row) + eps) for row in f]
        k = [[(1 + float(unit[i] @ unit[j])) / 2 for j in range(4)] for i in range(4)]
        return [[v / sum(row) for v in row] for row in k]

    q, p = conditional(f_s), conditional(f_t)
    expected = sum(p[i][j] * math.log((p[i][j] + eps) / (q[i][j] + eps))
                   for i in range(4) for j in range(4)) / 16
    got = pkt_loss(torch.tensor(f_s), torch.tensor(f_t), eps).item()
    assert math.isclose(got, expected, rel_tol=1e-6)


@pytest.mark.parametrize(("s_shape", "t_shape"), [((3, 5), (4, 7)),          # 1-D maps
                                                  ((3, 4, 4), (6, 2, 3)),    # 2-D maps
                                                  ((3, 5), (6, 2, 3)),       # one of each
                                                  ((7,), (9,))])             # flat stages
def test_sp_matches_a_loop_over_gram_matrices(s_shape: tuple, t_shape: tuple) -> None:
    rng = np.random.default_rng(2)
    b = 4
    f_s, f_t = rng.normal(size=(b, *s_shape)), rng.normal(size=(b, *t_shape))

    def gram(f: np.ndarray) -> list[list[float]]:
        q = f.reshape(b, -1)
        g = [[float(q[i] @ q[j]) for j in range(b)] for i in range(b)]
        return [[v / math.sqrt(sum(w * w for w in row)) for v in row] for row in g]

    g_s, g_t = gram(f_s), gram(f_t)
    expected = sum((g_t[i][j] - g_s[i][j]) ** 2 for i in range(b) for j in range(b)) / b**2
    got = sp_loss(torch.tensor(f_s), torch.tensor(f_t)).item()
    assert math.isclose(got, expected, rel_tol=1e-6)


def test_cc_matches_a_loop_over_the_taylor_kernel() -> None:
    rng = np.random.default_rng(3)
    f_s, f_t, gamma, P = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), 0.4, 2

    def psi(f: np.ndarray) -> list[list[float]]:
        unit = [row / np.linalg.norm(row) for row in f]
        return [[sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p)
                     * float(unit[i] @ unit[j]) ** p for p in range(P + 1))
                 for j in range(4)] for i in range(4)]

    k_s, k_t = psi(f_s), psi(f_t)
    expected = sum((k_t[i][j] - k_s[i][j]) ** 2 for i in range(4) for j in range(4)) / 16
    got = cc_loss(torch.tensor(f_s), torch.tensor(f_t), gamma, P).item()
    assert math.isclose(got, expected, rel_tol=1e-6)


def test_cc_taylor_kernel_converges_to_the_gaussian_rbf() -> None:
    from kdbench_methods.cc import correlation

    f = torch.nn.functional.normalize(torch.randn(5, 4, dtype=torch.float64), dim=1)
    exact = torch.exp(-0.4 * torch.cdist(f, f).pow(2))
    assert torch.allclose(correlation(f, 0.4, 20), exact, atol=1e-10)


# -- the methods' terms, weights and schedule -------------------------------------------


def test_dkd_warmup_ramps_linearly_from_the_first_epoch() -> None:
    method = DKD(DKDParams())
    ramps = []
    for epoch in (0, 9, 19, 30):
        method.start_epoch(epoch, 40)
        ramps.append(method.ramp)
    assert ramps == [1 / 20, 10 / 20, 1.0, 1.0]
    no_warmup = DKD(DKDParams(warmup=0))
    no_warmup.start_epoch(0, 40)
    assert no_warmup.ramp == 1.0


def test_dkd_terms_carry_their_weights_and_the_ramp() -> None:
    torch.manual_seed(0)
    z_s, z_t, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    method = DKD(DKDParams(alpha=0.5, beta=3.0, T=2.0, ce_weight=0.7, warmup=4))
    method.start_epoch(1, 10)
    terms = method.loss(Taps(z_s), Taps(z_t), y, torch.arange(8))
    assert set(terms) == {"ce", "tckd", "nckd"}
    ce = torch.nn.functional.cross_entropy(z_s, y).item()
    assert math.isclose(terms["ce"].item(), 0.7 * ce, rel_tol=1e-6)
    assert math.isclose(terms["tckd"].item(), 0.5 * 0.5 * tckd_loss(z_s, z_t, y, 2.0).item(),
                        rel_tol=1e-6)
    assert math.isclose(terms["nckd"].item(), 0.5 * 3.0 * nckd_loss(z_s, z_t, y, 2.0).item(),
                        rel_tol=1e-6)


def test_cc_with_alpha_below_one_adds_the_kd_term() -> None:
    torch.manual_seed(0)
    method = CC(CCParams(alpha=0.25, T=3.0))
    method.build(CNN_S, CNN_T, INFO)
    s = Taps(torch.randn(6, 10), torch.randn(6, 40))
    t = Taps(torch.randn(6, 10), torch.randn(6, 125))
    terms = method.loss(s, t, torch.randint(0, 10, (6,)), torch.arange(6))
    assert set(terms) == {"ce", "cc", "kd"}
    assert math.isclose(terms["kd"].item(), 0.75 * kd_loss(s.logits, t.logits, 3.0).item(),
                        rel_tol=1e-6)


# -- (b) gradients reach the student and connectors, never the teacher ------------------


def _taps(shapes: TapShapes, n: int, grad: bool) -> Taps:
    def leaf(shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(n, *shape).requires_grad_(grad)

    return Taps(leaf(shapes.logits), leaf(shapes.embedding), [leaf(s) for s in shapes.stages])


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize(("student", "teacher"), [(CNN_S, CNN_T), (MLP_S, CNN_T),
                                                  (CNN2D_S, CNN_T)], ids=["cnn", "mlp", "2d"])
def test_gradients_reach_the_student_and_connectors_not_the_teacher(
        name: str, student: TapShapes, teacher: TapShapes) -> None:
    torch.manual_seed(0)
    cls, params = METHODS[name]
    method = cls(params())
    method.check(student, teacher)
    extra = method.build(student, teacher, INFO)
    method.start_epoch(25, 30)
    s, t = _taps(student, 8, True), _taps(teacher, 8, True)
    terms = method.loss(s, t, torch.randint(0, 10, (8,)), torch.arange(8))
    assert all(torch.isfinite(v) and v.dim() == 0 for v in terms.values())
    sum(terms.values()).backward()
    read = {"logits": [s.logits], "embedding": [s.embedding], "stages": [s.stages[-1]]}
    for tap in cls.needs:
        assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in read[tap]), tap
    teacher_tensors = [t.logits, t.embedding, *t.stages]
    assert all(x.grad is None for x in teacher_tensors)
    if name == "cc":  # widths differ (40 or 100 vs 125), so CC maps the student's
        assert extra is not None
        assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in extra.parameters())
    else:
        assert extra is None


@pytest.mark.parametrize(("name", "term"), [("rkd", "angle"), ("pkt", "pkt"), ("sp", "sp"),
                                          ("cc", "cc")])
def test_relations_stay_in_float32_under_bf16_autocast(name: str, term: str) -> None:
    # The loop autocasts to bf16 on GPUs; CPU autocast exercises the same escape hatch.
    torch.manual_seed(0)
    cls, params = METHODS[name]
    method = cls(params())
    method.build(CNN_S, CNN_T, INFO)
    s, t, y = _taps(CNN_S, 16, False), _taps(CNN_T, 16, False), torch.randint(0, 10, (16,))
    plain = method.loss(s, t, y, torch.arange(16))[term]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = method.loss(s, t, y, torch.arange(16))[term]
    assert mixed.dtype == torch.float32
    assert math.isclose(mixed.item(), plain.item(), rel_tol=1e-6)


def test_cc_needs_no_connector_for_equal_widths_or_when_told_not_to() -> None:
    assert CC(CCParams()).build(CNN_T, CNN_T, INFO) is None
    assert CC(CCParams(connector=False)).build(CNN_S, CNN_T, INFO) is None


# -- (c) short trainings on MNIST-1D -----------------------------------------------------


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("student", ["cnn1d_small", "mlp"])
def test_a_short_training_finishes_and_lowers_the_loss(name: str, student: str,
                                                       cache_dir: Path) -> None:
    # DKD's warm-up raises its KD weight every epoch by design; without it the sum must fall.
    params = {"warmup": 0} if name == "dkd" else {}
    result = briefly(name, params, student=student, epochs=3, cache=cache_dir)
    assert result.status == "finished", result.error
    assert [h["phase"] for h in result.history] == ["train"] * 3
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_dkd_with_its_warmup_trains_and_logs_each_term(cache_dir: Path) -> None:
    result = briefly("dkd", None, epochs=2, cache=cache_dir)
    assert result.status == "finished", result.error
    assert {"loss.ce", "loss.tckd", "loss.nckd"} <= set(result.history[-1])
    assert result.history[-1]["loss.ce"] < result.history[0]["loss.ce"]


# -- (d) refusals at planning time ------------------------------------------------------


def test_logit_methods_refuse_different_class_counts() -> None:
    other = TapShapes((7,), (125,), CNN_T.stages)
    for cls, params in (METHODS["dkd"], METHODS["dist"]):
        with pytest.raises(Incompatible, match="logits"):
            cls(params()).check(CNN_S, other)
    with pytest.raises(Incompatible, match="logits"):
        CC(CCParams(alpha=0.5)).check(CNN_S, other)
    CC(CCParams()).check(CNN_S, other)  # without the KD term the class counts do not matter


@pytest.mark.parametrize("name", ["rkd", "pkt", "cc"])
def test_embedding_methods_refuse_a_model_without_embedding(name: str) -> None:
    cls, params = METHODS[name]
    bare = TapShapes((10,), None, CNN_S.stages)
    with pytest.raises(Incompatible, match="student"):
        cls(params()).check(bare, CNN_T)
    with pytest.raises(Incompatible, match="teacher"):
        cls(params()).check(CNN_S, TapShapes((10,), None, CNN_T.stages))


def test_sp_refuses_a_model_without_stages() -> None:
    with pytest.raises(Incompatible, match="stages"):
        SP(SPParams()).check(TapShapes((10,), (40,), ()), CNN_T)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_accepts_an_mlp_student_and_an_unknown_teacher(name: str) -> None:
    cls, params = METHODS[name]
    cls(params()).check(MLP_S, CNN_T)
    cls(params()).check(MLP_S, None)


def test_all_six_are_registered_with_their_defaults(plugins) -> None:
    for name, (cls, params) in METHODS.items():
        entry = plugins.entry("methods", name)
        assert entry.factory is cls and entry.params is params
        assert entry.make_params({}) == params()
