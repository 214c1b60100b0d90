"""The CIFAR-10 AlexNet and AlexNet-Half of ZSKD (Nayak et al. 2019), as in the authors' code
(github.com/vcl-iisc/ZSKD, ``model_alex_full.py`` and ``model_alex_half.py``).

Five convolutions (5×5, 5×5, 3×3, 3×3, 3×3, "same" padding, ReLU), local response
normalisation after the first two, 3×3 max-pooling with stride 2 after the first, second and
fifth, BatchNorm closing each block; then two fully connected layers (ReLU, dropout 0.5,
BatchNorm) and the classifier. AlexNet has feature maps (48, 128, 192, 192, 128) and hidden
layers (512, 256); AlexNet-Half halves every one (24, 64, 96, 96, 64; 256, 128). On 32×32
inputs the maps are 15×15, 7×7 and 3×3. TensorFlow's LRN (depth radius 2, α = 1e-4,
β = 0.75, bias 1) is torch's ``LocalResponseNorm(5, alpha=5e-4)``: torch divides α by the
window size. The stages are the three pooled blocks; the embedding is the last hidden layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.params import bounded
from kdbench.taps import TapPoints


@dataclass(frozen=True)
class AlexNetParams:
    channels: tuple[int, int, int, int, int] = bounded((48, 128, 192, 192, 128), low=1)
    """Feature maps of the five convolutions."""
    hidden: tuple[int, int] = bounded((512, 256), low=1)
    """Units of the two hidden fully connected layers."""
    dropout: float = bounded(0.5, low=0, high=1, high_open=True)
    """Dropout rate after each hidden layer (the authors' ``keepPro = 0.5`` passed as a rate)."""


@dataclass(frozen=True)
class AlexNetHalfParams(AlexNetParams):
    channels: tuple[int, int, int, int, int] = bounded((24, 64, 96, 96, 64), low=1)
    hidden: tuple[int, int] = bounded((256, 128), low=1)


def _conv(c_in: int, c_out: int, k: int, lrn: bool, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.ReLU()]
    if lrn:
        layers.append(nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=1.0))
    if pool:
        layers.append(nn.MaxPool2d(3, 2))
    layers.append(nn.BatchNorm2d(c_out))
    return nn.Sequential(*layers)


class AlexNet(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int,
                 channels: tuple[int, ...] = (48, 128, 192, 192, 128),
                 hidden: tuple[int, int] = (512, 256), dropout: float = 0.5) -> None:
        super().__init__()
        in_channels = input_shape[0] if len(input_shape) == 3 else 1
        c1, c2, c3, c4, c5 = channels
        self.block1 = _conv(in_channels, c1, 5, lrn=True, pool=True)
        self.block2 = _conv(c1, c2, 5, lrn=True, pool=True)
        self.block3 = nn.Sequential(_conv(c2, c3, 3, lrn=False, pool=False),
                                    _conv(c3, c4, 3, lrn=False, pool=False),
                                    _conv(c4, c5, 3, lrn=False, pool=True))
        self.flatten = nn.Flatten()
        with torch.no_grad():
            flat = self.flatten(self.block3(self.block2(self.block1(
                torch.zeros(2, in_channels, *input_shape[-2:])))))
        self.fc1 = nn.Sequential(nn.Linear(flat.shape[1], hidden[0]), nn.ReLU(),
                                 nn.Dropout(dropout), nn.BatchNorm1d(hidden[0]))
        self.fc2 = nn.Sequential(nn.Linear(hidden[0], hidden[1]), nn.ReLU(),
                                 nn.Dropout(dropout), nn.BatchNorm1d(hidden[1]))
        self.classifier = nn.Linear(hidden[1], num_classes)
        self.taps = TapPoints(embedding="fc2", stages=("block1", "block2", "block3"))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        features = self.flatten(self.block3(self.block2(self.block1(x))))
        return self.classifier(self.fc2(self.fc1(features)))


def alexnet_cifar(params: AlexNetParams, info: DataInfo) -> AlexNet:
    """ZSKD's CIFAR-10 AlexNet teacher: convs (48, 128, 192, 192, 128), fc (512, 256)."""
    return AlexNet(info.input_shape, info.num_classes, params.channels, params.hidden,
                   params.dropout)


def alexnet_cifar_half(params: AlexNetHalfParams, info: DataInfo) -> AlexNet:
    """ZSKD's CIFAR-10 AlexNet-Half student: convs (24, 64, 96, 96, 64), fc (256, 128)."""
    return alexnet_cifar(params, info)
