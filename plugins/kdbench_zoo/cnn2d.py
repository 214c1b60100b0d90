"""Small 2-D convolutional networks for images ``(N, C, H, W)``, in torchvision's style.

Stages of conv3x3-BN-ReLU blocks, a 2×2 max-pool between stages (so each stage halves
the resolution: 28→14→7 on MNIST, 8→4→2 on the 8×8 digits), global average pooling,
``flatten`` (the embedding) and a linear classifier. Every stage's output is a tap, so
feature-map methods see ``(C, H, W)`` maps. The teacher has channels (32, 64, 128), the
student (8, 16, 32): about 1/16 of the teacher's weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.params import bounded
from kdbench.taps import TapPoints


@dataclass(frozen=True)
class CNN2DParams:
    channels: tuple[int, ...] = bounded((32, 64, 128), low=1)
    """Width of each stage; the number of stages is its length."""
    blocks: int = bounded(1, low=1)
    """conv3x3-BN-ReLU blocks per stage."""

    def __post_init__(self) -> None:
        if not self.channels:
            raise ValueError("channels must list the width of at least one stage, got []")


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    # No conv bias: BatchNorm's shift makes it redundant (as in torchvision's ResNets).
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class CNN2D(nn.Module):
    """conv-BN-ReLU stages with max-pooling between them, global average pool, linear."""

    def __init__(self, in_channels: int, num_classes: int,
                 channels: tuple[int, ...] = (32, 64, 128), blocks: int = 1) -> None:
        super().__init__()
        stages = []
        c_in = in_channels
        for i, c_out in enumerate(channels):
            layers: list[nn.Module] = [nn.MaxPool2d(2)] if i > 0 else []
            for _ in range(blocks):
                layers.append(conv_bn_relu(c_in, c_out))
                c_in = c_out
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c_in, num_classes)
        self.taps = TapPoints(embedding="flatten",
                              stages=tuple(f"stages.{i}" for i in range(len(channels))))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.classifier(self.flatten(self.pool(self.stages(x))))


def cnn2d(params: CNN2DParams, info: DataInfo) -> CNN2D:
    """2-D CNN teacher: conv-BN-ReLU stages of (32, 64, 128) channels, max-pool between."""
    shape = info.input_shape
    in_channels = shape[0] if len(shape) == 3 else 1
    return CNN2D(in_channels, info.num_classes, tuple(params.channels), params.blocks)


@dataclass(frozen=True)
class SmallCNN2DParams(CNN2DParams):
    channels: tuple[int, ...] = bounded((8, 16, 32), low=1)


def cnn2d_small(params: SmallCNN2DParams, info: DataInfo) -> CNN2D:
    """2-D CNN student: the same family with (8, 16, 32) channels."""
    return cnn2d(params, info)
