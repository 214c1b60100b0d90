"""1-D convolutional networks for sequences ``(N, L)`` or ``(N, C, L)``.

``cnn1d`` with its defaults is the CNN of the MNIST-1D paper (Greydanus 2020,
``ConvBase``): three convolutions of 25 channels (kernel 5 then 3, stride 2,
padding 1), ReLU, and a linear classifier; about 94% test accuracy on MNIST-1D.
The student is the same family with fewer channels.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.params import bounded
from kdbench.taps import TapPoints


@dataclass(frozen=True)
class CNN1DParams:
    channels: int = bounded(25, low=1)
    depth: int = bounded(3, low=1)


class CNN1D(nn.Module):
    """Conv-ReLU stages that halve the length, then flatten and a linear classifier."""

    def __init__(self, in_channels: int, length: int, num_classes: int, channels: int = 25,
                 depth: int = 3) -> None:
        super().__init__()
        stages = []
        c_in = in_channels
        for i in range(depth):
            kernel = 5 if i == 0 else 3
            stages.append(nn.Sequential(
                nn.Conv1d(c_in, channels, kernel, stride=2, padding=1), nn.ReLU()))
            c_in = channels
            length = (length + 2 - kernel) // 2 + 1
        self.stages = nn.Sequential(*stages)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels * length, num_classes)
        self.taps = TapPoints(embedding="flatten",
                              stages=tuple(f"stages.{i}" for i in range(depth)))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.classifier(self.flatten(self.stages(x)))


def cnn1d(params: CNN1DParams, info: DataInfo) -> CNN1D:
    """1-D CNN of the MNIST-1D paper (3 stages of 25 channels)."""
    shape = info.input_shape
    in_channels, length = (1, shape[0]) if len(shape) == 1 else (shape[0], shape[1])
    return CNN1D(in_channels, length, info.num_classes, params.channels, params.depth)


@dataclass(frozen=True)
class SmallCNN1DParams(CNN1DParams):
    channels: int = bounded(8, low=1)


def cnn1d_small(params: SmallCNN1DParams, info: DataInfo) -> CNN1D:
    """1-D CNN student: the MNIST-1D CNN with 8 channels (about 1/9 of its weights)."""
    return cnn1d(params, info)
