"""A small CNN of depthwise-separable blocks, for images ``(C, H, W)``.

Howard et al. (2017), "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", arXiv:1704.04861: each block is a 3×3 depthwise convolution and a 1×1
pointwise one, each followed by BatchNorm and ReLU (the paper's Figure 3). Here: a 3×3 stem
of ``width`` channels, then ``stages`` blocks, the first at stride 1 and each later one at
stride 2 with twice the channels, global average pooling and a linear classifier. On the
8×8 digits with the defaults the stages' maps are 16×8×8, 32×4×4 and 64×2×2.

Taps: the output of each block is a stage (feature-map methods such as AT read them), the
pooled and flattened features are the embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

import kdbench
from kdbench.data import DataInfo
from kdbench.errors import Incompatible
from kdbench.params import bounded
from kdbench.registry import Register
from kdbench.taps import TapPoints


@dataclass(frozen=True)
class DSCNNParams:
    width: int = bounded(16, low=1)
    """Channels of the stem and of the first stage; each later stage doubles them."""
    stages: int = bounded(3, low=1, high=8)
    """Depthwise-separable blocks; all but the first halve the resolution."""


def separable(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """3×3 depthwise (one filter per channel), then 1×1 pointwise, each with BN and ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride, padding=1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in), nn.ReLU(inplace=True),
        nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class DSCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int, stages: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        widths = [width * 2**i for i in range(stages)]
        self.stages = nn.Sequential(*(separable(c_in, c_out, 1 if i == 0 else 2) for i, (c_in, c_out)
                                      in enumerate(zip([width, *widths[:-1]], widths, strict=True))))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(widths[-1], num_classes)
        # What methods may read: module names as in self.named_modules().
        self.taps = TapPoints(embedding="flatten", stages=tuple(f"stages.{i}" for i in range(stages)))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.pool(self.stages(self.stem(x)))))


def dscnn(params: DSCNNParams, info: DataInfo) -> DSCNN:
    """Depthwise-separable CNN (MobileNet blocks): a stem, then stages doubling the width."""
    if len(info.input_shape) != 3:
        # Refused at planning time in one line (exit 2); the conformance kit takes it as
        # "not for this input shape" and tries the next.
        raise Incompatible(f"dscnn needs images (C, H, W), got samples of shape "
                           f"{info.input_shape}")
    smallest = min(info.input_shape[1:]) / 2 ** (params.stages - 1)
    if smallest < 1:
        raise Incompatible(f"dscnn: {params.stages} stages halve {info.input_shape[1:]} below one "
                         "pixel; use fewer stages")
    return DSCNN(info.input_shape[0], info.num_classes, params.width, params.stages)


@kdbench.hookimpl
def kdbench_students(register: Register) -> None:
    register("dscnn", dscnn, params=DSCNNParams)

