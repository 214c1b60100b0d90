"""MNIST-1D (Greydanus 2020), generated offline with ``mnist1d.data.make_dataset``.

The package's default arguments give 4000 train and 1000 test sequences of
length 40 in 10 classes. The dataset is built from its generator, never
downloaded, and cached on disk as tensors after the first build.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from kdbench.data import Dataset
from kdbench.params import bounded


@dataclass(frozen=True)
class MNIST1DParams:
    """Overrides of ``mnist1d.data.get_dataset_args()``; the defaults are the package's."""

    num_samples: int = bounded(5000, low=100, high=1_000_000)
    """Sequences in all, before the split (the generator makes num_samples // 10 per class,
    one at a time in Python: a million take minutes, more would seem to hang)."""
    train_split: float = bounded(0.8, low=0.05, high=0.95)
    """Fraction of the sequences in the training split."""
    seed: int = bounded(42, low=0, high=2**32 - 1)
    """Seed of the generator (numpy's, which takes 0..2³²−1)."""


def load(params: MNIST1DParams, cache_dir: Path) -> Dataset:
    """MNIST-1D with ``params``, from ``cache_dir`` when it was built before."""
    key = hashlib.sha256(json.dumps(asdict(params), sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"mnist1d-{key}.pt"
    if path.exists():
        tensors = torch.load(path, weights_only=True)
    else:
        tensors = _generate(params)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(tensors, tmp)
        tmp.replace(path)
    return Dataset("mnist1d", tensors["x"], tensors["y"], tensors["x_test"], tensors["y_test"],
                   num_classes=10)


def _generate(params: MNIST1DParams) -> dict[str, torch.Tensor]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    for key, value in asdict(params).items():
        setattr(args, key, value)
    data = make_dataset(args)
    return {
        "x": torch.as_tensor(data["x"], dtype=torch.float32),
        "y": torch.as_tensor(data["y"], dtype=torch.long),
        "x_test": torch.as_tensor(data["x_test"], dtype=torch.float32),
        "y_test": torch.as_tensor(data["y_test"], dtype=torch.long),
    }
