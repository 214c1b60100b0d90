import math

import torch
from kdbench_methods.kd import KD, KDParams, kd_loss

from kdbench.taps import Taps


def test_kd_loss_matches_a_hand_computation() -> None:
    z_s = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    z_t = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    T = 2.0

    def softmax(z: list[float]) -> list[float]:
        e = [math.exp(v / T) for v in z]
        return [v / sum(e) for v in e]

    total = 0.0
    for s, t in zip(z_s.tolist(), z_t.tolist(), strict=True):
        p_s, p_t = softmax(s), softmax(t)
        total += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True))
    expected = T * T * total / 2  # batchmean: divided by the batch size, not the elements
    assert math.isclose(kd_loss(z_s, z_t, T).item(), expected, rel_tol=1e-6)


def test_kd_is_zero_when_student_equals_teacher() -> None:
    z = torch.randn(4, 10)
    assert kd_loss(z, z, 4.0).item() < 1e-6


def test_kd_terms_are_weighted_by_alpha_and_reach_only_the_student() -> None:
    z_s = torch.randn(8, 10, requires_grad=True)
    z_t = torch.randn(8, 10)
    y = torch.randint(0, 10, (8,))
    method = KD(KDParams(T=4.0, alpha=0.9))
    terms = method.loss(Taps(z_s), Taps(z_t), y, torch.arange(8))
    assert set(terms) == {"ce", "kd"}
    ce = torch.nn.functional.cross_entropy(z_s, y)
    assert math.isclose(terms["ce"].item(), 0.1 * ce.item(), rel_tol=1e-6)
    assert math.isclose(terms["kd"].item(), 0.9 * kd_loss(z_s, z_t, 4.0).item(), rel_tol=1e-6)
    sum(terms.values()).backward()
    assert z_s.grad is not None and z_s.grad.abs().sum() > 0
    assert z_t.grad is None
