"""torchvision's ImageNet classifiers by name, with taps: ``tv:resnet18``, ``tv:vgg16_bn``...

Every architecture of the families below that ``torchvision.models.list_models`` lists is
registered as ``tv:<name>``, built by ``torchvision.models.get_model(name, weights=None,
num_classes=...)``: randomly initialised (kdbench downloads no weights; a pretrained teacher
comes from a checkpoint file, ``[teacher] provider = "checkpoint"``). They take 3-channel
images of any size the network reduces to at least 1×1 (32×32 works for all of them).

Taps, per family:

- ResNet, ResNeXt, wide ResNet: the four stages (``layer1``-``layer4``); the pooled features
  (``avgpool``).
- VGG: the last ReLU before each max-pool; the second 4096-unit layer's ReLU
  (``classifier.4``).
- MobileNetV2, MobileNetV3, EfficientNet (``features`` blocks): the last block at each
  resolution, found by running a sample of the data's shape through the blocks; the pooled
  features (``avgpool``; MobileNetV2 pools functionally, so its embedding is the
  classifier's dropout, ``classifier.0``, which drops features in training).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from kdbench.data import DataInfo
from kdbench.errors import PluginError
from kdbench.taps import TapPoints

FAMILIES = ("resnet", "resnext", "wide_resnet", "vgg", "mobilenet_v2", "mobilenet_v3",
            "efficientnet")


def names() -> list[str]:
    """The torchvision architectures with taps, as listed by the installed torchvision."""
    return [n for n in torchvision.models.list_models(module=torchvision.models)
            if n.startswith(FAMILIES)]


def resolution_ends(blocks: nn.Sequential, shape: tuple[int, ...]) -> tuple[str, ...]:
    """Indices (as strings) of the last block of ``blocks`` at each spatial resolution."""
    x = torch.zeros(1, *shape)
    sizes = []
    was = blocks.training
    blocks.eval()
    with torch.no_grad():
        for block in blocks:
            x = block(x)
            sizes.append(tuple(x.shape[-2:]))
    blocks.train(was)
    return tuple(str(i) for i, s in enumerate(sizes) if i + 1 == len(sizes) or sizes[i + 1] != s)


def taps_of(name: str, model: nn.Module, shape: tuple[int, ...]) -> TapPoints:
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        return TapPoints(embedding="avgpool", stages=("layer1", "layer2", "layer3", "layer4"))
    if name.startswith("vgg"):
        features = list(model.features)
        stages = tuple(f"features.{i - 1}" for i, m in enumerate(features)
                       if isinstance(m, nn.MaxPool2d))
        return TapPoints(embedding="classifier.4", stages=stages)
    ends = resolution_ends(model.features, shape)
    embedding = "classifier.0" if name == "mobilenet_v2" else "avgpool"
    return TapPoints(embedding=embedding, stages=tuple(f"features.{i}" for i in ends))


def factory(name: str):
    def build(params: None, info: DataInfo) -> nn.Module:
        shape = tuple(info.input_shape)
        if len(shape) != 3 or shape[0] != 3:
            raise PluginError(f"tv:{name} takes 3-channel images (3, H, W); the dataset's "
                              f"samples are {shape}: use a CIFAR model (e.g. resnet20) for "
                              "grey images")
        model = torchvision.models.get_model(name, weights=None, num_classes=info.num_classes)
        model.taps = taps_of(name, model, shape)
        return model

    build.__doc__ = f"torchvision's {name} (random init), with taps."
    return build


def models() -> dict[str, object]:
    """``{"tv:<name>": factory}`` for every architecture of :data:`FAMILIES`."""
    return {f"tv:{n}": factory(n) for n in names()}
