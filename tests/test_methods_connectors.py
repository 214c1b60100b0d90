"""Methods with connectors or warm-up stages: FT, AB, KD-SVD and VID.

Each loss is checked against an independent computation of its equation, gradients are
checked to reach the student and the method's modules but never the frozen teacher, a
brief MNIST-1D run must finish and lower its loss, and ``check`` must refuse models the
method cannot work on.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import briefly
from kdbench_methods.ab import AB, ABParams, ab_loss
from kdbench_methods.ft import FT, FTParams, ft_loss, reconstruction_loss
from kdbench_methods.kdsvd import KDSVD, KDSVDParams, right_singular_vectors
from kdbench_methods.vid import VID, VIDParams, vid_loss
from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.errors import Incompatible
from kdbench.taps import Taps, TapShapes

INFO = DataInfo((40,), 10, 600)
N = 6

# Student and teacher tap shapes: the MNIST-1D CNNs, a 2-D analogue, and MLPs.
SHAPES_1D = (TapShapes((10,), (40,), ((8, 19), (8, 10), (8, 5))),
             TapShapes((10,), (125,), ((25, 19), (25, 10), (25, 5))))
SHAPES_2D = (TapShapes((10,), (64,), ((4, 8, 8), (6, 4, 4), (8, 2, 2))),
             TapShapes((10,), (128,), ((8, 8, 8), (12, 4, 4), (16, 2, 2))))
FLAT = (TapShapes((10,), (30,), ((30,), (30,))), TapShapes((10,), (100,), ((100,), (100,))))
SPATIAL = [pytest.param(SHAPES_1D, id="1d"), pytest.param(SHAPES_2D, id="2d")]
# A 2-D pair whose paired stages differ in spatial size.
SIZES_DIFFER = (TapShapes((10,), None, ((4, 4, 4), (4, 2, 2))),
                TapShapes((10,), None, ((6, 8, 8), (6, 4, 4))))


def taps(shapes: TapShapes, grad: bool, seed: int) -> Taps:
    """Random post-ReLU taps of ``shapes`` for a batch of N."""
    g = torch.Generator().manual_seed(seed)
    stages = [torch.relu(torch.randn(N, *s, generator=g)).requires_grad_(grad)
              for s in shapes.stages]
    return Taps(torch.randn(N, *shapes.logits, generator=g).requires_grad_(grad), None, stages)


def reached(tensors: list[Tensor]) -> bool:
    return all(x.grad is not None and x.grad.abs().sum() > 0 for x in tensors)


def untouched(tensors: list[Tensor]) -> bool:
    return all(x.grad is None or x.grad.abs().sum() == 0 for x in tensors)


def built(method, shapes: tuple[TapShapes, TapShapes]) -> nn.Module:
    method.check(*shapes)
    return method.build(*shapes, INFO)


def phases(history: list[dict]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for row in history:
        out.setdefault(row["phase"], []).append(row["loss"])
    return out


@pytest.mark.parametrize("make", [FT, lambda: AB(ABParams(alpha=0.5)), VID, KDSVD],
                         ids=["ft", "ab", "vid", "kdsvd"])
def test_terms_stay_float32_under_bfloat16_autocast(make) -> None:
    method = make()
    built(method, SHAPES_2D)
    s, t = taps(SHAPES_2D[0], True, 21), taps(SHAPES_2D[1], False, 22)
    y = torch.randint(0, 10, (N,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = method.loss(s, t, y, torch.arange(N))
        for stage in method.stages():
            terms.update(stage.loss(s, t, y, torch.arange(N)))
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())


def test_every_method_is_registered_under_its_name(plugins) -> None:
    for name, cls in {"ft": FT, "ab": AB, "kdsvd": KDSVD, "vid": VID}.items():
        assert plugins.entry("methods", name).factory is cls


# --- FT -----------------------------------------------------------------------------


def test_ft_loss_matches_a_hand_computation() -> None:
    g = torch.Generator().manual_seed(0)
    F_s, F_t = torch.randn(2, 2, 3, generator=g), torch.randn(2, 2, 3, generator=g)
    for p in (1, 2):
        total, count = 0.0, 0
        for a, b in zip(F_s.tolist(), F_t.tolist(), strict=True):
            a = [v for row in a for v in row]
            b = [v for row in b for v in row]
            na, nb = math.sqrt(sum(v * v for v in a)), math.sqrt(sum(v * v for v in b))
            for x, y in zip(a, b, strict=True):
                total += abs(y / nb - x / na) ** p
                count += 1
        assert math.isclose(ft_loss(F_s, F_t, p).item(), total / count, rel_tol=1e-5)
    x, x_hat = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, 0.0]])
    assert math.isclose(reconstruction_loss(x_hat, x).item(), (0.5 + 2.0) / 2)


@pytest.mark.parametrize("shapes", SPATIAL)
def test_ft_stages_train_only_their_own_modules(shapes) -> None:
    method = FT(FTParams(beta=500.0))
    modules = built(method, shapes)
    s, t = taps(shapes[0], True, 1), taps(shapes[1], True, 2)
    y = torch.randint(0, 10, (N,))
    paraphraser = list(method.paraphraser.parameters())
    translator = list(method.translator.parameters())
    assert set(map(id, modules.parameters())) == set(map(id, paraphraser + translator))
    m = round(0.5 * shapes[1].stages[-1][0])
    assert method.paraphraser.encoder(t.stages[-1]).shape[1] == m

    [stage] = method.stages()
    assert (stage.name, stage.epochs) == ("paraphraser", 5)
    sum(stage.loss(s, t, y, torch.arange(N)).values()).backward()
    assert reached(paraphraser) and untouched(translator)
    assert untouched([*s.stages, s.logits, *t.stages])

    modules.zero_grad(set_to_none=True)
    terms = method.loss(s, t, y, torch.arange(N))
    assert set(terms) == {"ce", "ft"}
    with torch.no_grad():
        F_t = method.paraphraser.encoder(t.stages[-1])
    expected = 500.0 * ft_loss(method.translator(s.stages[-1]), F_t)
    assert math.isclose(terms["ft"].item(), expected.item(), rel_tol=1e-5)
    sum(terms.values()).backward()
    assert reached([s.stages[-1], s.logits, *translator])
    assert untouched(paraphraser) and untouched(t.stages)


def test_ft_pools_the_larger_factor_when_last_stages_differ_in_size() -> None:
    shapes = (TapShapes((10,), None, ((4, 8, 8),)), TapShapes((10,), None, ((6, 4, 4),)))
    method = FT()
    built(method, shapes)
    s, t = taps(shapes[0], True, 3), taps(shapes[1], False, 4)
    method.loss(s, t, torch.randint(0, 10, (N,)), torch.arange(N))["ft"].backward()
    assert reached([s.stages[-1]])


def test_ft_refuses_flat_stages() -> None:
    with pytest.raises(Incompatible, match="feature maps"):
        FT().check(*FLAT)
    with pytest.raises(Incompatible, match="same rank"):
        FT().check(SHAPES_1D[0], SHAPES_2D[1])


def test_ft_trains_its_paraphraser_then_the_student(cache_dir) -> None:
    result = briefly("ft", {"paraphraser_epochs": 2}, cache=cache_dir, epochs=3)
    assert result.status == "finished", result.error
    # the paraphraser stage leaves the student alone, and its epochs out of the budget
    assert [r["phase"] for r in result.history] == ["paraphraser"] * 2 + ["train"] * 3
    assert result.history[0]["val.top1"] == result.history[1]["val.top1"]
    loss = phases(result.history)
    assert loss["paraphraser"][-1] < loss["paraphraser"][0]
    assert loss["train"][-1] < loss["train"][0]
    assert {"loss.ce", "loss.ft"} <= set(result.history[-1])


# --- AB -----------------------------------------------------------------------------


def test_ab_loss_matches_a_hand_computation() -> None:
    r = torch.tensor([[0.5, -2.0, 1.5, -0.3], [2.0, 0.2, -1.0, 0.0]])
    T = torch.tensor([[1.0, 0.0, 0.0, 2.0], [0.0, 3.0, 0.0, 0.0]])
    mu = 1.0
    total = 0.0
    for rs, ts in zip(r.tolist(), T.tolist(), strict=True):
        for x, t in zip(rs, ts, strict=True):
            if t > 0:  # active teacher neuron: the student must exceed +μ
                total += max(0.0, mu - x) ** 2
            else:  # inactive: the student must stay below −μ
                total += max(0.0, mu + x) ** 2
    assert math.isclose(ab_loss(r, T, mu).item(), total / 2, rel_tol=1e-6)
    # by hand, first sample: 0.5² + 0 + 2.5² + 1.3²
    assert math.isclose(ab_loss(r[:1], T[:1], mu).item(), 0.25 + 6.25 + 1.69, rel_tol=1e-6)


@pytest.mark.parametrize("shapes", [*SPATIAL, pytest.param(FLAT, id="flat")])
def test_ab_initialisation_reaches_student_and_connectors_only(shapes) -> None:
    method = AB(ABParams(epochs=3, beta=3e-3, mu=1.0))
    connectors = built(method, shapes)
    s, t = taps(shapes[0], True, 5), taps(shapes[1], True, 6)
    y = torch.randint(0, 10, (N,))
    [stage] = method.stages()
    assert (stage.name, stage.epochs) == ("ab_init", 3)
    terms = stage.loss(s, t, y, torch.arange(N))
    assert set(terms) == {"ab"}
    n = len(shapes[1].stages)
    expected = 0.0
    for i, (r, f_s, f_t) in enumerate(zip(connectors, s.stages, t.stages, strict=True)):
        out = r(f_s).detach().numpy()
        active = f_t.detach().numpy() > 0
        hinge = np.where(active, np.maximum(0, 1 - out), np.maximum(0, 1 + out)) ** 2
        expected += 2.0 ** (i - n + 1) * hinge.sum() / N  # deepest stage weighs 1
    assert math.isclose(terms["ab"].item(), 3e-3 * expected, rel_tol=1e-5)
    terms["ab"].backward()
    assert reached([*s.stages, *connectors.parameters()])
    assert untouched([*t.stages, s.logits])


def test_ab_trains_on_labels_after_the_initialisation() -> None:
    method = AB(ABParams(alpha=0.5, T=3.0))
    built(method, SHAPES_1D)
    s, t = taps(SHAPES_1D[0], True, 7), taps(SHAPES_1D[1], True, 8)
    y = torch.randint(0, 10, (N,))
    assert set(AB().loss(s, t, y, torch.arange(N))) == {"ce"}
    terms = method.loss(s, t, y, torch.arange(N))
    assert set(terms) == {"ce", "kd"}
    sum(terms.values()).backward()
    assert reached([s.logits]) and untouched([*s.stages, *t.stages, t.logits])


def test_ab_refuses_paired_stages_of_different_sizes() -> None:
    with pytest.raises(Incompatible, match="same spatial size"):
        AB().check(*SIZES_DIFFER)
    with pytest.raises(Incompatible, match="same rank"):
        AB().check(SHAPES_1D[0], FLAT[1])
    AB().check(*FLAT)


def test_ab_initialises_then_trains(cache_dir) -> None:
    result = briefly("ab", {"epochs": 2}, cache=cache_dir, epochs=5)
    assert result.status == "finished", result.error
    assert [r["phase"] for r in result.history] == ["ab_init"] * 2 + ["train"] * 3
    loss = phases(result.history)
    assert loss["ab_init"][-1] < loss["ab_init"][0]
    assert loss["train"][-1] < loss["train"][0]
    assert "loss.ab" in result.history[0] and "loss.ce" in result.history[-1]


# --- KD-SVD -------------------------------------------------------------------------


def _expected_kdsvd(s_maps: list[np.ndarray], t_maps: list[np.ndarray], k: int,
                    extra: int) -> float:
    """The equation with numpy's SVD and explicit loops, for student maps already at the
    teacher's widths."""
    total = 0.0
    n = s_maps[0].shape[0]
    for b in range(n):
        vs, vt = [], []
        for fs, ft in zip(s_maps, t_maps, strict=True):
            xs, xt = fs[b].reshape(fs.shape[1], -1).T, ft[b].reshape(ft.shape[1], -1).T
            vhs = np.linalg.svd(xs)[2]
            _, st, vht = np.linalg.svd(xt)
            weights = st[:k] / np.linalg.norm(st[:k])
            teacher, student = [], []
            for j in range(k):
                v = vht[j] if vht[j].sum() >= 0 else -vht[j]
                cands = [vhs[c] for c in range(min(k + extra, len(vhs)))]
                best = max(cands, key=lambda c, v=v: abs(c @ v))
                best = best if best @ v >= 0 else -best
                teacher.append(v * weights[j])
                student.append(best * weights[j])
            vs.append(student)
            vt.append(teacher)
        for li in range(1, len(s_maps)):
            for j in range(k):
                for i in range(len(vt[li][j])):
                    for i2 in range(len(vt[li - 1][j])):
                        gs = math.exp(-((vs[li][j][i] - vs[li - 1][j][i2]) ** 2) / 8)
                        gt = math.exp(-((vt[li][j][i] - vt[li - 1][j][i2]) ** 2) / 8)
                        total += (gs - gt) ** 2
    return total / n


# Any spatial rank mixes. Tall matrices (more positions than channels) are decomposed
# through their Gram matrix, wide ones by an SVD: both against numpy's SVD.
KDSVD_STAGES = {"tall": ((5, 6), (4, 3, 2), (3, 4)), "wide": ((6, 5), (7, 2, 3), (4, 3))}


@pytest.mark.parametrize("stages", KDSVD_STAGES.values(), ids=KDSVD_STAGES.keys())
@pytest.mark.parametrize("k", [1, 2])
def test_kdsvd_loss_matches_a_hand_computation(k: int, stages) -> None:
    shapes = TapShapes((10,), None, stages)
    method = KDSVD(KDSVDParams(k=k, candidates=1, ramp=False, beta=1.0))
    built(method, (shapes, shapes))
    s, t = taps(shapes, False, 9), taps(shapes, False, 10)
    got = method.loss(s, t, torch.zeros(N, dtype=torch.long), torch.arange(N))["kdsvd"]
    expected = _expected_kdsvd([f.double().numpy() for f in s.stages],
                               [f.double().numpy() for f in t.stages], k, 1)
    assert math.isclose(got.item(), expected, rel_tol=1e-4, abs_tol=1e-7)
    same = method.loss(t, t, torch.zeros(N, dtype=torch.long), torch.arange(N))["kdsvd"]
    assert same.item() < 1e-10


def test_kdsvd_singular_vector_gradient_is_exact_and_finite_on_ties() -> None:
    g = torch.Generator().manual_seed(11)
    for m, c in ((7, 5), (4, 9)):  # more positions than channels, and fewer
        X = torch.randn(3, m, c, generator=g, dtype=torch.float64, requires_grad=True)
        w = torch.randn(3, c, 2, generator=g, dtype=torch.float64)
        V, _ = right_singular_vectors(X, 2)
        ours, = torch.autograd.grad(((V * w).sum(1) ** 2).sum(), X)
        Vh = torch.linalg.svd(X, full_matrices=False)[2]
        ref, = torch.autograd.grad(((Vh.mT[..., :2] * w).sum(1) ** 2).sum(), X)
        assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    X = torch.relu(torch.randn(2, 5, 8, generator=g))
    X[:, :, 4:] = 0  # dead channels: repeated zero singular values
    X.requires_grad_()
    V, _ = right_singular_vectors(X, 2)
    grad, = torch.autograd.grad(V.sum() ** 2, X)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("shapes", SPATIAL)
def test_kdsvd_reaches_student_and_connectors_not_teacher(shapes) -> None:
    method = KDSVD(KDSVDParams(ramp=False))
    connectors = built(method, shapes)
    assert len(list(connectors.parameters())) == 3  # widths differ at every stage
    s, t = taps(shapes[0], True, 12), taps(shapes[1], True, 13)
    terms = method.loss(s, t, torch.randint(0, 10, (N,)), torch.arange(N))
    assert set(terms) == {"ce", "kdsvd"} and torch.isfinite(terms["kdsvd"])
    sum(terms.values()).backward()
    assert reached([*s.stages, s.logits, *connectors.parameters()])
    assert untouched(t.stages)


def test_kdsvd_ramps_its_term_in_over_the_first_epochs() -> None:
    method = KDSVD()
    built(method, SHAPES_1D)
    s, t = taps(SHAPES_1D[0], True, 14), taps(SHAPES_1D[1], False, 15)
    y = torch.randint(0, 10, (N,))
    assert math.isclose(method.weight, 1 / (1 + math.exp(2)))
    early = method.loss(s, t, y, torch.arange(N))["kdsvd"]
    method.start_epoch(2, 30)
    assert method.weight == 0.5
    later = method.loss(s, t, y, torch.arange(N))["kdsvd"]
    assert math.isclose(later.item() / early.item(), 0.5 * (1 + math.exp(2)), rel_tol=1e-5)
    assert KDSVD(KDSVDParams(ramp=False)).weight == 1.0


def test_kdsvd_refuses_flat_stages_and_a_single_stage() -> None:
    with pytest.raises(Incompatible, match="flat stages"):
        KDSVD().check(*FLAT)
    one = TapShapes((10,), None, ((8, 5),))
    with pytest.raises(Incompatible, match="at least two stages"):
        KDSVD().check(one, SHAPES_1D[1])


def test_kdsvd_trains_briefly(cache_dir) -> None:
    # 5 epochs: its term starts near 0 against random maps and grows for the first epochs
    result = briefly("kdsvd", cache=cache_dir, epochs=5)
    assert result.status == "finished", result.error
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.history[-1]["loss.kdsvd"] > 0


# --- VID ----------------------------------------------------------------------------


def test_vid_loss_matches_a_hand_computation() -> None:
    g = torch.Generator().manual_seed(16)
    mu, t = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    var = torch.tensor([0.5, 2.0, 5.0])
    total, count = 0.0, 0
    for n in range(2):
        for c in range(3):
            for i in range(4):
                sigma = math.sqrt(var[c].item())
                diff = t[n, c, i].item() - mu[n, c, i].item()
                total += math.log(sigma) + diff**2 / (2 * sigma**2)
                count += 1
    assert math.isclose(vid_loss(mu, t, var).item(), total / count, rel_tol=1e-5)


@pytest.mark.parametrize("shapes", [*SPATIAL, pytest.param(FLAT, id="flat")])
def test_vid_reaches_student_regressors_and_variances_not_teacher(shapes) -> None:
    method = VID(VIDParams(lambdas=(1.0, 0.5, 2.0)[:len(shapes[0].stages)]))
    regressors = built(method, shapes)
    for q in regressors:
        assert torch.allclose(q.variance(), torch.full_like(q.variance(), 5.0))
    s, t = taps(shapes[0], True, 17), taps(shapes[1], True, 18)
    terms = method.loss(s, t, torch.randint(0, 10, (N,)), torch.arange(N))
    assert set(terms) == {"ce", "vid"}
    sum(terms.values()).backward()
    assert reached([*s.stages, s.logits, *regressors.parameters()])
    assert all(q.alpha.grad is not None for q in regressors)
    assert untouched(t.stages)


def test_vid_pools_the_larger_map_and_weights_stages() -> None:
    shapes = SIZES_DIFFER
    method = VID(VIDParams(lambdas=(2.0, 0.0)))
    [q0, _] = built(method, shapes)
    s, t = taps(shapes[0], True, 19), taps(shapes[1], False, 20)
    got = method.loss(s, t, torch.zeros(N, dtype=torch.long), torch.arange(N))["vid"]
    pooled = torch.nn.functional.avg_pool2d(t.stages[0], 2)  # 8×8 teacher to 4×4
    expected = 2.0 * vid_loss(q0.mu(s.stages[0]), pooled, q0.variance())
    assert math.isclose(got.item(), expected.item(), rel_tol=1e-6)


def test_vid_refuses_a_flat_stage_paired_with_a_map() -> None:
    with pytest.raises(Incompatible, match="same rank"):
        VID().check(FLAT[0], SHAPES_1D[1])
    with pytest.raises(Incompatible, match="lambdas"):
        VID(VIDParams(lambdas=(1.0,))).check(*SHAPES_1D)


def test_vid_trains_briefly(cache_dir) -> None:
    result = briefly("vid", cache=cache_dir, epochs=3)
    assert result.status == "finished", result.error
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert "loss.vid" in result.history[-1]
