"""Image folders: Tiny-ImageNet's layout and ImageNet's, in memory as ``uint8`` or streamed.

``path`` (under the data root, or absolute) is a folder with ``train/<class>/...`` (any depth
below the class folder: Tiny-ImageNet's ``train/<wnid>/images/*.JPEG`` and ImageNet's
``train/<wnid>/*.JPEG`` alike) and a labelled ``val/``, which is the test split (neither
dataset publishes its test labels), in either layout:

* Tiny-ImageNet's: ``val/images/*.JPEG`` with ``val/val_annotations.txt``, one
  ``<file>\t<wnid>\t...`` line per image;
* ImageNet's (after the usual ``valprep.sh``): ``val/<class>/*.JPEG``.

Classes are the ``train/`` folder names, sorted (torchvision's ``ImageFolder`` convention).
Every image is decoded (Pillow), converted to RGB, resized so that its shorter side is
``size`` and centre-cropped to ``size × size``. Where it is kept (``storage``):

* ``memory``: decoded once (in a ``DataLoader`` with ``workers`` processes) and the ``uint8``
  tensors cached under kdbench's cache, keyed by the folder, the file list with sizes and
  times, and ``size``. Tiny-ImageNet at 64×64 is 1.2 GB (110,000 images); downsampled
  ImageNet (``size = 64``) 15.7 GB.
* ``files``: streamed (:mod:`kdbench.stream`): each training batch is decoded and augmented
  in ``workers`` loader processes every epoch, and evaluation decodes its batches in the
  run's process. ImageNet at 224×224 (190 GB as ``uint8``) is read this way.
* ``auto`` (the default): ``memory`` up to ``max_gib``, ``files`` above.

Normalisation: ImageNet's mean and std (torchvision's pretrained models expect them) unless
``mean``/``std`` are given. Augmentation ``standard``: a random crop with ``pad`` pixels of
zero padding and a horizontal flip, on the device (:mod:`kdbench_zoo.image_augment`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from kdbench.data import Dataset, Normalize, data_root
from kdbench.errors import KdbenchError
from kdbench.params import bounded
from kdbench.stream import Decoding, Streamed
from kdbench_zoo.image_augment import CropFlip

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageFolderParams:
    path: str = "tiny-imagenet-200"
    """The dataset's folder, under the data root (or an absolute path)."""
    root: str = ""
    """The data root; empty: ``--data-root`` / ``$KDBENCH_DATA``, else kdbench's cache."""
    size: int = bounded(64, low=8, high=1024)
    """Side of the square images kept in memory."""
    augment: Literal["standard", "none"] = "standard"
    """``standard``: random crop (``pad``) and horizontal flip; ``none``."""
    pad: int = bounded(8, low=0, high=256)
    """Zero padding of the random crop: CIFAR's 4 of 32 pixels, scaled to 64."""
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    workers: int = bounded(4, low=0, high=256)
    """Processes decoding the images (once in memory; every epoch streamed; 0: in the
    run's process)."""
    max_gib: float = bounded(32.0, low=0, low_open=True)
    """The most memory the images may take as ``uint8`` in memory: ``auto`` streams a
    larger folder, ``memory`` refuses it."""
    storage: Literal["auto", "memory", "files"] = "auto"
    """Hold the decoded images in memory, stream them from the files, or choose by size."""

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std must each give 3 values, one per RGB channel")
        if any(s <= 0 for s in self.std):
            raise ValueError("std must be positive")


def image_folder(params: ImageFolderParams, cache_dir: Path) -> Dataset:
    """A folder of class folders (Tiny-ImageNet's layout or ImageNet's), as ``uint8`` images."""
    root, origin = data_root(params.root, cache_dir)
    base = root / params.path
    train_dir, val_dir = base / "train", base / "val"
    for folder in (train_dir, val_dir):
        if not folder.is_dir():
            raise KdbenchError(
                f"dataset 'image_folder': {folder} does not exist (data root {root}, {origin}); "
                "download Tiny-ImageNet (http://cs231n.stanford.edu/tiny-imagenet-200.zip) and "
                "unzip it in the data root, or set [dataset] path to a folder with train/ and "
                "val/, or point --data-root (or $KDBENCH_DATA) at the folder that holds it")
    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    if not classes:
        raise KdbenchError(f"dataset 'image_folder': {train_dir} has no class folders")
    index = {c: i for i, c in enumerate(classes)}
    train = [(f, index[c]) for c in classes for f in _images(train_dir / c)]
    test = _val(val_dir, index)
    gib = (len(train) + len(test)) * 3 * params.size ** 2 / 2**30
    if gib > params.max_gib and params.storage == "memory":
        raise KdbenchError(
            f"dataset 'image_folder': {len(train) + len(test):,} images at {params.size}×"
            f"{params.size} take {gib:.1f} GiB as uint8, more than max_gib = {params.max_gib}; "
            "set [dataset] storage = \"files\" to stream them from the files, lower size "
            "(64: downsampled ImageNet), or raise max_gib if the machine has the memory")
    augment = CropFlip(params.pad, True) if params.augment == "standard" else None
    normalize = Normalize(params.mean, params.std)
    if params.storage == "files" or (params.storage == "auto" and gib > params.max_gib):
        reader, shape = FileReader(params.size), (3, params.size, params.size)

        def split(files: list[tuple[Path, int]]) -> Streamed:
            return Streamed(tuple(str(p) for p, _ in files), reader, shape, params.workers)

        return Dataset(base.name, split(train), _labels(train), split(test), _labels(test),
                       len(classes), augment=augment, prepare=Decoding(normalize))
    tensors = _cached(base, train, test, params.size, params.workers, cache_dir)
    return Dataset(base.name, tensors["x"], tensors["y"], tensors["x_test"], tensors["y_test"],
                   len(classes), augment=augment, prepare=normalize)


def _labels(files: list[tuple[Path, int]]) -> Tensor:
    return torch.tensor([y for _, y in files], dtype=torch.long)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def _val(val_dir: Path, index: dict[str, int]) -> list[tuple[Path, int]]:
    """The labelled validation images: Tiny-ImageNet's annotations file, else class folders."""
    annotations = val_dir / "val_annotations.txt"
    if annotations.is_file():
        out = []
        for number, line in enumerate(annotations.read_text().splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in index:
                raise KdbenchError(f"dataset 'image_folder': {annotations} line {number}: "
                                   f"expected '<file>\\t<class>' with a class of train/, got "
                                   f"{line[:80]!r}")
            out.append((val_dir / "images" / fields[0], index[fields[1]]))
        return out
    unknown = sorted(d.name for d in val_dir.iterdir() if d.is_dir() and d.name not in index)
    if unknown:
        raise KdbenchError(f"dataset 'image_folder': {val_dir} has class folders that train/ "
                           f"lacks: {', '.join(unknown[:5])}")
    out = [(f, i) for c, i in index.items() if (val_dir / c).is_dir()
           for f in _images(val_dir / c)]
    if not out:
        raise KdbenchError(f"dataset 'image_folder': {val_dir} has neither val_annotations.txt "
                           "(Tiny-ImageNet) nor class folders of images (ImageNet)")
    return out


def _cached(base: Path, train: list[tuple[Path, int]], test: list[tuple[Path, int]], size: int,
            workers: int, cache_dir: Path) -> dict[str, Tensor]:
    digest = hashlib.sha256(f"{base.resolve()}|{size}".encode())
    for path, label in (*train, *test):
        stat = path.stat()
        digest.update(f"{path}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    cache = Path(cache_dir) / f"image_folder-{digest.hexdigest()[:16]}.pt"
    if cache.is_file():
        return torch.load(cache, weights_only=True)
    tensors = {"x": _decode([p for p, _ in train], size, workers), "y": _labels(train),
               "x_test": _decode([p for p, _ in test], size, workers), "y_test": _labels(test)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    torch.save(tensors, tmp)
    tmp.replace(cache)
    return tensors


@dataclass(frozen=True)
class FileReader:
    """One image file as ``uint8`` ``(3, size, size)``: RGB, shorter side resized to ``size``
    (antialiased), centre-cropped. The in-memory and the streamed paths both read with it."""

    size: int

    def __call__(self, path: str | Path) -> Tensor:
        import numpy as np
        from PIL import Image
        from torchvision.transforms.v2.functional import center_crop, resize

        try:
            with Image.open(path) as opened:
                pixels = np.asarray(opened.convert("RGB"))
        except Exception as error:
            raise KdbenchError(f"dataset 'image_folder': cannot decode {path}: {error}"
                               ) from None
        image = torch.from_numpy(pixels.copy()).permute(2, 0, 1)
        if image.shape[-2:] != (self.size, self.size):
            image = center_crop(resize(image, [self.size], antialias=True), [self.size, self.size])
        return image


class _Decoded(torch.utils.data.Dataset):
    """The images of ``paths`` for a ``DataLoader``."""

    def __init__(self, paths: list[Path], size: int) -> None:
        self.paths, self.read = paths, FileReader(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tensor:
        return self.read(self.paths[i])


def _decode(paths: list[Path], size: int, workers: int) -> Tensor:
    loader = torch.utils.data.DataLoader(_Decoded(paths, size), batch_size=256,
                                         num_workers=workers if len(paths) > 1024 else 0)
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    start = 0
    for batch in loader:
        out[start:start + len(batch)] = batch
        start += len(batch)
    return out
