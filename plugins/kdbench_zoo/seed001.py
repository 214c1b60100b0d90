"""Seed 001's students: a 3-layer CNN, a two-layer MLP and an ensemble of the CNNs.

The seed (a Hinton-KD study on MNIST, CIFAR-100 and Tiny-ImageNet; its README reports the
3-layer CNN at 97.00% on MNIST alone, 97.65% taught by VGG-16 and 98.16% by ResNet-164)
names these students without their layer sizes, so the sizes here are kdbench's reading,
each a parameter:

- ``cnn3_seed001``: three conv3×3-ReLU-maxpool(2) layers of 32, 64 and 128 channels, the
  last map flattened into one linear classifier (a textbook "3-layer ConvNet"; no BN, as
  in the Keras-era models the seed compares).
- ``mlp2_seed001``: the student of Hinton et al. 2015 (§3, MNIST): two hidden layers of 800
  ReLU units, no regularisation.
- ``cnn_ensemble_seed001``: ``members`` such CNNs trained together, whose logits are
  averaged; its embedding is the concatenation of the members' flattened features, and it
  has no stages (a stage of which member?), so map-based methods refuse it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.params import bounded
from kdbench.taps import TapPoints
from kdbench_zoo.image_input import as_image, channels, side
from kdbench_zoo.mlp import MLP


@dataclass(frozen=True)
class CNN3Params:
    channels: tuple[int, int, int] = bounded((32, 64, 128), low=1)
    """Width of each of the three convolutional layers."""


class CNN3(nn.Module):
    def __init__(self, in_channels: int, size: int, num_classes: int,
                 widths: tuple[int, ...]) -> None:
        super().__init__()
        layers, c_in = [], in_channels
        for c_out in widths:
            layers.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True),
                                        nn.MaxPool2d(2)))
            c_in, size = c_out, size // 2
        if size < 1:
            raise ValueError("three 2×2 max-pools need inputs of at least 8×8 pixels")
        self.layers = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c_in * size * size, num_classes)
        self.taps = TapPoints(embedding="flatten",
                              stages=tuple(f"layers.{i}" for i in range(len(widths))))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.layers(as_image(x))))


def _square(info: DataInfo, name: str) -> int:
    h, w = info.input_shape[-2:]
    if h != w:
        raise ValueError(f"{name} takes square images, got {h}×{w}")
    return side(info)


def cnn3_seed001(params: CNN3Params, info: DataInfo) -> CNN3:
    """Seed 001's 3-layer CNN student: conv3×3-ReLU-maxpool of 32, 64, 128 channels."""
    return CNN3(channels(info, "cnn3_seed001"), _square(info, "cnn3_seed001"),
                info.num_classes, tuple(params.channels))


@dataclass(frozen=True)
class MLP2Params:
    hidden: tuple[int, int] = bounded((800, 800), low=1)
    """Widths of the two hidden layers (Hinton et al. 2015: 800 and 800)."""


def mlp2_seed001(params: MLP2Params, info: DataInfo) -> MLP:
    """Seed 001's two-layer MLP student: 800-800 ReLU hidden layers (Hinton et al. 2015)."""
    return MLP(math.prod(info.input_shape), info.num_classes, tuple(params.hidden))


@dataclass(frozen=True)
class EnsembleParams:
    members: int = bounded(3, low=2)
    """How many 3-layer CNNs the ensemble averages."""
    channels: tuple[int, int, int] = bounded((32, 64, 128), low=1)


class Ensemble(nn.Module):
    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.features = nn.Identity()  # the concatenated member features, for the taps
        self.taps = TapPoints(embedding="features")

    def forward(self, x: Tensor) -> Tensor:
        feats = [m.flatten(m.layers(as_image(x))) for m in self.members]
        self.features(torch.cat(feats, 1))
        return torch.stack([m.classifier(f) for m, f in zip(self.members, feats, strict=True)]
                           ).mean(0)


def cnn_ensemble_seed001(params: EnsembleParams, info: DataInfo) -> Ensemble:
    """Seed 001's CNN ensemble student: the mean logits of ``members`` 3-layer CNNs."""
    size = _square(info, "cnn_ensemble_seed001")
    return Ensemble([CNN3(channels(info, "cnn_ensemble_seed001"), size, info.num_classes,
                          tuple(params.channels)) for _ in range(params.members)])
