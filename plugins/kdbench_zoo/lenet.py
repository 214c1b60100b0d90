"""LeNet-5 and LeNet-5-Half, the MNIST teacher and student of ZSKD (Nayak et al. 2019) and of
Lopes et al. (2017), "Data-Free Knowledge Distillation for Deep Neural Networks".

LeNet-5 (LeCun et al. 1998): conv5×5 (6) – max-pool 2 – conv5×5 (16) – max-pool 2 – fully
connected 120 – 84 – classes, ReLU after every hidden layer (ReLU and max-pooling as in the
re-implementations of ZSKD, not the original's tanh and average subsampling). LeNet-5-Half
halves the convolutions' feature maps (3, 8). On MNIST the first convolution pads by 2, which
is LeCun's 32×32 input; the parameter counts are the papers': 61 706 and 35 820 for 10
classes. The stages are the two conv blocks; the embedding is the 84-unit layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.params import bounded
from kdbench.taps import TapPoints


@dataclass(frozen=True)
class LeNet5Params:
    channels: tuple[int, int] = bounded((6, 16), low=1)
    """Feature maps of the two convolutions."""
    hidden: tuple[int, int] = bounded((120, 84), low=1)
    """Units of the two hidden fully connected layers."""
    pad: int = bounded(2, low=0)
    """Zero padding of the first convolution (2: MNIST's 28×28 as LeNet's 32×32)."""


@dataclass(frozen=True)
class LeNet5HalfParams(LeNet5Params):
    channels: tuple[int, int] = bounded((3, 8), low=1)


class LeNet5(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int,
                 channels: tuple[int, int] = (6, 16), hidden: tuple[int, int] = (120, 84),
                 pad: int = 2) -> None:
        super().__init__()
        in_channels = input_shape[0] if len(input_shape) == 3 else 1
        self.stages = nn.Sequential(
            nn.Sequential(nn.Conv2d(in_channels, channels[0], 5, padding=pad), nn.ReLU(),
                          nn.MaxPool2d(2)),
            nn.Sequential(nn.Conv2d(channels[0], channels[1], 5), nn.ReLU(), nn.MaxPool2d(2)))
        self.flatten = nn.Flatten()
        with torch.no_grad():
            flat = self.flatten(self.stages(torch.zeros(1, in_channels, *input_shape[-2:])))
        self.hidden = nn.Sequential(nn.Linear(flat.shape[1], hidden[0]), nn.ReLU(),
                                    nn.Linear(hidden[0], hidden[1]), nn.ReLU())
        self.classifier = nn.Linear(hidden[1], num_classes)
        self.taps = TapPoints(embedding="hidden", stages=("stages.0", "stages.1"))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.classifier(self.hidden(self.flatten(self.stages(x))))


def lenet5(params: LeNet5Params, info: DataInfo) -> LeNet5:
    """LeNet-5: conv 6, conv 16, fc 120, 84 (ZSKD's MNIST teacher, 61 706 weights)."""
    return LeNet5(info.input_shape, info.num_classes, params.channels, params.hidden, params.pad)


def lenet5_half(params: LeNet5HalfParams, info: DataInfo) -> LeNet5:
    """LeNet-5-Half: conv 3, conv 8, fc 120, 84 (ZSKD's MNIST student, 35 820 weights)."""
    return lenet5(params, info)
