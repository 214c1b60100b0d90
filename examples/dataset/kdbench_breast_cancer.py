"""The Wisconsin diagnostic breast cancer data: a small tabular dataset, nothing downloaded.

Street, Wolberg and Mangasarian (1993), "Nuclear feature extraction for breast tumor
diagnosis"; the UCI copy that scikit-learn ships (``sklearn.datasets.load_breast_cancer``):
569 tumours (212 malignant, 357 benign), 30 real-valued features each (mean, standard error
and worst value of ten measurements of the cell nuclei), 2 classes.

Split once into train and test by ``train_test_split``, stratified, with a fixed
``random_state``: every run of every benchmark sees the same split. The samples are stored
as they come (float32); ``prepare`` turns a batch into z-scores with the mean and standard
deviation of the training split (kdbench carves its validation split out of that later;
the test split never contributes). ``noise > 0`` augments training batches with Gaussian
noise of that many standard deviations per feature, drawn from the run's generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

import kdbench
from kdbench.data import Dataset
from kdbench.params import bounded
from kdbench.registry import Register


@dataclass(frozen=True)
class BreastCancerParams:
    test_size: float = bounded(0.25, low=0.01, high=0.99)
    """Fraction of the samples held out as the test split (stratified by class)."""
    seed: int = bounded(0, low=0, high=2**32 - 1)
    """``random_state`` of the split."""
    noise: float = bounded(0.0, low=0)
    """Standard deviations of Gaussian noise added to each training feature; 0: none."""


@dataclass(frozen=True)
class Standardise:
    """``prepare``: ``(x - mean) / std`` per feature, on the batch's device."""

    mean: Tensor
    std: Tensor

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


@dataclass(frozen=True)
class Jitter:
    """``augment``: Gaussian noise of ``noise`` feature standard deviations. Every random
    number comes from ``generator`` (the run's, seeded by its seed), so the seed fixes it."""

    noise: float
    std: Tensor

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        eps = torch.randn(x.shape, generator=generator).to(x.device)
        return x + self.noise * self.std.to(x.device) * eps


def breast_cancer(params: BreastCancerParams, cache_dir: Path) -> Dataset:
    """Wisconsin breast cancer (569 samples, 30 features, 2 classes), split 75/25."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    # Bundled with scikit-learn and read in milliseconds: nothing to cache in cache_dir.
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=params.test_size, random_state=params.seed, stratify=y)
    x_train = torch.as_tensor(x_train, dtype=torch.float32)
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-12)
    return Dataset(
        "breast_cancer", x_train, torch.as_tensor(y_train, dtype=torch.int64),
        torch.as_tensor(x_test, dtype=torch.float32), torch.as_tensor(y_test, dtype=torch.int64),
        num_classes=2, prepare=Standardise(mean, std),
        augment=Jitter(params.noise, std) if params.noise > 0 else None)


@kdbench.hookimpl
def kdbench_datasets(register: Register) -> None:
    register("breast_cancer", breast_cancer, params=BreastCancerParams)
