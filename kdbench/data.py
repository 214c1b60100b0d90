"""Datasets as in-memory tensors, batched by index.

Small benchmark datasets fit in memory (on the GPU when there is one), so a
batch is ``x[idx]`` for a tensor of sample indices: no loader processes, and
methods that need sample identities (CRD's memory bank) get ``idx`` for free.

A run never sees a dataset as its plugin made it: :func:`hold_out` moves a validation split
out of the training split (the same samples for every run of a benchmark), and
:func:`seal_test` makes the test split unreadable for runs that must not look at it;
:func:`seal_train` does the same to the training split of a run whose method makes its own
transfer set (:meth:`kdbench.method.Method.transfer_set`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import torch
from torch import Tensor

from kdbench.errors import KdbenchError


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
    ``x_val``/``y_val``: the validation split, set by :func:`hold_out` (a dataset plugin
    leaves them out). ``train_info``: what :attr:`info` says while the training split is
    sealed (:func:`seal_train`), so models can still be built from its shapes.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None
    x_val: Tensor | None = None
    y_val: Tensor | None = None
    train_info: DataInfo | None = None

    @property
    def info(self) -> DataInfo:
        if self.train_info is not None:
            return self.train_info
        return DataInfo(tuple(self.x_train.shape[1:]), self.num_classes, len(self.x_train))

    def to(self, device: torch.device | str) -> Dataset:
        def move(t: Tensor | None) -> Tensor | None:
            return t.to(device) if t is not None else None

        return Dataset(self.name, self.x_train.to(device), self.y_train.to(device),
                       self.x_test.to(device), self.y_test.to(device), self.num_classes,
                       self.augment, move(self.x_val), move(self.y_val), self.train_info)


def validation_split(y: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """``(train, val)``: sorted indices into a training split of labels ``y``, disjoint and
    covering it, with ``val`` the held-out validation samples.

    Stratified: of the ``n_c`` samples of each class, ``floor(fraction * n_c + 0.5)`` (at
    most ``n_c - 1``, so that every class keeps a training sample) are held out, picked by
    one ``torch.randperm`` of all samples from a ``torch.Generator`` seeded with ``seed``.
    The split depends on the labels, the fraction and the seed only: never on a run.
    """
    y = y.cpu()
    n = len(y)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    # A stable sort by label keeps the random order within each class.
    order = order[torch.sort(y[order], stable=True).indices]
    counts = torch.bincount(y, minlength=1).tolist()
    held = torch.zeros(n, dtype=torch.bool)
    start = 0
    for n_c in counts:
        take = min(max(n_c - 1, 0), math.floor(fraction * n_c + 0.5))
        held[order[start:start + take]] = True
        start += n_c
    return torch.nonzero(~held).flatten(), torch.nonzero(held).flatten()


def hold_out(data: Dataset, fraction: float, seed: int) -> Dataset:
    """``data`` with its validation split (:func:`validation_split`) moved out of the
    training split into ``x_val``/``y_val``."""
    train, val = validation_split(data.y_train, fraction, seed)
    if len(val) == 0:
        raise KdbenchError(f"a validation fraction of {fraction} holds out no sample of the "
                           f"{len(data.y_train)} training samples of dataset {data.name!r}; "
                           "raise [protocol] validation or use more data")
    train, val = train.to(data.x_train.device), val.to(data.x_train.device)
    return replace(data, x_train=data.x_train[train], y_train=data.y_train[train],
                   x_val=data.x_train[val], y_val=data.y_train[val])


class Sealed:
    """Stands in for a split of a run that must not read it: any use raises.

    Reading a tensor goes through indexing, ``len``, iteration, an attribute (``.shape``,
    ``.to``) or a torch function (``__torch_function__``): each raises ``RuntimeError``
    with ``message``.
    """

    MESSAGE = "the test split is not to be read here"
    TRAIN = ("the real training split is not to be read by a run whose method makes its own "
             "transfer set")

    def __init__(self, message: str = MESSAGE) -> None:
        self._message = message

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError(self._message)

    __getitem__ = __len__ = __iter__ = __array__ = __bool__ = __float__ = __index__ = _refuse
    __contains__ = __add__ = __mul__ = __eq__ = __ne__ = __lt__ = __gt__ = _refuse

    def __getattr__(self, name: str) -> NoReturn:
        raise RuntimeError(Sealed.MESSAGE if name == "_message" else self._message)

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> NoReturn:
        found = [a for a in (*args, *(args[0] if args and isinstance(args[0], list | tuple)
                                       else ())) if isinstance(a, Sealed)]
        raise RuntimeError(found[0]._message if found else Sealed.MESSAGE)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<sealed: {self._message}>"


def seal_test(data: Dataset) -> Dataset:
    """``data`` whose test split raises ``RuntimeError`` on any use (:class:`Sealed`)."""
    return replace(data, x_test=Sealed(), y_test=Sealed())


def seal_train(data: Dataset) -> Dataset:
    """``data`` whose training split raises ``RuntimeError`` on any use (:class:`Sealed`),
    for a run that trains on a transfer set its method makes: nothing in the run can read the
    real samples. :attr:`Dataset.info` keeps their shapes (models are built from them);
    the validation and test splits are untouched."""
    return replace(data, x_train=Sealed(Sealed.TRAIN), y_train=Sealed(Sealed.TRAIN),
                   train_info=data.info)


def batches(n: int, batch_size: int, generator: torch.Generator | None = None,
            drop_last: bool = False) -> Iterator[Tensor]:
    """Index tensors covering ``range(n)``, shuffled by ``generator`` when given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]
