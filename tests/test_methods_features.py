"""Feature-map methods (FitNets, AT, FSP, NST): each loss against a hand computation, gradient
flow to the student and the method's modules only, refusals at planning time, and a short
training on MNIST-1D. Maps are 1-D ``(N, C, L)`` and 2-D ``(N, C, H, W)`` alike."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import briefly
from kdbench_methods.at import AT, ATParams, at_loss
from kdbench_methods.fitnet import FitNet, FitNetParams, hint_loss
from kdbench_methods.fsp import FSP, FSPParams, flow, fsp_loss
from kdbench_methods.kd import kd_loss
from kdbench_methods.nst import NST, NSTParams, nst_loss
from torch import Tensor

from kdbench.data import DataInfo
from kdbench.errors import Incompatible
from kdbench.plugins import Plugins
from kdbench.taps import Taps, TapShapes

INFO = DataInfo((40,), 10, 600)
CNN1D_SMALL = TapShapes((10,), (40,), ((8, 19), (8, 10), (8, 5)))
CNN1D = TapShapes((10,), (125,), ((25, 19), (25, 10), (25, 5)))
MLP = TapShapes((10,), (100,), ((100,), (100,)))
# 2-D pairs with different channel counts and, for the teacher, twice the spatial size.
CNN2D_S = TapShapes((10,), (16,), ((4, 8, 8), (4, 4, 4), (4, 2, 2)))
CNN2D_T = TapShapes((10,), (24,), ((6, 16, 16), (6, 8, 8), (6, 4, 4)))
PAIRS = {"1d": (CNN1D_SMALL, CNN1D), "2d": (CNN2D_S, CNN2D_T), "flat": (MLP, MLP)}


def taps(shapes: TapShapes, n: int = 3, grad: bool = False) -> Taps:
    """Random taps of ``shapes``; the teacher's also require grad, to prove they get none."""
    return Taps(torch.randn(n, *shapes.logits, requires_grad=grad), None,
                [torch.rand(n, *s, requires_grad=True) for s in shapes.stages])


def nested(t: Tensor) -> list:
    return t.tolist()


def pool_pairs(f: list[list[float]]) -> list[list[float]]:
    """A (C, 2L) map averaged over consecutive pairs of positions: (C, L)."""
    return [[(row[2 * i] + row[2 * i + 1]) / 2 for i in range(len(row) // 2)] for row in f]


def assert_grads(student: Taps, teacher: Taps, modules: list[torch.nn.Module],
                 used: list[int]) -> None:
    for k in used:
        assert student.stages[k].grad is not None and student.stages[k].grad.abs().sum() > 0
    for m in modules:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    assert teacher.logits.grad is None
    assert all(f.grad is None for f in teacher.stages)


def test_the_four_methods_are_registered(plugins: Plugins) -> None:
    assert {"fitnet", "at", "fsp", "nst"} <= set(plugins.methods())


# FitNets ------------------------------------------------------------------------------------


def test_hint_loss_is_the_mean_squared_difference() -> None:
    u = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    r = torch.tensor([[[0.0, 2.0], [5.0, 1.0]]])
    assert hint_loss(u, r).item() == pytest.approx((1 + 0 + 4 + 9) / 4)


def test_fitnet_regressor_and_pooling_by_hand() -> None:
    student = TapShapes((2,), None, ((1, 4),))
    teacher = TapShapes((2,), None, ((2, 2),))
    method = FitNet(FitNetParams(guided=0, two_stage=False, beta=2.0))
    method.check(student, teacher)
    regressor = method.build(student, teacher, INFO)
    w, b = [2.0, -1.0], [0.0, 1.0]
    with torch.no_grad():
        regressor[0].weight.copy_(torch.tensor(w).view(2, 1, 1))
        regressor[0].bias.copy_(torch.tensor(b))
    v = [1.0, -1.0, 3.0, 0.0]
    u = [[1.0, 1.0], [0.0, 0.0]]
    r = [[max(0.0, w[c] * x + b[c]) for x in v] for c in range(2)]
    r = pool_pairs(r)  # the student's map is the larger: pooled to the teacher's length 2
    expected = sum((u[c][i] - r[c][i]) ** 2 for c in range(2) for i in range(2)) / 4
    s = Taps(torch.tensor([[0.5, -0.5]]), None, [torch.tensor([[v]])])
    t = Taps(torch.tensor([[0.0, 1.0]]), None, [torch.tensor([u])])
    y = torch.tensor([1])
    terms = method.loss(s, t, y, torch.arange(1))
    ce = -math.log(math.exp(-0.5) / (math.exp(0.5) + math.exp(-0.5)))
    assert terms["hint"].item() == pytest.approx(2.0 * expected)
    assert terms["ce"].item() == pytest.approx(ce)


def test_fitnet_batchnorm_regressor_is_repdistillers_convreg() -> None:
    # conv, BatchNorm, ReLU (RepDistiller's ConvReg, which the CRD tables' beta = 100 assumes)
    method = FitNet(FitNetParams(two_stage=False, batchnorm=True))
    regressor = method.build(CNN2D_S, CNN2D_T, INFO)
    assert [type(m) for m in regressor] == [torch.nn.Conv2d, torch.nn.BatchNorm2d,
                                            torch.nn.ReLU]
    assert regressor[1].num_features == CNN2D_T.stages[1][0]
    assert [type(m) for m in FitNet().build(CNN2D_S, CNN2D_T, INFO)] == [torch.nn.Conv2d,
                                                                        torch.nn.ReLU]
    # Whatever the regressor's weights, its training-mode output has unit scale per channel.
    with torch.no_grad():
        regressor[0].weight.mul_(1e4)
    s, t = taps(CNN2D_S, n=8), taps(CNN2D_T, n=8)
    assert method.hint(s, t).item() < 10


def test_fitnet_two_stage_is_a_hint_stage_then_kd() -> None:
    method = FitNet(FitNetParams(hint_epochs=3))
    method.build(CNN1D_SMALL, CNN1D, INFO)
    (stage,) = method.stages()
    assert (stage.name, stage.epochs) == ("hint", 3)
    s, t = taps(CNN1D_SMALL, grad=True), taps(CNN1D)
    y = torch.tensor([0, 1, 2])
    terms = method.loss(s, t, y, torch.arange(3))
    assert set(terms) == {"ce", "kd"}
    ce = torch.nn.functional.cross_entropy(s.logits, y)
    assert terms["ce"].item() == pytest.approx(0.1 * ce.item())
    assert terms["kd"].item() == pytest.approx(0.9 * kd_loss(s.logits, t.logits, 4.0).item())
    assert FitNet(FitNetParams(two_stage=False)).stages() == []


@pytest.mark.parametrize("kind", ["1d", "2d", "flat"])
def test_fitnet_hint_reaches_the_guided_stage_and_regressor_only(kind: str) -> None:
    student, teacher = PAIRS[kind]
    method = FitNet()
    method.check(student, teacher)
    regressor = method.build(student, teacher, INFO)
    g = len(student.stages) // 2
    s, t = taps(student, grad=True), taps(teacher)
    (stage,) = method.stages()
    sum(stage.loss(s, t, torch.tensor([0, 1, 2]), torch.arange(3)).values()).backward()
    assert_grads(s, t, [regressor], used=[g])
    assert s.logits.grad is None  # stage 1 trains the student only up to the guided layer
    assert all(f.grad is None for k, f in enumerate(s.stages) if k != g)


def test_fitnet_refuses_what_it_cannot_regress() -> None:
    with pytest.raises(Incompatible, match="not the same kind of map"):
        FitNet().check(MLP, CNN1D)
    with pytest.raises(Incompatible, match="guided stage 5 is out of range"):
        FitNet(FitNetParams(guided=5)).check(CNN1D_SMALL, CNN1D)
    FitNet().check(MLP, MLP)
    FitNet().check(CNN1D_SMALL, None)


def test_fitnet_trains_a_hint_stage_then_kd(cache_dir) -> None:
    result = briefly("fitnet", {"hint_epochs": 2}, cache=cache_dir, epochs=5)
    assert result.status == "finished", result.error
    phases = [row["phase"] for row in result.history]
    assert phases == ["hint", "hint", "train", "train", "train"]
    hint = [row for row in result.history if row["phase"] == "hint"]
    train = [row for row in result.history if row["phase"] == "train"]
    assert set(hint[0]) >= {"loss.hint"} and "loss.kd" in train[0]
    assert hint[-1]["loss"] < hint[0]["loss"]
    assert train[-1]["loss"] < train[0]["loss"]


def test_fitnet_one_stage_trains(cache_dir) -> None:
    result = briefly("fitnet", {"two_stage": False}, cache=cache_dir, epochs=3)
    assert result.status == "finished", result.error
    assert [row["phase"] for row in result.history] == ["train"] * 3
    assert result.history[-1]["loss"] < result.history[0]["loss"]


# Attention transfer -------------------------------------------------------------------------


def attention_by_hand(f: list[list[float]], p: float = 2.0) -> list[float]:
    q = [sum(abs(row[x]) ** p for row in f) / len(f) for x in range(len(f[0]))]
    norm = math.sqrt(sum(v * v for v in q))
    return [v / norm for v in q]


@pytest.mark.parametrize("normalise", ["code", "paper"])
def test_at_loss_matches_a_hand_computation(normalise: str) -> None:
    torch.manual_seed(0)
    # Pair 1: 1-D maps, the teacher's twice as long (pooled); pair 2: 2-D maps of equal size.
    s1, t1 = torch.randn(2, 2, 4), torch.randn(2, 3, 8)
    s2, t2 = torch.randn(2, 2, 2, 3), torch.randn(2, 5, 2, 3)
    beta = 10.0
    total = 0.0
    for s, t, pool in ((s1, t1, True), (s2, t2, False)):
        per_sample = []
        for n in range(2):
            fs = nested(s[n].flatten(1))
            ft = nested(t[n].flatten(1))
            if pool:
                ft = pool_pairs(ft)
            d = [a - b for a, b in zip(attention_by_hand(fs), attention_by_hand(ft), strict=True)]
            sq = sum(v * v for v in d)
            per_sample.append(sq if normalise == "code" else math.sqrt(sq))
        positions = len(d)
        total += sum(per_sample) / (2 * positions)
    expected = (beta if normalise == "code" else beta / 2) * total
    got = at_loss([s1, s2], [t1, t2], beta, 2.0, normalise)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_at_is_zero_for_proportional_attention() -> None:
    f = torch.rand(2, 3, 4, 4)
    assert at_loss([f], [3 * f], 1000.0).item() < 1e-9  # the maps are normalised


@pytest.mark.parametrize("kind", ["1d", "2d"])
@pytest.mark.parametrize("normalise", ["code", "paper"])
def test_at_gradients_reach_every_student_stage_only(kind: str, normalise: str) -> None:
    student, teacher = PAIRS[kind]
    method = AT(ATParams(normalise=normalise))
    method.check(student, teacher)
    assert method.build(student, teacher, INFO) is None
    s, t = taps(student, grad=True), taps(teacher)
    terms = method.loss(s, t, torch.tensor([0, 1, 2]), torch.arange(3))
    assert set(terms) == {"ce", "at"}
    sum(terms.values()).backward()
    assert_grads(s, t, [], used=list(range(len(s.stages))))


def test_at_refuses_flat_stages_and_unpaired_stages() -> None:
    with pytest.raises(Incompatible, match="student's stages are flat"):
        AT().check(MLP, CNN1D)
    with pytest.raises(Incompatible, match="teacher's stages are flat"):
        AT().check(CNN1D_SMALL, MLP)
    with pytest.raises(Incompatible, match="2 stages where the teacher has 3"):
        AT().check(TapShapes((10,), None, ((8, 19), (8, 10))), CNN1D)
    with pytest.raises(Incompatible, match="1-D map"):
        AT().check(CNN1D_SMALL, CNN2D_T)
    AT().check(CNN1D_SMALL, None)


def test_at_trains(cache_dir) -> None:
    result = briefly("at", cache=cache_dir, epochs=3)
    assert result.status == "finished", result.error
    assert result.history[-1]["loss"] < result.history[0]["loss"]


@pytest.mark.parametrize("method", ["at", "nst", "fsp"])
def test_spatial_methods_refuse_an_mlp_student_before_training(method: str, cache_dir) -> None:
    result = briefly(method, cache=cache_dir, student="mlp", epochs=1)
    assert result.status == "failed"
    assert "flat" in result.error and not result.history


# FSP ----------------------------------------------------------------------------------------


def fsp_by_hand(f1: list[list[float]], f2: list[list[float]]) -> list[list[float]]:
    if len(f1[0]) > len(f2[0]):
        f1 = pool_pairs(f1)
    positions = len(f1[0])
    return [[sum(a[x] * b[x] for x in range(positions)) / positions for b in f2] for a in f1]


def test_fsp_loss_matches_a_hand_computation() -> None:
    torch.manual_seed(1)
    # Three consecutive stages halving their length: two pairs, each pooled.
    s = [torch.randn(2, 2, 8), torch.randn(2, 3, 4), torch.randn(2, 2, 2)]
    t = [torch.randn(2, 2, 8), torch.randn(2, 3, 4), torch.randn(2, 2, 2)]
    lam = 0.5
    expected = 0.0
    for k in range(2):
        for n in range(2):
            gs = fsp_by_hand(nested(s[k][n]), nested(s[k + 1][n]))
            gt = fsp_by_hand(nested(t[k][n]), nested(t[k + 1][n]))
            expected += lam * sum((a - b) ** 2 for ra, rb in zip(gt, gs, strict=True)
                                  for a, b in zip(ra, rb, strict=True)) / 2
    G_s, G_t = flow(s), flow(t)
    assert [tuple(g.shape) for g in G_s] == [(2, 2, 3), (2, 3, 2)]
    assert fsp_loss(G_s, G_t, lam).item() == pytest.approx(expected, rel=1e-5)


def test_fsp_entries_mean_is_repdistillers_mean_over_each_matrix() -> None:
    torch.manual_seed(2)
    G_s = [torch.randn(4, 2, 3), torch.randn(4, 3, 5)]
    G_t = [torch.randn(4, 2, 3), torch.randn(4, 3, 5)]
    by_hand = sum(((gt - gs) ** 2).mean() for gs, gt in zip(G_s, G_t, strict=True))
    assert fsp_loss(G_s, G_t, 0.5, "mean").item() == pytest.approx(0.5 * by_hand.item())
    summed = sum(fsp_loss([gs], [gt]).item() / gs[0].numel()
                 for gs, gt in zip(G_s, G_t, strict=True))
    assert fsp_loss(G_s, G_t, entries="mean").item() == pytest.approx(summed)


def test_fsp_matrix_of_2d_maps_by_hand() -> None:
    f1, f2 = torch.randn(1, 2, 2, 3), torch.randn(1, 2, 2, 3)
    G = flow([f1, f2])[0][0]
    a, b = nested(f1[0].flatten(1)), nested(f2[0].flatten(1))
    for i in range(2):
        for j in range(2):
            assert G[i, j].item() == pytest.approx(sum(x * y for x, y in zip(a[i], b[j],
                                                                          strict=True)) / 6)


@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_fsp_stage_reaches_the_student_and_its_connectors_only(kind: str) -> None:
    student, teacher = PAIRS[kind]
    method = FSP(FSPParams(fsp_epochs=2))
    method.check(student, teacher)
    connectors = method.build(student, teacher, INFO)
    assert all(isinstance(c, torch.nn.Conv1d if kind == "1d" else torch.nn.Conv2d)
               for c in connectors)
    (stage,) = method.stages()
    assert (stage.name, stage.epochs) == ("fsp", 2)
    s, t = taps(student, grad=True), taps(teacher)
    terms = stage.loss(s, t, torch.tensor([0, 1, 2]), torch.arange(3))
    assert set(terms) == {"fsp"}
    terms["fsp"].backward()
    assert_grads(s, t, list(connectors), used=[0, 1, 2])
    assert set(method.loss(s, t, torch.tensor([0, 1, 2]), torch.arange(3))) == {"ce"}


def test_fsp_uses_no_connector_between_equal_channel_counts() -> None:
    connectors = FSP().build(CNN1D, CNN1D, INFO)
    assert all(isinstance(c, torch.nn.Identity) for c in connectors)


def test_fsp_refuses_without_its_rules() -> None:
    with pytest.raises(Incompatible, match="equal spatial size"):
        FSP(FSPParams(pool=False)).check(CNN1D_SMALL, CNN1D)
    with pytest.raises(Incompatible, match="channel counts differ"):
        FSP(FSPParams(connector=False)).check(CNN1D_SMALL, CNN1D)
    with pytest.raises(Incompatible, match="flat"):
        FSP().check(MLP, CNN1D)
    with pytest.raises(Incompatible, match="at least two stages"):
        FSP().check(TapShapes((10,), None, ((8, 19),)), None)
    same = TapShapes((10,), None, ((8, 5), (8, 5)))
    FSP(FSPParams(pool=False, connector=False)).check(same, same)


def test_fsp_trains_an_fsp_stage_then_ce(cache_dir) -> None:
    # 4 stage epochs: at lr 0.01 its loss, in the hundreds, can rise from the first to the second
    result = briefly("fsp", {"fsp_epochs": 4}, cache=cache_dir, epochs=7)
    assert result.status == "finished", result.error
    stage = [row for row in result.history if row["phase"] == "fsp"]
    train = [row for row in result.history if row["phase"] == "train"]
    assert len(stage) == 4 and len(train) == 3
    assert stage[-1]["loss"] < stage[0]["loss"]
    assert train[-1]["loss"] < train[0]["loss"]


# NST ----------------------------------------------------------------------------------------


def mmd2_by_hand(fs: list[list[float]], ft: list[list[float]], d: int, c: float) -> float:
    def unit(v: list[float]) -> list[float]:
        norm = math.sqrt(sum(x * x for x in v))
        return [x / norm for x in v]

    def k(a: list[float], b: list[float]) -> float:
        return (sum(x * y for x, y in zip(a, b, strict=True)) + c) ** d

    def mean_k(A: list[list[float]], B: list[list[float]]) -> float:
        return sum(k(a, b) for a in A for b in B) / (len(A) * len(B))

    S, T = [unit(v) for v in fs], [unit(v) for v in ft]
    return mean_k(T, T) + mean_k(S, S) - 2 * mean_k(T, S)


@pytest.mark.parametrize(("d", "c"), [(2, 0.0), (1, 0.5), (3, 1.0)])
def test_nst_loss_matches_a_hand_computation(d: int, c: float) -> None:
    torch.manual_seed(2)
    f_s, f_t = torch.randn(2, 2, 3), torch.randn(2, 4, 6)  # the teacher's pooled to length 3
    expected = sum(mmd2_by_hand(nested(f_s[n]), pool_pairs(nested(f_t[n])), d, c)
                   for n in range(2)) / 2
    assert nst_loss(f_s, f_t, d, c).item() == pytest.approx(expected, rel=1e-5)


def test_nst_is_zero_for_the_same_channels() -> None:
    f = torch.rand(2, 3, 4, 4)
    assert abs(nst_loss(f, 2 * f).item()) < 1e-6


@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_nst_gradients_reach_the_last_student_stage_only(kind: str) -> None:
    student, teacher = PAIRS[kind]
    method = NST()
    method.check(student, teacher)
    s, t = taps(student, grad=True), taps(teacher)
    terms = method.loss(s, t, torch.tensor([0, 1, 2]), torch.arange(3))
    assert set(terms) == {"ce", "nst"}
    assert terms["nst"].item() == pytest.approx(
        50 * nst_loss(s.stages[-1], t.stages[-1]).item(), rel=1e-6)
    terms["nst"].backward()
    assert_grads(s, t, [], used=[2])
    assert s.stages[0].grad is None and s.stages[1].grad is None


def test_nst_refuses_flat_stages() -> None:
    with pytest.raises(Incompatible, match="student's stage -1 is flat"):
        NST().check(MLP, CNN1D)
    with pytest.raises(Incompatible, match="teacher's stage -1 is flat"):
        NST().check(CNN1D_SMALL, MLP)
    with pytest.raises(Incompatible, match="has 3 stages"):
        NST(NSTParams(stage=3)).check(CNN1D_SMALL, CNN1D)
    NST().check(CNN1D_SMALL, None)


def test_nst_trains(cache_dir) -> None:
    result = briefly("nst", cache=cache_dir, epochs=3)
    assert result.status == "finished", result.error
    assert result.history[-1]["loss"] < result.history[0]["loss"]
