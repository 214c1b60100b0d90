"""The field's small image benchmarks, read by torchvision: MNIST, Fashion-MNIST, CIFAR-10,
CIFAR-100 and SVHN.

Files are found under the data root (:func:`kdbench.data.data_root`: the ``root`` key of
``[dataset]``, else ``--data-root`` / ``$KDBENCH_DATA``, else kdbench's cache), where
torchvision keeps them: ``MNIST/raw/`` and ``FashionMNIST/raw/`` (the idx files, or their
``.gz``, which are unpacked on first use), ``cifar-10-batches-py/``, ``cifar-100-python/``,
``train_32x32.mat`` and ``test_32x32.mat`` (SVHN). ``download = true`` lets torchvision fetch
them there (off by default: nothing is fetched behind a user's back). A missing dataset is
one line that names the path looked for and the two ways to get it. torchvision checks a
download's md5; files put in place by hand are read as they are (a copy need not be
byte-identical to the published archive to be read).

Images are kept as ``uint8`` ``(N, C, H, W)`` (CIFAR-100's 60,000 images: 184 MB) and
normalised a batch at a time on the batch's device (:class:`kdbench.data.Normalize`) with
the dataset's usual mean and std (below). Training batches are augmented first, on the
device (:mod:`kdbench_zoo.image_augment`), with the dataset's usual augmentation:

============== ======================== ================ =====================================
dataset        mean / std (per channel)  augmentation     source of the convention
============== ======================== ================ =====================================
mnist          0.1307 / 0.3081           crop, pad 2      Hinton et al. 2015 jitter MNIST by
                                                          up to 2 pixels; no flip for digits
fashion_mnist  0.2860 / 0.3530           crop 2, flip     clothes are left-right symmetric
cifar10        0.4914 0.4822 0.4465 /    crop 4, flip     He et al. 2016; the training set's
               0.2470 0.2435 0.2616                       own pixel statistics
cifar100       0.5071 0.4867 0.4408 /    crop 4, flip     RepDistiller / CRD (Tian et al. 2020)
               0.2675 0.2565 0.2761
svhn           0.4377 0.4438 0.4728 /    crop 4           no flip: digits are not symmetric
               0.1980 0.2010 0.1970
============== ======================== ================ =====================================

``augment = "none"`` turns augmentation off; then the frozen teacher sees the same inputs
every epoch and its outputs are computed once per run and reused (see the README,
"Image benchmarks", for what the teacher costs otherwise).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from kdbench.data import Dataset, Normalize, data_root
from kdbench.errors import KdbenchError
from kdbench_zoo.image_augment import CropFlip


@dataclass(frozen=True)
class VisionParams:
    """The parameters of every torchvision dataset."""

    root: str = ""
    """The data root; empty: ``--data-root`` / ``$KDBENCH_DATA``, else kdbench's cache."""
    download: bool = False
    """Let torchvision download the dataset into the data root when it is not there."""
    augment: Literal["standard", "none"] = "standard"
    """``standard``: the dataset's usual training augmentation (see the module); ``none``."""


@dataclass(frozen=True)
class Standard:
    """A dataset's usual normalisation and augmentation, and where its files are."""

    title: str
    classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int
    flip: bool
    files: tuple[str, ...]
    """Paths under the data root that must exist (the first missing one is reported)."""


def _mnist_files(folder: str) -> tuple[str, ...]:
    return tuple(f"{folder}/raw/{split}-{kind}-ubyte" for split in ("train", "t10k")
                 for kind in ("images-idx3", "labels-idx1"))


STANDARD = {
    "mnist": Standard("MNIST", 10, (0.1307,), (0.3081,), 2, False, _mnist_files("MNIST")),
    "fashion_mnist": Standard("Fashion-MNIST", 10, (0.2860,), (0.3530,), 2, True,
                              _mnist_files("FashionMNIST")),
    "cifar10": Standard("CIFAR-10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                        4, True, tuple(f"cifar-10-batches-py/{f}" for f in (
                            *(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                            "batches.meta"))),
    "cifar100": Standard("CIFAR-100", 100, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761),
                         4, True, tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta"))),
    "svhn": Standard("SVHN", 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 4, False,
                     ("train_32x32.mat", "test_32x32.mat")),
}


def load(name: str, params: VisionParams, cache_dir: Path) -> Dataset:
    """The dataset ``name`` of :data:`STANDARD` from the data root: ``uint8`` images,
    normalised at batch time, augmented as is usual for it."""
    standard = STANDARD[name]
    root, origin = data_root(params.root, cache_dir)
    if params.download:
        root.mkdir(parents=True, exist_ok=True)
    elif not all((root / f).is_file() or (root / f"{f}.gz").is_file() for f in standard.files):
        missing = next(root / f for f in standard.files
                       if not ((root / f).is_file() or (root / f"{f}.gz").is_file()))
        holder = standard.files[0].split("/")[0] if "/" in standard.files[0] else "its files"
        raise KdbenchError(
            f"dataset {name!r}: {standard.title} is not in the data root {root} ({origin}): "
            f"{missing} does not exist; set `download = true` in the benchmark's [dataset] "
            f"table to let torchvision fetch it there, or point --data-root (or $KDBENCH_DATA) "
            f"at the folder that holds {holder}")
    try:
        x, y, x_test, y_test = READERS[name](root, params.download)
    except KdbenchError:
        raise
    except Exception as error:  # a failed download, a truncated file
        raise KdbenchError(f"dataset {name!r}: cannot read {standard.title} from {root} "
                           f"({type(error).__name__}: {error}); fix or remove the files, or "
                           "set `download = true` to fetch them again") from None
    augment = CropFlip(standard.pad, standard.flip) if params.augment == "standard" else None
    return Dataset(name, x, y, x_test, y_test, standard.classes, augment=augment,
                   prepare=Normalize(standard.mean, standard.std))


Split = tuple[Tensor, Tensor, Tensor, Tensor]


def _mnist(cls: type, root: Path, download: bool) -> Split:
    from torchvision.datasets.utils import extract_archive

    raw = root / cls.__name__ / "raw"
    for name in _mnist_files(""):
        path = raw / Path(name).name
        if not path.is_file() and path.with_name(path.name + ".gz").is_file():
            extract_archive(str(path.with_name(path.name + ".gz")), str(raw))
    train, test = (cls(str(root), train=t, download=download) for t in (True, False))
    return (train.data.unsqueeze(1).contiguous(), train.targets.long(),
            test.data.unsqueeze(1).contiguous(), test.targets.long())


def _cifar(name: str, root: Path, download: bool) -> Split:
    from torchvision.datasets import CIFAR10, CIFAR100

    base = {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]

    class Present(base):  # type: ignore[misc, valid-type]
        """torchvision's CIFAR with its md5 checks turned into presence checks: the archive's
        md5 is still checked on download."""

        def _check_integrity(self) -> bool:
            return all((Path(self.root) / self.base_folder / f).is_file()
                       for f, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]

    train, test = (Present(str(root), train=t, download=download) for t in (True, False))
    return (_chw(train.data), torch.as_tensor(train.targets, dtype=torch.long),
            _chw(test.data), torch.as_tensor(test.targets, dtype=torch.long))


def _svhn(root: Path, download: bool) -> Split:
    from torchvision.datasets import SVHN

    class Present(SVHN):
        """torchvision's SVHN with its md5 check turned into a presence check."""

        def _check_integrity(self) -> bool:
            return (Path(self.root) / self.filename).is_file()

    train, test = (Present(str(root), split=s, download=download) for s in ("train", "test"))
    return (torch.from_numpy(np.ascontiguousarray(train.data)), torch.as_tensor(train.labels),
            torch.from_numpy(np.ascontiguousarray(test.data)), torch.as_tensor(test.labels))


def _chw(images: np.ndarray) -> Tensor:
    """``(N, H, W, C)`` uint8 to ``(N, C, H, W)``, contiguous."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _torchvision_mnist(root: Path, download: bool) -> Split:
    from torchvision.datasets import MNIST

    return _mnist(MNIST, root, download)


def _torchvision_fashion(root: Path, download: bool) -> Split:
    from torchvision.datasets import FashionMNIST

    return _mnist(FashionMNIST, root, download)


READERS = {
    "mnist": _torchvision_mnist,
    "fashion_mnist": _torchvision_fashion,
    "cifar10": lambda root, download: _cifar("cifar10", root, download),
    "cifar100": lambda root, download: _cifar("cifar100", root, download),
    "svhn": _svhn,
}


def mnist(params: VisionParams, cache_dir: Path) -> Dataset:
    """MNIST (LeCun et al. 1998): 60,000 + 10,000 handwritten digits, 28×28, 10 classes."""
    return load("mnist", params, cache_dir)


def fashion_mnist(params: VisionParams, cache_dir: Path) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017): 60,000 + 10,000 clothing images, 28×28, 10 classes."""
    return load("fashion_mnist", params, cache_dir)


def cifar10(params: VisionParams, cache_dir: Path) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009): 50,000 + 10,000 colour images, 32×32, 10 classes."""
    return load("cifar10", params, cache_dir)


def cifar100(params: VisionParams, cache_dir: Path) -> Dataset:
    """CIFAR-100 (Krizhevsky 2009): 50,000 + 10,000 colour images, 32×32, 100 classes."""
    return load("cifar100", params, cache_dir)


def svhn(params: VisionParams, cache_dir: Path) -> Dataset:
    """SVHN (Netzer et al. 2011): 73,257 + 26,032 house-number digits, 32×32, 10 classes."""
    return load("svhn", params, cache_dir)
