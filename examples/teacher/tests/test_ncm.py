"""The provider fits, caches and restores its teacher, whose taps are what kdbench reads."""

from __future__ import annotations

import pytest
import torch

from kdbench.data import hold_out
from kdbench.plugins import Plugins
from kdbench.taps import shapes, tap_points
from kdbench.testing import check_params


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins.load()


@pytest.fixture(scope="module")
def digits(plugins: Plugins, tmp_path_factory: pytest.TempPathFactory):
    entry = plugins.entry("datasets", "digits")
    data = entry.factory(entry.make_params({}), tmp_path_factory.mktemp("data"))
    return hold_out(data, 0.1, 0)  # as a run sees it: the training split less validation


def test_parameters_survive_a_benchmark_file_and_mlflow(plugins: Plugins) -> None:
    assert check_params("teachers", "ncm", plugins) == {"scale": 1.0}


def test_the_fit_is_cached_and_restored(plugins: Plugins, digits, tmp_path) -> None:
    entry = plugins.entry("teachers", "ncm")
    provider = entry.factory(entry.make_params({"scale": 4.0}))
    checkpoint = tmp_path / "teacher.pt"
    fitted = provider.load(None, checkpoint, digits)       # fits, writes the checkpoint
    restored = provider.load(None, checkpoint, digits)     # reads it back
    x = digits.inputs(digits.x_test)
    assert torch.equal(fitted(x), restored(x))
    assert tap_points(restored).available() == {"logits", "embedding"}
    taps = shapes(restored, x[:2])
    assert taps.logits == (10,) and taps.embedding == (64,)
    accuracy = (restored(x).argmax(1) == digits.y_test).float().mean().item()
    assert accuracy > 0.85  # nearest class mean on the 8×8 digits


def test_a_class_the_fit_never_saw_gets_a_low_finite_logit() -> None:
    from kdbench_ncm import NCMTeacher, class_means

    x = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    means, present = class_means(x, torch.tensor([0, 2]), 3)  # class 1 has no sample
    logits = NCMTeacher(means, present, 1.0)(x)
    assert torch.isfinite(logits).all()
    assert torch.equal(logits.argmax(1), torch.tensor([0, 2]))
    assert torch.allclose(logits[:, 1], logits.min(1).values)
