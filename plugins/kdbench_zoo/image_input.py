"""What an image model needs to know about its input: channels and side, from ``DataInfo``.

Datasets of grey images may hold ``(N, H, W)`` tensors; models take ``(N, C, H, W)``.
"""

from __future__ import annotations

from torch import Tensor

from kdbench.data import DataInfo
from kdbench.errors import PluginError


def channels(info: DataInfo, model: str) -> int:
    """The input channels of an image dataset: ``C`` of ``(C, H, W)``, 1 for ``(H, W)``."""
    shape = info.input_shape
    if len(shape) == 2:
        return 1
    if len(shape) == 3:
        return shape[0]
    raise PluginError(f"{model} takes images (C, H, W) or (H, W); the dataset's samples are "
                      f"{tuple(shape)}")


def side(info: DataInfo) -> int:
    """The smaller spatial side of the input images."""
    return min(info.input_shape[-2:])


def as_image(x: Tensor) -> Tensor:
    """``x`` as ``(N, C, H, W)``: grey ``(N, H, W)`` batches get their channel axis."""
    return x.unsqueeze(1) if x.dim() == 3 else x
