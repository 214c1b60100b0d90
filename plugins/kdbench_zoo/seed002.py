"""Seed 002's small CNN student (CIFAR-10, KD at T = 1 to 100 from a ResNet-18).

The seed's ``network.py`` (``Student1``) is the network of PyTorch's CIFAR-10 tutorial
("Training a classifier"): conv5×5 to 6 channels, ReLU, 2×2 max-pool, conv5×5 to 16, ReLU,
max-pool, then fully connected layers of 120 and 84 ReLU units and the classifier; 62,006
weights for 10 classes on 32×32 images. On 28×28 inputs the flattened map is 16·4·4.

Taps: each conv-ReLU-pool layer (``pool1``, ``pool2``) and the 84 features the classifier
reads (``relu4``). Weights are named as in the seed (``conv1``, ``conv2``, ``fc1``-``fc3``),
so its checkpoints (``{"state_dict": ...}``) load as they are.
"""

from __future__ import annotations

from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.taps import TapPoints
from kdbench_zoo.image_input import as_image, channels


class TutorialCNN(nn.Module):
    def __init__(self, in_channels: int, height: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.pool1 = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool2 = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
        h, w = ((height - 4) // 2 - 4) // 2, ((width - 4) // 2 - 4) // 2
        if h < 1 or w < 1:
            raise ValueError(f"cnn_seed002 needs images of at least 16×16, got {height}×{width}")
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * h * w, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)
        self.taps = TapPoints(embedding="relu4", stages=("pool1", "pool2"))

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool2(self.conv2(self.pool1(self.conv1(as_image(x)))))
        return self.fc3(self.relu4(self.fc2(self.relu3(self.fc1(self.flatten(x))))))


def cnn_seed002(params: None, info: DataInfo) -> TutorialCNN:
    """Seed 002's small CNN: PyTorch's CIFAR-10 tutorial network (62k weights)."""
    h, w = info.input_shape[-2:]
    return TutorialCNN(channels(info, "cnn_seed002"), h, w, info.num_classes)
