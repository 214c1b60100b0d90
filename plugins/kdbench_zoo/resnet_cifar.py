"""The CIFAR ResNets of He et al. (CVPR 2016, §4.2) as the CRD benchmark uses them.

Tian, Krishnan and Isola, "Contrastive Representation Distillation" (ICLR 2020), and its code
(RepDistiller, ``models/resnet.py``) define the networks every later CIFAR-100 KD table
reuses: a 3×3 stem, three stages of ``n`` basic blocks (two conv3×3-BN with an identity
shortcut, a 1×1 conv-BN projection where the shape changes), ``depth = 6n + 2``, widths
16-16-32-64, global average pooling and a linear classifier. ``resnet8x4`` and
``resnet32x4`` are four times wider (32-64-128-256), so their first stage projects 32 to 64
channels. The paper's fixed 8×8 average pool is a global one here: the same on 32×32 and
also right on 28×28 and 64×64 inputs.

Taps: the output of each stage (``layer1``-``layer3``, after the last block's ReLU, as
RepDistiller's ``feat[1:4]``) and the pooled features (``flatten``).

Weights are named as in RepDistiller (``conv1``, ``bn1``, ``layer1.0.downsample.0``, ``fc``),
so its released teachers' state dicts load as they are.
"""

from __future__ import annotations

from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.taps import TapPoints
from kdbench_zoo.image_input import as_image, channels


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two conv3×3-BN, the shortcut added before the last ReLU (He et al. 2016, Fig. 2)."""

    projection = "downsample"
    """The attribute of the 1×1 projection: its weights' name in the checkpoints."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        # Option B of the paper (projection where the shape changes), as RepDistiller.
        setattr(self, self.projection,
                nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                              nn.BatchNorm2d(c_out)) if stride != 1 or c_in != c_out else None)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = getattr(self, self.projection)
        return self.relu(out + (x if shortcut is None else shortcut(x)))


class LiuBlock(BasicBlock):
    """The same block as Liu's ``pytorch-cifar`` names it (its projection is ``shortcut``)."""

    projection = "shortcut"


class CifarResNet(nn.Module):
    """Stem, three stages of ``(depth - 2) / 6`` basic blocks, global pool, linear."""

    def __init__(self, depth: int, widths: tuple[int, int, int, int], in_channels: int,
                 num_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (8, 14, 20, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        c_in = widths[0]
        for i, (width, stride) in enumerate(zip(widths[1:], (1, 2, 2), strict=True)):
            blocks = [BasicBlock(c_in, width, stride)] + \
                [BasicBlock(width, width) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)
        self.taps = TapPoints(embedding="flatten", stages=("layer1", "layer2", "layer3"))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(as_image(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))


NARROW = (16, 16, 32, 64)
WIDE = (32, 64, 128, 256)


def _factory(depth: int, widths: tuple[int, int, int, int], doc: str):
    def build(params: None, info: DataInfo) -> CifarResNet:
        return CifarResNet(depth, widths, channels(info, f"resnet{depth}"), info.num_classes)

    build.__doc__ = doc
    return build


resnet8 = _factory(8, NARROW, "CIFAR ResNet-8 (CRD): 1 block per stage, widths 16-32-64.")
resnet14 = _factory(14, NARROW, "CIFAR ResNet-14 (CRD): 2 blocks per stage, widths 16-32-64.")
resnet20 = _factory(20, NARROW, "CIFAR ResNet-20 (He et al. 2016): 3 blocks per stage.")
resnet32 = _factory(32, NARROW, "CIFAR ResNet-32 (He et al. 2016): 5 blocks per stage.")
resnet44 = _factory(44, NARROW, "CIFAR ResNet-44 (He et al. 2016): 7 blocks per stage.")
resnet56 = _factory(56, NARROW, "CIFAR ResNet-56 (He et al. 2016): 9 blocks per stage.")
resnet110 = _factory(110, NARROW, "CIFAR ResNet-110 (He et al. 2016): 18 blocks per stage.")
resnet8x4 = _factory(8, WIDE, "CIFAR ResNet-8×4 (CRD): ResNet-8 with widths 32-64-128-256.")
resnet32x4 = _factory(32, WIDE, "CIFAR ResNet-32×4 (CRD): ResNet-32 with widths 32-64-128-256.")

MODELS = {"resnet8": resnet8, "resnet14": resnet14, "resnet20": resnet20,
          "resnet32": resnet32, "resnet44": resnet44, "resnet56": resnet56,
          "resnet110": resnet110, "resnet8x4": resnet8x4, "resnet32x4": resnet32x4}


class ResNet18Cifar(nn.Module):
    """Seed 002's ResNet-18 for CIFAR-10: the ImageNet ResNet-18's four stages of two basic
    blocks (64-128-256-512) behind a 3×3 stride-1 stem with no max-pool, as in Liu's
    ``pytorch-cifar`` (the seed's ``network.py`` cites it through
    ``knowledge-distillation-pytorch``): 11.2M weights for 10 classes.

    Taps: each stage's output (``layer1``-``layer4``) and the pooled features (``flatten``).
    Weights are named as in the seed (``conv1``, ``layer2.0.shortcut.0``, ``linear``), so its
    checkpoints (``{"state_dict": ...}``) load as they are.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, 64)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        c_in = 64
        for i, (width, stride) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2),
                                                strict=True)):
            self.add_module(f"layer{i + 1}", nn.Sequential(LiuBlock(c_in, width, stride),
                                                           LiuBlock(width, width)))
            c_in = width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(c_in, num_classes)
        self.taps = TapPoints(embedding="flatten",
                              stages=("layer1", "layer2", "layer3", "layer4"))

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(as_image(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(self.flatten(self.pool(x)))


def resnet18_cifar(params: None, info: DataInfo) -> ResNet18Cifar:
    """Seed 002's ResNet-18 for CIFAR-10 (3×3 stem, no max-pool): 11.2M weights."""
    return ResNet18Cifar(channels(info, "resnet18_cifar"), info.num_classes)
