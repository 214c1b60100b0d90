"""Pre-activation ResNet-164 (He et al., "Identity Mappings in Deep Residual Networks",
ECCV 2016): seed 001's ResNet-164 teacher.

The paper's CIFAR network: a 3×3 stem of 16 channels, three stages of 18 bottleneck units
(BN-ReLU-conv1×1, BN-ReLU-conv3×3, BN-ReLU-conv1×1, widths 16/32/64 expanded ×4 to 64,
128, 256; strides 1, 2, 2), a final BN-ReLU, global average pooling and one linear layer:
1.7M weights (the paper's Table 3). Where a unit changes the shape, its 1×1 projection
shortcut reads the pre-activated input, as in the authors' ``fb.resnet.torch`` code.

Taps: the output of each stage (``layer1``-``layer3``) and the pooled features
(``flatten``).
"""

from __future__ import annotations

from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.taps import TapPoints
from kdbench_zoo.image_input import as_image, channels


class PreActBottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.relu = nn.ReLU()
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False) \
            if stride != 1 or c_in != c_out else None

    def forward(self, x: Tensor) -> Tensor:
        a = self.relu(self.bn1(x))
        out = self.conv1(a)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + (x if self.shortcut is None else self.shortcut(a))


class PreActResNet(nn.Module):
    def __init__(self, depth: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 9:
            raise ValueError(f"a bottleneck ResNet has depth 9n + 2 (56, 110, 164, ...), got "
                             f"{depth}")
        n = (depth - 2) // 9
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        c_in = 16
        for i, (width, stride) in enumerate(zip((16, 32, 64), (1, 2, 2), strict=True)):
            units = [PreActBottleneck(c_in, width, stride)]
            c_in = width * PreActBottleneck.expansion
            units += [PreActBottleneck(c_in, width, 1) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*units))
        self.bn = nn.BatchNorm2d(c_in)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)
        self.taps = TapPoints(embedding="flatten", stages=("layer1", "layer2", "layer3"))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(as_image(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(self.relu(self.bn(x)))))


def resnet164(params: None, info: DataInfo) -> PreActResNet:
    """Pre-activation ResNet-164 (He et al. ECCV 2016), seed 001's teacher: 1.7M weights."""
    return PreActResNet(164, channels(info, "resnet164"), info.num_classes)
