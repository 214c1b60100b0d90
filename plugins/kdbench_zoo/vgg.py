"""VGG networks with batch normalisation (Simonyan and Zisserman, ICLR 2015) for small images.

The CRD benchmark's VGGs (Tian et al. ICLR 2020; RepDistiller's ``models/vgg.py``, after
Wei Yang's CIFAR VGG): five blocks of conv3×3 (with bias)-BN-ReLU of 64, 128, 256, 512 and
512 channels (configurations S, A, B and D give VGG-8, -11, -13 and -16), a 2×2 max-pool
after each of the first three blocks (and after the fourth on 64×64 inputs, as RepDistiller
does for Tiny-ImageNet), global average pooling and one linear layer: the fully connected
layers of the ImageNet VGG are gone. Convolutions start from N(0, 2 / (9 · out_channels)),
the classifier from N(0, 0.01), as in that code.

``vgg16_seed001`` is seed 001's VGG-16 teacher. Its README names the network without its
layers; this is the common CIFAR VGG-16 with BN (configuration D, a 2×2 max-pool after every
block, one linear layer on the 512 features left at 1×1: Liu's ``pytorch-cifar``, 14.7M
weights for 10 classes). Its pools round up (ceil mode), so MNIST's 28×28 goes
28-14-7-4-2-1 where 32×32 goes 32-16-8-4-2-1.

Taps: the output of each block (after its last ReLU, RepDistiller's ``feat[0:5]``) and the
features the classifier reads (``flatten``).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.taps import TapPoints
from kdbench_zoo.image_input import as_image, channels, side

CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
}


def block(c_in: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_out in widths:
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True)]
        c_in = c_out
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """Blocks of conv-BN-ReLU; ``pools[i]``: whether block ``i`` is followed by a max-pool."""

    def __init__(self, config: tuple[tuple[int, ...], ...], pools: tuple[bool, ...],
                 in_channels: int, num_classes: int, ceil_mode: bool = False) -> None:
        super().__init__()
        c_in = in_channels
        for i, widths in enumerate(config):
            self.add_module(f"block{i}", block(c_in, widths))
            self.add_module(f"pool{i}", nn.MaxPool2d(2, ceil_mode=ceil_mode) if pools[i]
                            else nn.Identity())
            c_in = widths[-1]
        self.n_blocks = len(config)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c_in, num_classes)
        self.taps = TapPoints(embedding="flatten",
                              stages=tuple(f"block{i}" for i in range(len(config))))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (9 * m.out_channels)))
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = as_image(x)
        for i in range(self.n_blocks):
            x = getattr(self, f"pool{i}")(getattr(self, f"block{i}")(x))
        return self.classifier(self.flatten(self.pool(x)))


def _crd(name: str):
    def build(params: None, info: DataInfo) -> VGG:
        pools = (True, True, True, side(info) >= 64, False)
        return VGG(CONFIGS[name], pools, channels(info, name), info.num_classes)

    build.__doc__ = f"{name.upper()} with BN as in the CRD benchmark (global pool, one linear)."
    return build


def vgg16_seed001(params: None, info: DataInfo) -> VGG:
    """Seed 001's VGG-16 teacher: the CIFAR VGG-16 with BN, a max-pool after every block."""
    return VGG(CONFIGS["vgg16"], (True,) * 5, channels(info, "vgg16_seed001"),
               info.num_classes, ceil_mode=True)


MODELS = {**{name: _crd(name) for name in CONFIGS}, "vgg16_seed001": vgg16_seed001}
