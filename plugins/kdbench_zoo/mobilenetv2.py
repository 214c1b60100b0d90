"""MobileNetV2 (Sandler et al., CVPR 2018) in the CIFAR variant of the CRD benchmark.

CRD (Tian et al. ICLR 2020) uses the half-width MobileNetV2 of Jin et al., "Knowledge
Distillation via Route Constrained Optimization" (ICCV 2019; RepDistiller's
``models/mobilenetv2.py``, ``mobile_half``): expansion ratio 6, width multiplier 0.5 on the
inverted-residual blocks (16 stem channels; blocks of 8, 12, 16, 32, 48, 80 and 160
channels with the paper's repeats 1, 2, 3, 4, 3, 3, 1), but the full 1280-channel last 1×1
convolution, and strides adapted to 32×32 images: the stride-2 stem, then strides 1, 1, 2,
2, 1, 2, 1, ending at 2×2. Global average pooling, one linear layer; initialised as the
authors' code (convolutions N(0, 2 / (k² · out_channels)), classifier N(0, 0.01)).

Taps: the ends of the four resolution stages RepDistiller reads (``blocks.1``, ``blocks.2``,
``blocks.4``, ``blocks.6``) and the pooled features (``flatten``). Weights are named as in
RepDistiller (``conv1``, ``blocks.2.0.conv.3``, ``conv2``, ``classifier.0``), so its released
state dicts load as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.params import bounded
from kdbench.taps import TapPoints
from kdbench_zoo.image_input import as_image, channels

# (expansion, channels, repeats, stride) of each group of blocks; None: the network's ratio.
SETTING = ((1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2),
           (None, 96, 3, 1), (None, 160, 3, 2), (None, 320, 1, 1))


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
            relu: bool = True) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out), *([nn.ReLU(inplace=True)] if relu else [])]


class InvertedResidual(nn.Module):
    """1×1 expansion, 3×3 depthwise, linear 1×1 projection; identity shortcut when shapes
    allow."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.residual = stride == 1 and c_in == c_out
        self.conv = nn.Sequential(*conv_bn(c_in, hidden, 1),
                                  *conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  *conv_bn(hidden, c_out, 1, relu=False))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, expansion: int = 6,
                 width: float = 0.5) -> None:
        super().__init__()
        c_in = int(32 * width)
        self.conv1 = nn.Sequential(*conv_bn(in_channels, c_in, 3, stride=2))
        groups = []
        for t, c, n, s in SETTING:
            c_out = int(c * width)
            layers = []
            for i in range(n):
                layers.append(InvertedResidual(c_in, c_out, s if i == 0 else 1,
                                               expansion if t is None else t))
                c_in = c_out
            groups.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*groups)
        last = int(1280 * width) if width > 1.0 else 1280
        self.conv2 = nn.Sequential(*conv_bn(c_in, last, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Linear(last, num_classes))
        self.taps = TapPoints(embedding="flatten",
                              stages=("blocks.1", "blocks.2", "blocks.4", "blocks.6"))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan))
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv2(self.blocks(self.conv1(as_image(x))))
        return self.classifier(self.flatten(self.pool(x)))


@dataclass(frozen=True)
class MobileNetV2Params:
    expansion: int = bounded(6, low=1)
    """Expansion ratio of the inverted residuals (the ``T`` of RepDistiller's code)."""
    width: float = bounded(0.5, low=0, low_open=True)
    """Width multiplier of the blocks; CRD's student is the half-width network."""


def mobilenetv2(params: MobileNetV2Params, info: DataInfo) -> MobileNetV2:
    """MobileNetV2 as in CRD's CIFAR benchmark: expansion 6, half width, 1280-channel head."""
    return MobileNetV2(channels(info, "mobilenetv2"), info.num_classes, params.expansion,
                       params.width)
