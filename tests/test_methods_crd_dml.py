import copy
import math

import numpy as np
import pytest
import torch
from conftest import briefly
from kdbench_methods.crd import CRD, CRDParams, crd_nce_loss, crd_softmax_loss
from kdbench_methods.dml import DML, dml_kl

from kdbench.data import DataInfo
from kdbench.errors import Incompatible
from kdbench.taps import Taps, TapShapes

# --- CRD -------------------------------------------------------------------------------


def test_crd_nce_loss_matches_a_hand_computation() -> None:
    s_pos = torch.tensor([0.5, -0.2])
    s_neg = torch.tensor([[0.1, 0.9, -0.4], [0.3, 0.0, 0.7]])
    tau, Z, M = 0.5, 3.0, 10
    K = 3
    total = 0.0
    for i in range(2):
        p = math.exp(s_pos[i].item() / tau) / Z
        total += math.log(p / (p + K / M))
        for k in range(K):
            p = math.exp(s_neg[i, k].item() / tau) / Z
            total += math.log(1 - p / (p + K / M))
    expected = -total / 2
    assert math.isclose(crd_nce_loss(s_pos, s_neg, tau, Z, M).item(), expected, rel_tol=1e-5)


def test_crd_softmax_loss_matches_a_hand_computation() -> None:
    s_pos = torch.tensor([0.5, -0.2])
    s_neg = torch.tensor([[0.1, 0.9], [0.3, 0.0]])
    tau = 0.5
    total = 0.0
    for i in range(2):
        row = [s_pos[i].item(), *s_neg[i].tolist()]
        e = [math.exp(v / tau) for v in row]
        total += -math.log(e[0] / sum(e))
    assert math.isclose(crd_softmax_loss(s_pos, s_neg, tau).item(), total / 2, rel_tol=1e-5)


def _crd(num_train: int, d_s: int = 4, d_t: int = 6, **params) -> CRD:
    method = CRD(CRDParams(**params))
    student = TapShapes(logits=(3,), embedding=(d_s,), stages=())
    teacher = TapShapes(logits=(3,), embedding=(d_t,), stages=())
    method.check(student, teacher)
    method.build(student, teacher, DataInfo((8,), 3, num_train))
    return method


def _normalise(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.mark.parametrize(("M", "K"), [(5, 16384), (20, 3), (50, 3)])
def test_crd_critic_follows_the_equations(M: int, K: int) -> None:
    """(5, 16384): K capped, every other sample is a negative; (20, 3): sampled negatives
    scored against the whole bank; (50, 3): sampled negatives gathered from the bank."""
    torch.manual_seed(0)
    tau = 0.5
    method = _crd(M, feat_dim=3, tau=tau, K=K, beta=0.8)
    critic = method.critic
    assert min(K, M - 1) == critic.K
    f_s, f_t = torch.randn(2, 4), torch.randn(2, 6)
    idx = torch.tensor([3, 1])
    mem_s, mem_t = critic.memory_s.numpy().copy(), critic.memory_t.numpy().copy()
    w_s, b_s = critic.embed_s.weight.detach().numpy(), critic.embed_s.bias.detach().numpy()
    w_t, b_t = critic.embed_t.weight.detach().numpy(), critic.embed_t.bias.detach().numpy()
    v_s = _normalise(f_s.numpy() @ w_s.T + b_s)
    v_t = _normalise(f_t.numpy() @ w_t.T + b_t)
    torch.manual_seed(1)
    if K >= M - 1:
        negatives = [[c for c in range(M) if c != j] for j in idx.tolist()]
    else:
        negatives = critic.negatives(idx).tolist()
    n_neg = len(negatives[0])

    def side(anchor: np.ndarray, bank: np.ndarray) -> float:
        pos = [float(anchor[i] @ bank[j]) for i, j in enumerate(idx.tolist())]
        neg = [[float(anchor[i] @ bank[c]) for c in row] for i, row in enumerate(negatives)]
        rows = [[p, *n] for p, n in zip(pos, neg, strict=True)]
        Z = M * np.mean(np.exp(np.array(rows) / tau))
        total = 0.0
        for i in range(len(idx)):
            p = math.exp(pos[i] / tau) / Z
            total += math.log(p / (p + n_neg / M))
            for score in neg[i]:
                p = math.exp(score / tau) / Z
                total += math.log(1 - p / (p + n_neg / M))
        return -total / len(idx)

    expected = side(v_s, mem_t) + side(v_t, mem_s)
    s, t = Taps(torch.randn(2, 3), f_s), Taps(torch.randn(2, 3), f_t)
    torch.manual_seed(1)  # the same negatives as drawn above
    terms = method.loss(s, t, torch.tensor([0, 1]), idx)
    assert set(terms) == {"ce", "crd"}
    assert math.isclose(terms["crd"].item(), 0.8 * expected, rel_tol=1e-4)

    # The banks moved at idx only, by momentum 0.5, and stay unit vectors.
    moved_s = _normalise(0.5 * mem_s[idx.numpy()] + 0.5 * v_s)
    np.testing.assert_allclose(critic.memory_s.numpy()[idx.numpy()], moved_s, atol=1e-5)
    np.testing.assert_allclose(critic.memory_t.numpy()[idx.numpy()],
                               _normalise(0.5 * mem_t[idx.numpy()] + 0.5 * v_t), atol=1e-5)
    others = [i for i in range(M) if i not in idx.tolist()]
    np.testing.assert_array_equal(critic.memory_s.numpy()[others], mem_s[others])

    # Z is estimated once, on the first batch.
    log_z = critic.log_z.clone()
    method.loss(Taps(torch.randn(2, 3), torch.randn(2, 4)),
                Taps(torch.randn(2, 3), torch.randn(2, 6)), torch.tensor([0, 1]),
                torch.tensor([0, 2]))
    assert torch.equal(critic.log_z, log_z)


def test_crd_sampled_negatives_exclude_the_anchor() -> None:
    torch.manual_seed(0)
    method = _crd(50, K=7)
    idx = torch.tensor([0, 13, 49])
    neg = method.critic.negatives(idx)
    assert neg.shape == (3, 7)
    assert (neg != idx.unsqueeze(1)).all()
    many = method.critic.negatives(torch.zeros(2000, dtype=torch.long))
    assert set(many.unique().tolist()) == set(range(1, 50))  # uniform over the others


@pytest.mark.parametrize("objective", ["nce", "softmax"])
@pytest.mark.parametrize("num_train", [6, 40])  # every other sample / K=16 sampled
def test_crd_gradients_reach_student_and_embeddings_never_teacher(objective: str,
                                                                 num_train: int) -> None:
    torch.manual_seed(0)
    method = _crd(num_train, K=16, objective=objective)
    z_s = torch.randn(4, 3, requires_grad=True)
    f_s = torch.randn(4, 4, requires_grad=True)
    f_t = torch.randn(4, 6, requires_grad=True)
    terms = method.loss(Taps(z_s, f_s), Taps(torch.randn(4, 3), f_t), torch.tensor([0, 1, 2, 0]),
                        torch.tensor([5, 0, 2, 3]))
    total = sum(terms.values())
    assert torch.isfinite(total)
    total.backward()
    assert z_s.grad is not None and z_s.grad.abs().sum() > 0
    assert f_s.grad is not None and f_s.grad.abs().sum() > 0
    for p in method.critic.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert f_t.grad is None
    assert not any(b.requires_grad for b in method.critic.buffers())


def test_crd_refuses_models_without_an_embedding() -> None:
    flat = TapShapes(logits=(10,), embedding=None, stages=())
    ok = TapShapes(logits=(10,), embedding=(40,), stages=())
    with pytest.raises(Incompatible):
        CRD(CRDParams()).check(ok, flat)
    with pytest.raises(Incompatible):
        CRD(CRDParams()).check(flat, ok)


def test_crd_trains_briefly(cache_dir) -> None:
    result = briefly("crd", epochs=3, cache=cache_dir)
    assert result.status == "finished", result.error
    first, second, last = result.history
    # The first epoch scores against the banks' random initial vectors: its NCE loss is low
    # and not comparable. Once the banks hold features (epoch 2 on), the loss falls.
    assert last["loss"] < second["loss"]
    assert last["loss.ce"] < first["loss.ce"]
    assert {"loss.ce", "loss.crd"} <= set(result.history[0])


# --- DML -------------------------------------------------------------------------------


def test_dml_kl_matches_a_hand_computation() -> None:
    z_target = torch.tensor([[0.0, 2.0, 1.0], [1.0, 1.0, 0.0]])
    z = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0]])

    def softmax(v: list[float]) -> list[float]:
        e = [math.exp(x) for x in v]
        return [x / sum(e) for x in e]

    total = 0.0
    for a, b in zip(z_target.tolist(), z.tolist(), strict=True):
        p, q = softmax(a), softmax(b)
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    assert math.isclose(dml_kl(z_target, z).item(), total / 2, rel_tol=1e-6)


def test_dml_each_network_learns_only_from_its_own_terms() -> None:
    z_s = torch.randn(6, 10, requires_grad=True)
    z_p = torch.randn(6, 10, requires_grad=True)
    y = torch.randint(0, 10, (6,))
    terms = DML().loss(Taps(z_s), Taps(z_p), y, torch.arange(6))
    assert set(terms) == {"ce", "kl", "peer_ce", "peer_kl"}
    ce = torch.nn.functional.cross_entropy
    assert math.isclose(terms["ce"].item(), ce(z_s, y).item(), rel_tol=1e-6)
    assert math.isclose(terms["peer_ce"].item(), ce(z_p, y).item(), rel_tol=1e-6)
    assert math.isclose(terms["kl"].item(), dml_kl(z_p, z_s).item(), rel_tol=1e-6)
    assert math.isclose(terms["peer_kl"].item(), dml_kl(z_s, z_p).item(), rel_tol=1e-6)
    student_side = torch.autograd.grad(terms["ce"] + terms["kl"], [z_s, z_p], allow_unused=True,
                                       retain_graph=True)
    peer_side = torch.autograd.grad(terms["peer_ce"] + terms["peer_kl"], [z_s, z_p],
                                    allow_unused=True)
    assert student_side[0].abs().sum() > 0 and student_side[1] is None
    assert peer_side[1].abs().sum() > 0 and peer_side[0] is None
    assert DML.trains_teacher and DML.uses_teacher()


def test_dml_trains_the_peer_too(cache_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    from kdbench import train

    built: list[tuple[torch.nn.Module, dict[str, torch.Tensor]]] = []
    original = train.build_model

    def recording(component, data):
        model = original(component, data)
        built.append((model, copy.deepcopy(model.state_dict())))
        return model

    monkeypatch.setattr(train, "build_model", recording)
    result = briefly("dml", epochs=3, cache=cache_dir)
    assert result.status == "finished", result.error
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert {"loss.ce", "loss.kl", "loss.peer_ce", "loss.peer_kl"} <= set(result.history[0])
    (student, _), (peer, p_before) = built[-2], built[-1]
    size = sum(p.numel() for p in student.parameters())
    assert sum(p.numel() for p in peer.parameters()) > size
    for name, value in peer.state_dict().items():
        if value.is_floating_point():
            assert not torch.equal(value, p_before[name]), f"peer's {name} did not change"

