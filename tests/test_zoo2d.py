from pathlib import Path

import pytest
import torch
from conftest import briefly
from kdbench_zoo import cnn2d, digits

from kdbench.plugins import Plugins
from kdbench.taps import shapes


@pytest.fixture(scope="module")
def digits8(cache_dir: Path):
    return digits.digits(digits.DigitsParams(), cache_dir / "data")


@pytest.fixture(scope="module")
def mnist(cache_dir: Path):
    return digits.mnist5k(digits.MNIST5kParams(), cache_dir / "data")


def _check_split(data, n_train: int, n_test: int, shape: tuple[int, ...]) -> None:
    assert data.x_train.shape == (n_train, *shape) and data.x_test.shape == (n_test, *shape)
    assert data.y_train.shape == (n_train,) and data.y_test.shape == (n_test,)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.long
    assert data.num_classes == 10
    assert set(data.y_train.unique().tolist()) == set(range(10))
    assert set(data.y_test.unique().tolist()) == set(range(10))
    for x in (data.x_train, data.x_test):
        assert x.min().item() == 0.0 and x.max().item() == 1.0
    assert data.info.input_shape == shape and data.info.num_train == n_train


def test_digits_is_sklearns_1797_images_split_75_25(digits8) -> None:
    _check_split(digits8, 1347, 450, (1, 8, 8))
    # Stratified: each class keeps its share of the test split, to within one image.
    counts = torch.bincount(torch.cat([digits8.y_train, digits8.y_test]), minlength=10)
    test_counts = torch.bincount(digits8.y_test, minlength=10)
    assert ((test_counts - counts * 0.25).abs() <= 1).all()


def test_mnist5k_is_mlxtends_5000_digits_split_80_20(mnist) -> None:
    _check_split(mnist, 4000, 1000, (1, 28, 28))
    assert torch.bincount(mnist.y_test, minlength=10).tolist() == [100] * 10


def test_the_split_is_fixed_and_cached(digits8, cache_dir: Path) -> None:
    again = digits.digits(digits.DigitsParams(), cache_dir / "data")
    assert torch.equal(again.x_train, digits8.x_train)
    assert torch.equal(again.y_test, digits8.y_test)
    assert len(list((cache_dir / "data").glob("digits-*.pt"))) >= 1
    other = digits.digits(digits.DigitsParams(seed=1), cache_dir / "data")
    assert not torch.equal(other.y_train, digits8.y_train)


@pytest.mark.parametrize(("name", "widths"), [("cnn2d", (32, 64, 128)),
                                             ("cnn2d_small", (8, 16, 32))])
def test_cnn2d_taps_on_both_datasets(name: str, widths: tuple[int, ...], digits8,
                                     mnist) -> None:
    factory = getattr(cnn2d, name)
    params = cnn2d.SmallCNN2DParams() if name == "cnn2d_small" else cnn2d.CNN2DParams()
    for data, sizes in ((digits8, (8, 4, 2)), (mnist, (28, 14, 7))):
        model = factory(params, data.info)
        s = shapes(model, data.x_train[:4])
        assert s.logits == (10,)
        assert s.embedding == (widths[-1],)
        assert s.stages == tuple((c, n, n) for c, n in zip(widths, sizes, strict=True))
        assert s.spatial
        assert model(data.x_train[:4]).shape == (4, 10)
        assert model(data.x_train[:4, 0]).shape == (4, 10)  # (N, H, W) also accepted


def test_cnn2d_student_is_much_smaller_and_depth_follows_channels(digits8) -> None:
    def size(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    teacher = cnn2d.cnn2d(cnn2d.CNN2DParams(), digits8.info)
    student = cnn2d.cnn2d_small(cnn2d.SmallCNN2DParams(), digits8.info)
    assert size(student) * 10 < size(teacher)
    deeper = cnn2d.cnn2d(cnn2d.CNN2DParams(channels=(4, 8), blocks=2), digits8.info)
    assert shapes(deeper, digits8.x_train[:2]).stages == ((4, 8, 8), (8, 4, 4))


def test_the_2d_zoo_is_registered(plugins: Plugins) -> None:
    for kind, name in (("datasets", "digits"), ("datasets", "mnist5k"),
                       ("students", "cnn2d"), ("students", "cnn2d_small")):
        assert plugins.entry(kind, name).factory is not None
    assert plugins.entry("students", "cnn2d").make_params({"channels": [4, 8]}).channels == (4, 8)


def test_kd_trains_briefly_on_digits(cache_dir: Path) -> None:
    result = briefly("kd", dataset="digits", student="cnn2d_small", teacher="cnn2d", epochs=3,
                     cache=cache_dir)
    assert result.status == "finished", result.error
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert {"top1", "agreement"} <= set(result.metrics)
