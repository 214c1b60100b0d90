"""Datasets as in-memory tensors, batched by index.

Small benchmark datasets fit in memory (on the GPU when there is one), so a
batch is ``x[idx]`` for a tensor of sample indices: no loader processes, and
methods that need sample identities (CRD's memory bank) get ``idx`` for free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DataInfo:
    """What a model factory needs to know about the data."""

    input_shape: tuple[int, ...]
    num_classes: int
    num_train: int


@dataclass
class Dataset:
    """Train and test splits as tensors; ``y`` holds class indices.

    ``augment(x, generator) -> x`` is applied to each training batch when set;
    it must draw its randomness from ``generator`` so that a seed fixes it.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None

    @property
    def info(self) -> DataInfo:
        return DataInfo(tuple(self.x_train.shape[1:]), self.num_classes, len(self.x_train))

    def to(self, device: torch.device | str) -> Dataset:
        return Dataset(self.name, self.x_train.to(device), self.y_train.to(device),
                       self.x_test.to(device), self.y_test.to(device), self.num_classes,
                       self.augment)


def batches(n: int, batch_size: int, generator: torch.Generator | None = None,
            drop_last: bool = False) -> Iterator[Tensor]:
    """Index tensors covering ``range(n)``, shuffled by ``generator`` when given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]
