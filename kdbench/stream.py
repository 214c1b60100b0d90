"""Splits too big to hold in memory, read from their files a batch at a time.

A :class:`Streamed` split stands where a dataset would put its ``uint8`` ``(N, C, H, W)``
tensor (ImageNet at 224×224 is 190 GB): it has the tensor's length and shape, and indexing it
selects files (a view: :func:`kdbench.data.hold_out` and ``--smoke`` subsets work unchanged)
without reading any. Pixels appear in two places only:

* :class:`Decoding`, the dataset's ``prepare``, decodes a batch of files in this process
  before normalising it: every evaluation pass and every other reader of
  :meth:`kdbench.data.Dataset.inputs` works as on a tensor;
* :func:`training_batches`, the training loop's batches: a ``torch.utils.data.DataLoader``
  whose worker processes decode each batch of files and augment it, one batch per item, in
  the order the run's generator drew. The augmentation of batch k draws from a generator
  seeded with a number the run's generator drew for it, so a run's batches are the same
  with 0, 1 or 8 workers; with augmentation off they are the in-memory path's batches,
  pixel for pixel (tests/test_stream.py).

Workers are spawned (a forked copy of an initialised torch can deadlock in OpenMP) and kept
for the phase's epochs. A reader turns one file into a ``uint8`` ``(C, H, W)`` tensor; it
is pickled to each worker, so it is a plain module-level class, as the dataset's augment is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from kdbench.data import batches

Reader = Callable[[str], Tensor]
"""One file to a ``uint8`` ``(C, H, W)`` tensor of the split's shape."""
Augment = Callable[[Tensor, torch.Generator], Tensor]


@dataclass(frozen=True)
class Streamed:
    """The files of a split, in order, standing in for their ``uint8`` tensor."""

    files: tuple[str, ...]
    reader: Reader
    sample_shape: tuple[int, ...]
    workers: int = 0
    """Loader processes decoding training batches (0: in the training process)."""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.uint8

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), *self.sample_shape))

    def __getitem__(self, key: int | slice | Tensor | Sequence[int]) -> Streamed:
        if isinstance(key, slice):
            return replace(self, files=self.files[key])
        if isinstance(key, int):
            return replace(self, files=(self.files[key],))
        if isinstance(key, Tensor) and key.dtype == torch.bool:
            key = torch.nonzero(key).flatten()
        indices = key.tolist() if isinstance(key, Tensor) else list(key)
        return replace(self, files=tuple(self.files[i] for i in indices))

    def to(self, device: torch.device | str) -> Streamed:
        return replace(self, device=torch.device(device))

    def cpu(self) -> Streamed:
        return self.to("cpu")

    def decode(self) -> Tensor:
        """The files' pixels, ``uint8`` ``(N, C, H, W)`` on the split's device, read in this
        process."""
        return decode(self.files, self.reader, self.sample_shape).to(self.device)


def decode(files: Sequence[str], reader: Reader, sample_shape: tuple[int, ...]) -> Tensor:
    out = torch.empty((len(files), *sample_shape), dtype=torch.uint8)
    for i, path in enumerate(files):
        out[i] = reader(path)
    return out


@dataclass(frozen=True)
class Decoding:
    """A streamed dataset's ``prepare``: decodes a :class:`Streamed` batch, then applies the
    dataset's own ``prepare`` (its normalisation); a tensor batch goes straight to it."""

    prepare: Callable[[Tensor], Tensor]

    def __call__(self, x: Tensor | Streamed) -> Tensor:
        return self.prepare(x.decode() if isinstance(x, Streamed) else x)

    @property
    def inverse(self) -> Callable[[Tensor], Tensor] | None:
        return getattr(self.prepare, "inverse", None)


def materialize(x: Tensor | Streamed) -> Tensor:
    """``x`` as a tensor: a :class:`Streamed` batch decoded, a tensor as it is."""
    return x.decode() if isinstance(x, Streamed) else x


class _Batches(torch.utils.data.Dataset):
    """Item ``(indices, seed)``: those files decoded and, with ``augment``, augmented from a
    generator seeded with ``seed``; run in a loader worker."""

    def __init__(self, split: Streamed, augment: Augment | None) -> None:
        self.files, self.reader, self.shape = split.files, split.reader, split.sample_shape
        self.augment = augment

    def __getitem__(self, key: tuple[list[int], int]) -> Tensor:
        indices, seed = key
        x = decode([self.files[i] for i in indices], self.reader, self.shape)
        if self.augment is not None:
            x = self.augment(x, torch.Generator().manual_seed(seed))
        return x

    def __len__(self) -> int:  # items are whole batches, asked for by key
        return len(self.files)


class _Keys(torch.utils.data.Sampler):
    """The current epoch's ``(indices, seed)`` items, set before each pass."""

    def __init__(self) -> None:
        self.keys: list[tuple[list[int], int]] = []

    def __iter__(self) -> Iterator[tuple[list[int], int]]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


class TrainingBatches:
    """The training split's batches of a run, epoch after epoch: ``(indices, x)`` with ``x``
    the stored samples of those indices, augmented (``uint8`` images, before ``prepare``).

    In memory: ``x_train[idx]``, then ``augment(x, generator)``, drawing from the run's
    generator as the loop always did. Streamed: through a loader with the split's workers
    (see the module's docstring)."""

    def __init__(self, x: Tensor | Streamed, augment: Augment | None, batch_size: int) -> None:
        self.x, self.augment, self.batch_size = x, augment, batch_size
        self.loader: torch.utils.data.DataLoader | None = None
        self.keys = _Keys()

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        order = batches(len(self.x), self.batch_size, generator)
        if not isinstance(self.x, Streamed):
            for idx in order:
                x = self.x[idx]
                yield idx, (self.augment(x, generator) if self.augment is not None else x)
            return
        order = list(order)
        # One seed per batch, drawn only when augmenting: with augmentation off the run's
        # generator advances as in memory, and the batches are the same.
        seeds = torch.randint(0, 2**62, (len(order),), generator=generator).tolist() \
            if self.augment is not None else [0] * len(order)
        self.keys.keys = [(idx.tolist(), seed) for idx, seed in zip(order, seeds, strict=True)]
        for idx, x in zip(order, self._loader(), strict=True):
            yield idx, x.to(self.x.device)

    def _loader(self) -> Any:
        if self.loader is None:
            workers = self.x.workers
            self.loader = torch.utils.data.DataLoader(
                _Batches(self.x, self.augment), sampler=self.keys, batch_size=None,
                num_workers=workers, worker_init_fn=_one_thread if workers else None,
                multiprocessing_context="spawn" if workers else None,
                persistent_workers=bool(workers), prefetch_factor=2 if workers else None)
        return iter(self.loader)
