"""ZSKD's published setups: LeNet-5 / LeNet-5-Half and the CIFAR AlexNet / AlexNet-Half, their
sizes against the paper and the authors' code, and the benchmark files that use them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from kdbench_methods import zskd

from kdbench import train
from kdbench.data import DataInfo
from kdbench.spec import load
from kdbench.taps import shapes

ROOT = Path(__file__).resolve().parent.parent


def _build(plugins, name: str, info: DataInfo):
    entry = plugins.entry("students", name)
    return entry.factory(entry.make_params({}), info)


def _size(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_lenet5_and_its_half_have_the_papers_parameter_counts(plugins) -> None:
    # Nayak et al. 2019 (and Lopes et al. 2017): 61 706 and 35 820 for 10 classes.
    mnist = DataInfo((1, 28, 28), 10, 60000)
    teacher, student = _build(plugins, "lenet5", mnist), _build(plugins, "lenet5_half", mnist)
    assert _size(teacher) == 61706 and _size(student) == 35820
    s = shapes(student, torch.rand(2, 1, 28, 28))
    assert s.logits == (10,) and s.embedding == (84,) and s.stages == ((3, 14, 14), (8, 5, 5))


def test_the_cifar_alexnets_have_the_authors_layers(plugins) -> None:
    # By hand from model_alex_full.py / model_alex_half.py: conv weights + biases, fc weights +
    # biases, BatchNorm scale + shift after each of the 5 conv and 2 hidden fc layers.
    def count(c: tuple[int, ...], h: tuple[int, int]) -> int:
        convs = [(3, c[0], 5), (c[0], c[1], 5), (c[1], c[2], 3), (c[2], c[3], 3), (c[3], c[4], 3)]
        fcs = [(3 * 3 * c[4], h[0]), (h[0], h[1]), (h[1], 10)]
        return (sum(k * k * i * o + o for i, o, k in convs) + sum(i * o + o for i, o in fcs)
                + 2 * (sum(c) + sum(h)))

    cifar = DataInfo((3, 32, 32), 10, 50000)
    teacher = _build(plugins, "alexnet_cifar", cifar)
    student = _build(plugins, "alexnet_cifar_half", cifar)
    assert _size(teacher) == count((48, 128, 192, 192, 128), (512, 256)) == 1659178
    assert _size(student) == count((24, 64, 96, 96, 64), (256, 128)) == 417434
    t = shapes(teacher, torch.rand(2, 3, 32, 32))
    assert t.stages == ((48, 15, 15), (128, 7, 7), (128, 3, 3)) and t.embedding == (256,)


@pytest.mark.parametrize(("teacher", "info"), [("lenet5", DataInfo((1, 28, 28), 10, 0)),
                                               ("alexnet_cifar", DataInfo((3, 32, 32), 10, 0))])
def test_zskd_finds_the_classifier_of_both_teachers(plugins, teacher: str, info: DataInfo) -> None:
    model = train.freeze(_build(plugins, teacher, info))
    layer = zskd.final_layer(model, torch.rand(2, *info.input_shape))
    assert layer is model.classifier
    zskd.ZSKD(zskd.ZSKDParams()).check(shapes(model, torch.rand(2, *info.input_shape)),
                                       shapes(model, torch.rand(2, *info.input_shape)))


@pytest.mark.parametrize(("name", "dataset", "impressions"), [
    ("zskd-mnist", "mnist", 24000), ("zskd-cifar10", "cifar10", 40000)])
def test_the_published_setups_load(plugins, name: str, dataset: str, impressions: int) -> None:
    if dataset not in plugins.table("datasets"):
        pytest.skip(f"no dataset plugin {dataset!r} installed")
    spec = load(str(ROOT / "leaderboard" / f"{name}.toml"), plugins)
    assert spec.dataset.name == dataset
    (kd, row) = spec.methods
    assert kd.params == {"T": 20.0, "alpha": 1.0} and row.params["impressions"] == impressions


def test_the_published_numbers_are_beside_each_setup() -> None:
    for name, numbers in [("zskd-mnist", ["99.34", "98.92", "99.25", "98.77"]),
                          ("zskd-cifar10", ["83.03", "80.04", "80.08", "69.56"])]:
        text = (ROOT / "leaderboard" / f"{name}.toml").read_text()
        assert all(n in text for n in numbers)
