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


@dataclass(frozen=True)
class MNIST1DParams:
    """Overrides of ``mnist1d.data.get_dataset_args()``; the defaults are the package's."""

    num_samples: int = 5000
    train_split: float = 0.8
    seed: int = 42


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
