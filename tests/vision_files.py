"""Tiny datasets written in each dataset's own on-disk format, so that the tests read them
through the real loaders (torchvision's MNIST, CIFAR and SVHN classes; kdbench's image
folder): idx files, pickled CIFAR batches, SVHN's .mat, and PNG folders in Tiny-ImageNet's
and ImageNet's layouts. Shapes are the real ones; only the counts are small."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...], labels: np.ndarray
            ) -> np.ndarray:
    """uint8 images whose brightness depends on the label, so a class is learnable."""
    noise = rng.integers(0, 96, size=(n, *shape))
    return (noise + (labels.reshape(-1, *[1] * len(shape)) * 151) % 160).astype(np.uint8)


def _labels(n: int, classes: int) -> np.ndarray:
    return np.arange(n) % classes


def _idx(path: Path, array: np.ndarray, gz: bool) -> None:
    """An idx file (LeCun's format): magic 0x0000 0x08 (ubyte) ndim, big-endian int32 sizes,
    the bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                    *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_mnist(root: Path, folder: str = "MNIST", train: int = 120, test: int = 40,
                gz: bool = False) -> None:
    """``root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (``.gz`` if ``gz``)."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("t10k", test)):
        y = _labels(n, 10)
        _idx(raw / f"{split}-images-idx3-ubyte", _images(rng, n, (28, 28), y), gz)
        _idx(raw / f"{split}-labels-idx1-ubyte", y, gz)


def write_cifar10(root: Path, per_batch: int = 20, test: int = 40) -> None:
    """``root/cifar-10-batches-py/``: five pickled training batches, a test batch and
    ``batches.meta``, each ``{"data": (n, 3072) uint8, "labels": [...]}``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = test if name == "test_batch" else per_batch
        y = _labels(n, 10)
        data = _images(rng, n, (3, 32, 32), y).reshape(n, 3072)
        (folder / name).write_bytes(pickle.dumps({"data": data, "labels": y.tolist()}))
    meta = {"label_names": [f"class{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


def write_cifar100(root: Path, train: int = 500, test: int = 100) -> None:
    """``root/cifar-100-python/{train,test,meta}``, with fine and coarse labels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    for name, n in (("train", train), ("test", test)):
        y = _labels(n, 100)
        data = _images(rng, n, (3, 32, 32), y).reshape(n, 3072)
        (folder / name).write_bytes(pickle.dumps(
            {"data": data, "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist()}))
    meta = {"fine_label_names": [f"c{i}" for i in range(100)],
            "coarse_label_names": [f"s{i}" for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))


def write_svhn(root: Path, train: int = 100, test: int = 40) -> None:
    """``root/{train,test}_32x32.mat`` with ``X`` (32, 32, 3, n) and ``y`` (n, 1) in 1..10
    (10 is the digit 0), as SVHN ships them."""
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for name, n in (("train", train), ("test", test)):
        y = _labels(n, 10)
        x = _images(rng, n, (32, 32, 3), y).transpose(1, 2, 3, 0)
        savemat(root / f"{name}_32x32.mat", {"X": x, "y": np.where(y == 0, 10, y).reshape(-1, 1)})


def write_tiny_imagenet(root: Path, classes: int = 3, per_class: int = 10, val: int = 2,
                        size: int = 64) -> Path:
    """``root/tiny-imagenet-200/``: ``wnids.txt``, ``train/<wnid>/images/<wnid>_<i>.png``,
    ``val/images/val_<i>.png`` and ``val/val_annotations.txt`` (``file\\twnid\\tx\\ty\\tw\\th``).
    The first training image of the first class is grayscale, as some of Tiny-ImageNet's are."""
    from PIL import Image

    base = root / "tiny-imagenet-200"
    rng = np.random.default_rng(4)
    wnids = [f"n{1000 + c:08d}" for c in range(classes)]
    (base / "val" / "images").mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for c, wnid in enumerate(wnids):
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = _images(rng, 1, (size, size, 3), np.array([c]))[0]
            image = Image.fromarray(pixels)
            (image.convert("L") if c == 0 and i == 0 else image).save(folder / f"{wnid}_{i}.png")
        for i in range(val):
            name = f"val_{c * val + i}.png"
            Image.fromarray(_images(rng, 1, (size, size, 3), np.array([c]))[0]).save(
                base / "val" / "images" / name)
            lines.append(f"{name}\t{wnid}\t0\t0\t{size - 1}\t{size - 1}")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base


def write_imagenet(root: Path, name: str = "imagenet", classes: int = 2, per_class: int = 3,
                   shape: tuple[int, int] = (40, 56)) -> Path:
    """``root/<name>/{train,val}/<wnid>/*.png`` (ImageNet's layout after ``valprep.sh``), of
    non-square images, to be resized and centre-cropped."""
    from PIL import Image

    base = root / name
    rng = np.random.default_rng(5)
    for split, n in (("train", per_class), ("val", 1)):
        for c in range(classes):
            folder = base / split / f"n{2000 + c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(_images(rng, 1, (*shape, 3), np.array([c]))[0]).save(
                    folder / f"img_{i}.png")
    return base


WRITERS = {
    "mnist": lambda root: write_mnist(root),
    "fashion_mnist": lambda root: write_mnist(root, "FashionMNIST", gz=True),
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "svhn": write_svhn,
    "image_folder": write_tiny_imagenet,
}
"""Each dataset plugin's writer: ``WRITERS[name](data_root)``."""
