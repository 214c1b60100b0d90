"""Wide residual networks (Zagoruyko and Komodakis, BMVC 2016) as the CRD benchmark uses them.

WRN-d-k: a 3×3 stem of 16 channels, three stages of ``n = (d - 4) / 6`` pre-activation
basic blocks (BN-ReLU-conv3×3, twice) of widths 16k, 32k and 64k, strides 1, 2, 2, a 1×1
projection shortcut where the width changes, a final BN-ReLU, global average pooling and a
linear classifier; no dropout (RepDistiller's ``models/wrn.py`` trains with dropRate 0).
Where the width changes, the block's first BN-ReLU is shared by the residual branch and the
shortcut, as in the authors' code. Convolutions start from N(0, 2 / (k² · out_channels)),
the authors' initialisation.

Taps: the output of each stage (``block1``-``block3``, before the next BN-ReLU, as
RepDistiller's ``feat[1:4]``) and the pooled features (``flatten``). Weights are named as in
RepDistiller (``block1.layer.0.convShortcut``, ``bn1``, ``fc``), so its released teachers'
state dicts load as they are.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.taps import TapPoints
from kdbench_zoo.image_input import as_image, channels


class PreActBlock(nn.Module):
    """BN-ReLU-conv3×3, twice, with the input (or its 1×1 projection) added."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.convShortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) \
            if c_in != c_out or stride != 1 else None

    def forward(self, x: Tensor) -> Tensor:
        a = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(a))))
        return out + (x if self.convShortcut is None else self.convShortcut(a))


class Stage(nn.Module):
    """A stage of blocks, under ``layer`` as in the authors' code (``NetworkBlock``)."""

    def __init__(self, blocks: list[PreActBlock]) -> None:
        super().__init__()
        self.layer = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth: int, k: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"a wide ResNet has depth 6n + 4 (16, 22, 28, 40, ...), got {depth}")
        n = (depth - 4) // 6
        widths = (16 * k, 32 * k, 64 * k)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        c_in = 16
        for i, (width, stride) in enumerate(zip(widths, (1, 2, 2), strict=True)):
            self.add_module(f"block{i + 1}", Stage(
                [PreActBlock(c_in, width, stride), *[PreActBlock(width, width, 1)
                                                    for _ in range(n - 1)]]))
            c_in = width
        self.bn1 = nn.BatchNorm2d(c_in)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)
        self.taps = TapPoints(embedding="flatten", stages=("block1", "block2", "block3"))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan))
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(as_image(x))
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(self.flatten(self.pool(self.relu(self.bn1(x)))))


def _factory(depth: int, k: int):
    def build(params: None, info: DataInfo) -> WideResNet:
        return WideResNet(depth, k, channels(info, f"wrn_{depth}_{k}"), info.num_classes)

    build.__doc__ = f"WRN-{depth}-{k} (Zagoruyko & Komodakis 2016), as in CRD's benchmark."
    return build


MODELS = {f"wrn_{d}_{k}": _factory(d, k) for d, k in ((16, 1), (16, 2), (40, 1), (40, 2))}
