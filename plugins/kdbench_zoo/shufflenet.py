"""ShuffleNetV1 (Zhang et al., CVPR 2018) and V2 (Ma et al., ECCV 2018), CIFAR variants of
the CRD benchmark (Tian et al. ICLR 2020; RepDistiller's ``models/ShuffleNetv1.py`` and
``ShuffleNetv2.py``, after Liu's ``pytorch-cifar``).

Both start with a 1×1 convolution to 24 channels (no stride, no max-pool: 32×32 images
stay 32×32) and have three stages, each starting with a stride-2 unit, so 32×32 inputs end
at 4×4; global average pooling, one linear layer.

- V1, groups g = 3: stage widths 240, 480, 960 with 4, 8, 4 units. A unit is a grouped 1×1
  bottleneck (a quarter of its output width; ungrouped on the 24-channel stem), a channel
  shuffle, a 3×3 depthwise conv and a grouped 1×1 expansion; a stride-2 unit concatenates a
  3×3 average-pooled shortcut (so its branch produces the width minus the input's), the
  others add the identity.
- V2, 1× width: stage widths 116, 232, 464 with a downsampling unit and 3, 7, 3 basic units,
  then a 1×1 convolution to 1024 channels. A basic unit splits the channels in half, passes
  one half through 1×1, 3×3 depthwise and 1×1 convolutions and shuffles the concatenation;
  the downsampling unit runs two stride-2 branches on the whole input.

Taps: the output of each stage (``layer1``-``layer3``, RepDistiller's ``feat[1:4]``) and
the pooled features (``flatten``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.taps import TapPoints
from kdbench_zoo.image_input import as_image, channels


def shuffle(x: Tensor, groups: int) -> Tensor:
    """Channel shuffle: (N, g·c, H, W) → interleave the g groups' channels."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def bn_conv(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1
            ) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups,
                                   bias=False), nn.BatchNorm2d(c_out))


class V1Unit(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, groups: int) -> None:
        super().__init__()
        mid = c_out // 4
        self.g1 = 1 if c_in == 24 else groups  # the stem's 24 channels are not grouped
        self.stride = stride
        self.reduce = bn_conv(c_in, mid, 1, groups=self.g1)
        self.depthwise = bn_conv(mid, mid, 3, stride, groups=mid)
        self.expand = bn_conv(mid, c_out, 1, groups=groups)

    def forward(self, x: Tensor) -> Tensor:
        out = shuffle(F.relu(self.reduce(x)), self.g1)
        out = self.expand(F.relu(self.depthwise(out)))
        if self.stride == 2:
            return F.relu(torch.cat([out, F.avg_pool2d(x, 3, 2, 1)], 1))
        return F.relu(out + x)


class V2Unit(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        half = c // 2
        self.branch = nn.Sequential(bn_conv(half, half, 1), nn.ReLU(inplace=True),
                                    bn_conv(half, half, 3, groups=half),
                                    bn_conv(half, half, 1), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return shuffle(torch.cat([x1, self.branch(x2)], 1), 2)


class V2Down(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = c_out // 2
        self.left = nn.Sequential(bn_conv(c_in, c_in, 3, 2, groups=c_in),
                                  bn_conv(c_in, mid, 1), nn.ReLU(inplace=True))
        self.right = nn.Sequential(bn_conv(c_in, mid, 1), nn.ReLU(inplace=True),
                                   bn_conv(mid, mid, 3, 2, groups=mid),
                                   bn_conv(mid, mid, 1), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return shuffle(torch.cat([self.left(x), self.right(x)], 1), 2)


class ShuffleNet(nn.Module):
    """Stem, three stages, an optional 1×1 head, global pool, linear."""

    def __init__(self, in_channels: int, num_classes: int, stages: list[nn.Sequential],
                 width: int, head: int | None = None) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 24, 1, bias=False),
                                  nn.BatchNorm2d(24), nn.ReLU(inplace=True))
        self.layer1, self.layer2, self.layer3 = stages
        self.head = nn.Sequential(*bn_conv(width, head, 1), nn.ReLU(inplace=True)) \
            if head else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(head or width, num_classes)
        self.taps = TapPoints(embedding="flatten", stages=("layer1", "layer2", "layer3"))

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(as_image(x)))))
        return self.linear(self.flatten(self.pool(self.head(x))))


def shufflenetv1(params: None, info: DataInfo) -> ShuffleNet:
    """ShuffleNetV1 (g = 3) as in CRD's CIFAR benchmark: widths 240-480-960, 4-8-4 units."""
    stages, c_in = [], 24
    for width, units in ((240, 4), (480, 8), (960, 4)):
        stages.append(nn.Sequential(V1Unit(c_in, width - c_in, 2, 3),
                                    *[V1Unit(width, width, 1, 3) for _ in range(units - 1)]))
        c_in = width
    return ShuffleNet(channels(info, "shufflenetv1"), info.num_classes, stages, c_in)


def shufflenetv2(params: None, info: DataInfo) -> ShuffleNet:
    """ShuffleNetV2 (1×) as in CRD's CIFAR benchmark: widths 116-232-464, a 1024 head."""
    stages, c_in = [], 24
    for width, units in ((116, 3), (232, 7), (464, 3)):
        stages.append(nn.Sequential(V2Down(c_in, width), *[V2Unit(width) for _ in range(units)]))
        c_in = width
    return ShuffleNet(channels(info, "shufflenetv2"), info.num_classes, stages, c_in, head=1024)
