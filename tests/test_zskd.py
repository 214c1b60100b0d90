"""ZSKD (Nayak et al. 2019): each piece against a hand computation, the impressions' cache,
and a data-free run that never reads the real training split."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import briefly
from kdbench_methods import zskd
from kdbench_zoo import cnn2d
from torch import nn

from kdbench import train
from kdbench.data import DataInfo, Dataset, Sealed, seal_train
from kdbench.errors import Incompatible
from kdbench.method import TransferContext
from kdbench.taps import TapPoints

DIGITS = {"student": "cnn2d_small", "teacher": "cnn2d", "dataset": "digits"}
FAST = {"impressions": 40, "steps": 5, "lr": 0.05, "batch": 40}


def test_class_similarity_is_the_cosine_of_the_weight_rows() -> None:
    W = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    s = 1 / math.sqrt(2)
    expected = torch.tensor([[1, 0, s], [0, 1, s], [s, s, 1]])
    assert torch.allclose(zskd.class_similarity(W), expected, atol=1e-6)


def test_concentration_is_beta_times_the_min_max_normalised_row_plus_epsilon() -> None:
    s = 1 / math.sqrt(2)
    row = torch.tensor([s, s, 1.0])  # class 2 of the matrix above: min s, max 1
    assert torch.allclose(zskd.concentration(row, 1.0), torch.tensor([0, 0, 1.0]) + 1e-4)
    row0 = torch.tensor([1.0, 0.0, s])
    assert torch.allclose(zskd.concentration(row0, 0.1),
                          torch.tensor([0.1, 0.0, 0.1 * s]) + 1e-4, atol=1e-7)


def test_soft_labels_are_on_the_simplex_with_the_dirichlet_mean() -> None:
    alpha = torch.tensor([2.0, 1.0, 1.0])
    y = zskd.sample_soft_labels(alpha, 20000, np.random.default_rng(0))
    assert y.shape == (20000, 3) and (y >= 0).all()
    assert torch.allclose(y.sum(1), torch.ones(20000), atol=1e-5)
    assert torch.allclose(y.mean(0), torch.tensor([0.5, 0.25, 0.25]), atol=0.01)
    again = zskd.sample_soft_labels(alpha, 5, np.random.default_rng(0))
    assert torch.equal(again, y[:5])
    # β = 0.1 with ε concentrations: nearly one-hot, never nan.
    peaky = zskd.sample_soft_labels(torch.tensor([0.1, 1e-4, 0.07]), 1000,
                                    np.random.default_rng(1))
    assert torch.isfinite(peaky).all() and peaky.max(1).values.median() > 0.9


def test_impression_loss_is_the_tempered_cross_entropy_summed_over_impressions() -> None:
    tau = 20.0
    z = torch.tensor([[0.0, tau * math.log(3)], [0.0, 0.0]])  # softmax(z/τ): (1/4, 3/4), (1/2, 1/2)
    y = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    expected = -(0.5 * math.log(1 / 4) + 0.5 * math.log(3 / 4)) - math.log(1 / 2)
    assert zskd.impression_loss(z, y, tau).item() == pytest.approx(expected, rel=1e-6)


def test_rescale_maps_each_sample_onto_the_range_and_split_evenly() -> None:
    x = torch.tensor([[[1.0, 3.0], [2.0, 5.0]], [[-1.0, 0.0], [0.0, 1.0]]])
    out = zskd.rescale(x, 0.0, 1.0)
    assert torch.allclose(out[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    assert torch.allclose(out[1], torch.tensor([[0.0, 0.5], [0.5, 1.0]]))
    assert zskd.split_evenly(7, 3) == [3, 2, 2] and sum(zskd.split_evenly(40, 20)) == 40


def _teacher() -> nn.Module:
    torch.manual_seed(0)
    return train.freeze(cnn2d.CNN2D(1, 4, (4, 8)))


def test_final_layer_is_found_and_checked() -> None:
    teacher = _teacher()
    assert zskd.final_layer(teacher, torch.rand(2, 1, 8, 8)) is teacher.classifier

    class Scaled(nn.Module):  # logits are not the Linear's output: no final layer to use
        def __init__(self) -> None:
            super().__init__()
            self.body, self.flatten, self.head = nn.Conv2d(1, 3, 8), nn.Flatten(), nn.Linear(3, 4)
            self.taps = TapPoints(embedding="flatten")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * self.head(self.flatten(self.body(x)))

    with pytest.raises(Incompatible, match="final layer"):
        zskd.final_layer(Scaled().eval(), torch.rand(2, 1, 8, 8))


def test_impressions_do_not_depend_on_the_batching_and_approach_their_labels() -> None:
    teacher = _teacher()
    W = teacher.classifier.weight
    p = zskd.ZSKDParams(impressions=16, steps=10, lr=0.05, batch=16)
    whole = zskd.make_impressions(teacher, W, (1, 8, 8), p)
    parts = zskd.make_impressions(teacher, W, (1, 8, 8), zskd.ZSKDParams(
        impressions=16, steps=10, lr=0.05, batch=5))
    assert torch.allclose(whole.x, parts.x, atol=1e-5) and torch.equal(whole.targets, parts.targets)
    # 16 impressions over 4 classes × 2 scales: two per group, in order.
    assert whole.group.tolist() == [g for g in range(8) for _ in range(2)]
    assert whole.x.min() >= 0 and whole.x.max() <= 1
    start = p.low + (p.high - p.low) * torch.rand((16, 1, 8, 8),
                                                  generator=torch.Generator().manual_seed(p.seed))
    with torch.no_grad():
        before = zskd.impression_loss(teacher(start), whole.targets, p.tau)
        after = zskd.impression_loss(teacher(whole.x), whole.targets, p.tau)
    assert after < before


def test_impressions_are_cached_by_teacher_and_setting(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    teacher = _teacher()
    context = TransferContext(DataInfo((1, 8, 8), 4, 100), "teacher-a", tmp_path / "zskd")
    p = zskd.ZSKDParams(impressions=8, steps=2, batch=8)
    made, y = zskd.cached_impressions(teacher, context, p)
    assert y.tolist() == teacher(made.x).argmax(1).tolist()
    files = sorted(f.name for f in (tmp_path / "zskd").iterdir())
    assert len(files) == 2 and files[0].endswith(".pt") and files[1].endswith(".pt.lock")

    def never(*_: object) -> None:
        raise AssertionError("regenerated what the cache holds")

    monkeypatch.setattr(zskd, "make_impressions", never)
    again, _ = zskd.cached_impressions(teacher, context, zskd.ZSKDParams(
        impressions=8, steps=2, batch=8, T=4.0))  # the student's T does not change them
    assert torch.equal(again.x, made.x)
    assert zskd.cache_key(context, p) != zskd.cache_key(
        TransferContext(context.info, "teacher-b", context.cache_dir), p)
    assert zskd.cache_key(context, p) != zskd.cache_key(context, zskd.ZSKDParams(
        impressions=8, steps=3, batch=8))


def test_a_sealed_training_split_refuses_every_read_and_keeps_its_shapes() -> None:
    data = Dataset("d", torch.rand(10, 1, 8, 8), torch.zeros(10, dtype=torch.long),
                   torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), 3)
    sealed = seal_train(data)
    assert sealed.info == data.info
    for read in (lambda: sealed.x_train[:2], lambda: len(sealed.y_train),
                 lambda: sealed.x_train.shape, lambda: torch.cat([sealed.x_train])):
        with pytest.raises(RuntimeError, match="real training split is not to be read"):
            read()
    assert torch.equal(sealed.x_test, data.x_test)


def test_a_zskd_run_trains_on_impressions_and_never_reads_the_training_split(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sealed: list[Dataset] = []

    def seal(data: Dataset) -> Dataset:
        out = seal_train(data)
        sealed.append(out)
        return out

    monkeypatch.setattr(train, "seal_train", seal)
    result = briefly("zskd", FAST, cache=cache_dir, **DIGITS)
    assert result.status == "finished", result.error
    # The run sealed its real training split before anything read it, and still finished:
    # every read of it would have raised.
    (data,) = sealed
    assert isinstance(data.x_train, Sealed) and isinstance(data.y_train, Sealed)
    assert 0 <= result.metrics["top1"] <= 1 and "train.top1" in result.metrics
    assert result.artifacts["impressions.png"].startswith(b"\x89PNG")
    assert [row["phase"] for row in result.history] == ["train", "train"]
    # The same job again takes the impressions from the cache and gives the same numbers.
    again = briefly("zskd", FAST, cache=cache_dir, **DIGITS)
    assert again.metrics == result.metrics and again.history == result.history
    # The baseline never seals it.
    assert briefly(None, cache=cache_dir, **DIGITS).status == "finished" and len(sealed) == 2


def test_a_transfer_set_of_the_wrong_shape_fails_the_run_in_one_line(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kdbench.method import TransferSet

    monkeypatch.setattr(zskd.ZSKD, "transfer_set", lambda self, teacher, context: TransferSet(
        torch.rand(5, 3), torch.zeros(5, dtype=torch.long)))
    result = briefly("zskd", FAST, cache=cache_dir, **DIGITS)
    assert result.status == "failed"
    assert "transfer_set returned TransferSet; expected" in result.error
    assert "(n, 1, 8, 8)" in result.error


def test_the_impressions_grid_is_an_mlflow_artifact_of_the_run(tiny: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from kdbench.cli import main

    text = tiny.read_text()
    assert text.endswith("[methods.kd]\nT = 4.0\nalpha = 0.9\n")
    tiny.write_text(text.replace("[methods.kd]\nT = 4.0\nalpha = 0.9\n",
                                 "[methods.zskd]\nimpressions = 20\nsteps = 3\nbatch = 20\n"))
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    assert main(["run", str(tiny), "--tracking-uri", uri, "--seeds", "1", "--out",
                 str(tmp_path / "out")]) == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    run = next(r for r in runs if r.data.tags["kdbench.role"] == "method")
    assert run.data.tags["kdbench.method"] == "zskd" and run.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["impressions.png"]
    png = Path(client.download_artifacts(run.info.run_id, "impressions.png", str(tmp_path)))
    assert png.read_bytes().startswith(b"\x89PNG")
