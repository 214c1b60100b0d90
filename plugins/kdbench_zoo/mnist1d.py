"""MNIST-1D (Greydanus 2020), generated offline with ``mnist1d.data.make_dataset``.

The package's default arguments give 4000 train and 1000 test sequences of
length 40 in 10 classes. The dataset is built from its generator, never
downloaded, and cached on disk as tensors after the first build.

Augmentation (``augment = "crop"``): each training batch is padded with ``pad`` zeros on
both sides and a window of the original length is cut at a random offset in
``0..2*pad``, drawn per sample from the run's generator (so the seed fixes it), in one
vectorised gather. This is CIFAR's standard random crop ("pad 4") on a sequence; zeros, as
the MNIST-1D generator's own ``transform.pad`` pads its templates with zeros (the paper's
training uses no augmentation). The test split is never augmented.

With augmentation the teacher sees the student's augmented batch (Beyer et al. 2022,
"function matching"): :class:`kdbench.train.TeacherTaps` computes the frozen teacher's
outputs on every batch instead of once per training set. Measured with
``python benchmarks/augment_cost.py 30 5`` (the default benchmark's models, teacher
``cnn1d`` and student ``cnn1d_small``, 30 epochs, batch 100, 1 thread, median of 5 runs on
a 2-core machine): ``kd`` takes 2.16 s without augmentation and 2.78 s with it (×1.29: the
teacher's forward pass on every batch); the crop itself costs 3% (baseline 1.86 s against
1.91 s).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from kdbench import cachefile
from kdbench.data import Dataset
from kdbench.params import bounded

GENERATOR_KEYS = ("num_samples", "train_split", "seed")
"""The parameters that choose the sequences (and the cache file); augmentation does not."""


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
    augment: Literal["none", "crop"] = "none"
    """``crop``: a random crop of the original length from each training sequence padded
    with ``pad`` zeros on both sides; ``none``: the sequences as generated."""
    pad: int = bounded(4, low=1, high=1000)
    """Zeros added on each side before a ``crop`` (CIFAR's "pad 4")."""

    def __post_init__(self) -> None:
        if self.augment == "none" and self.pad != 4:
            raise ValueError('pad is used only by augment = "crop"; set augment = "crop" or '
                             "remove pad")


def load(params: MNIST1DParams, cache_dir: Path) -> Dataset:
    """MNIST-1D with ``params``, from ``cache_dir`` when it was built before."""
    generator = {k: v for k, v in asdict(params).items() if k in GENERATOR_KEYS}
    key = hashlib.sha256(json.dumps(generator, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"mnist1d-{key}.pt"
    tensors = cachefile.load_or_build(path, lambda: _generate(params), "MNIST-1D")
    augment = functools.partial(random_crop, pad=params.pad) if params.augment == "crop" else None
    return Dataset("mnist1d", tensors["x"], tensors["y"], tensors["x_test"], tensors["y_test"],
                   num_classes=10, augment=augment)


def random_crop(x: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Each sequence of ``x`` (``(N, L)`` or ``(N, C, L)``) shifted by a random offset in
    ``-pad..pad``, zeros filling in: a crop of length ``L`` out of the sequence padded with
    ``pad`` zeros on both sides. The offsets come from ``generator`` (a CPU generator, as
    the training loop's), one per sequence, the same for every channel of it."""
    length = x.shape[-1]
    padded = torch.nn.functional.pad(x, (pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (x.shape[0],), generator=generator).to(x.device)
    index = offsets[:, None] + torch.arange(length, device=x.device)[None, :]
    if x.dim() == 3:
        index = index[:, None, :].expand(-1, x.shape[1], -1)
    return padded.gather(-1, index)


def _generate(params: MNIST1DParams) -> dict[str, torch.Tensor]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    for key in GENERATOR_KEYS:
        setattr(args, key, getattr(params, key))
    data = make_dataset(args)
    return {
        "x": torch.as_tensor(data["x"], dtype=torch.float32),
        "y": torch.as_tensor(data["y"], dtype=torch.long),
        "x_test": torch.as_tensor(data["x_test"], dtype=torch.float32),
        "y_test": torch.as_tensor(data["y_test"], dtype=torch.long),
    }
