"""Seed 002's small CNN student (CIFAR-10, KD at T = 1 to 100 from a ResNet-18).

The seed's ``network.py`` (``Student1``) is the network of PyTorch's CIFAR-10 tutorial
("Training a classifier"): conv5×5 to 6 channels, ReLU, 2×2 max-pool, conv5×5 to 16, ReLU,
max-pool, then fully connected layers of 120 and 84 ReLU units and the classifier; 62,006
weights for 10 classes on 32×32 images. On 28×28 inputs the flattened map is 16·4·4.

Taps: each conv-ReLU-pool layer (``conv.0``, ``conv.1``) and the 84 features the classifier
reads (``fc.1``).
"""

from __future__ import annotations

from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.taps import TapPoints
from kdbench_zoo.image_input import as_image, channels


class TutorialCNN(nn.Module):
    def __init__(self, in_channels: int, height: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Sequential(nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2)),
            nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)))
        h, w = ((height - 4) // 2 - 4) // 2, ((width - 4) // 2 - 4) // 2
        if h < 1 or w < 1:
            raise ValueError(f"cnn_seed002 needs images of at least 16×16, got {height}×{width}")
        self.flatten = nn.Flatten()
        self.fc = nn.Sequential(nn.Sequential(nn.Linear(16 * h * w, 120), nn.ReLU()),
                                nn.Sequential(nn.Linear(120, 84), nn.ReLU()))
        self.classifier = nn.Linear(84, num_classes)
        self.taps = TapPoints(embedding="fc.1", stages=("conv.0", "conv.1"))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.fc(self.flatten(self.conv(as_image(x)))))


def cnn_seed002(params: None, info: DataInfo) -> TutorialCNN:
    """Seed 002's small CNN: PyTorch's CIFAR-10 tutorial network (62k weights)."""
    h, w = info.input_shape[-2:]
    return TutorialCNN(channels(info, "cnn_seed002"), h, w, info.num_classes)
