"""Multi-layer perceptrons over flattened inputs.

With its defaults, the MLP of the MNIST-1D paper (Greydanus 2020): two hidden
layers of 100 units with ReLU; about 68% test accuracy on MNIST-1D. Its stages
are flat, so methods that need feature maps refuse it at planning time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.params import bounded
from kdbench.taps import TapPoints


@dataclass(frozen=True)
class MLPParams:
    hidden: tuple[int, ...] = bounded((100, 100), low=1)


class MLP(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        layers = []
        width = in_features
        for h in hidden:
            layers.append(nn.Sequential(nn.Linear(width, h), nn.ReLU()))
            width = h
        self.hidden = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        last = f"hidden.{len(hidden) - 1}" if hidden else "flatten"
        self.taps = TapPoints(embedding=last,
                              stages=tuple(f"hidden.{i}" for i in range(len(hidden))))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.hidden(self.flatten(x)))


def mlp(params: MLPParams, info: DataInfo) -> MLP:
    """MLP with ReLU hidden layers (MNIST-1D paper: 100, 100)."""
    return MLP(math.prod(info.input_shape), info.num_classes, params.hidden)
