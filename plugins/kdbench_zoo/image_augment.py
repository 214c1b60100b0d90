"""The standard training augmentation of the image benchmarks, a batch at a time on the device.

``random crop with padding`` (Krizhevsky et al. 2012; He et al. 2016's CIFAR recipe: pad 4,
crop 32): each image is padded with ``pad`` zero pixels on every side and a window of its
original size is cut at a random offset in ``0..2*pad`` along each axis. ``horizontal flip``:
each image is mirrored left-right with probability 1/2. Both are one gather with advanced
indexing over a whole ``uint8`` batch ``(N, C, H, W)`` on whatever device the batch is on (the
flip folds into the column indices, so it costs nothing extra): no per-image Python, no loader
processes (airbench's idea). Zero padding happens before normalisation, so padded pixels are
black, as torchvision's ``RandomCrop(padding=pad)`` on a PIL image gives them.

The offsets and flips are drawn from the run's ``generator`` (the training loop's CPU
generator, seeded by the run's seed), in a fixed order (rows, columns, flips), so the same
seed gives the same batch on any device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class CropFlip:
    """``augment(x, generator)`` for an image batch: random crop with ``pad`` pixels of zero
    padding (none for ``pad = 0``), then a horizontal flip with probability 1/2 if ``flip``."""

    pad: int
    flip: bool

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return crop_flip(x, generator, self.pad, self.flip)


def crop_flip(x: Tensor, generator: torch.Generator, pad: int, flip: bool) -> Tensor:
    """Each image of ``x`` ``(N, C, H, W)`` cropped at a random offset out of itself padded
    with ``pad`` zeros, and mirrored with probability 1/2 when ``flip``; same dtype and
    device as ``x``."""
    n, c, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = dy[:, None] + torch.arange(h)[None, :]
    cols = dx[:, None] + torch.arange(w)[None, :]
    if flip:
        mirrored = torch.rand(n, generator=generator) < 0.5
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad else x
    device = x.device
    return padded[torch.arange(n, device=device)[:, None, None, None],
                  torch.arange(c, device=device)[None, :, None, None],
                  rows.to(device)[:, None, :, None],
                  cols.to(device)[:, None, None, :]]
