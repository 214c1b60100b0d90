"""Registers the zoo: datasets, model architectures and teachers that are not trained here.

Everything is registered by reference (:class:`~kdbench.registry.Lazy`): loading the plugins
imports no module of the zoo, no torch and no torchvision, and a benchmark imports the
factories it uses. The name tables below are checked against the modules' own tables by
``tests/test_plugins.py``."""

from __future__ import annotations

import kdbench
from kdbench.registry import Lazy, Register

VISION = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")
"""``vision.STANDARD``: torchvision's datasets in their own on-disk formats."""
RESNETS = ("resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
           "resnet8x4", "resnet32x4")
WRNS = ("wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2")
VGGS = ("vgg8", "vgg11", "vgg13", "vgg16", "vgg16_seed001")
TORCHVISION = (
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
    "efficientnet_v2_l", "efficientnet_v2_m", "efficientnet_v2_s", "mobilenet_v2",
    "mobilenet_v3_large", "mobilenet_v3_small", "resnet101", "resnet152", "resnet18",
    "resnet34", "resnet50", "resnext101_32x8d", "resnext101_64x4d", "resnext50_32x4d", "vgg11",
    "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "wide_resnet101_2", "wide_resnet50_2")
"""``torchvision_models.names()`` for the torchvision the README pins (registered as
``tv:<name>``)."""


def _zoo(reference: str) -> str:
    return f"kdbench_zoo.{reference}"


@kdbench.hookimpl
def kdbench_datasets(register: Register) -> None:
    register("mnist1d", _zoo("mnist1d:load"), params=_zoo("mnist1d:MNIST1DParams"))
    register("digits", _zoo("digits:digits"), params=_zoo("digits:DigitsParams"))
    register("mnist5k", _zoo("digits:mnist5k"), params=_zoo("digits:MNIST5kParams"))
    for name in VISION:
        register(name, _zoo(f"vision:{name}"), params=_zoo("vision:VisionParams"))
    register("image_folder", _zoo("image_folder:image_folder"),
             params=_zoo("image_folder:ImageFolderParams"))


@kdbench.hookimpl
def kdbench_students(register: Register) -> None:
    register("cnn1d", _zoo("cnn1d:cnn1d"), params=_zoo("cnn1d:CNN1DParams"))
    register("cnn1d_small", _zoo("cnn1d:cnn1d_small"), params=_zoo("cnn1d:SmallCNN1DParams"))
    register("mlp", _zoo("mlp:mlp"), params=_zoo("mlp:MLPParams"))
    register("cnn2d", _zoo("cnn2d:cnn2d"), params=_zoo("cnn2d:CNN2DParams"))
    register("cnn2d_small", _zoo("cnn2d:cnn2d_small"), params=_zoo("cnn2d:SmallCNN2DParams"))
    register("lenet5", _zoo("lenet:lenet5"), params=_zoo("lenet:LeNet5Params"))
    register("lenet5_half", _zoo("lenet:lenet5_half"), params=_zoo("lenet:LeNet5HalfParams"))
    register("alexnet_cifar", _zoo("alexnet:alexnet_cifar"), params=_zoo("alexnet:AlexNetParams"))
    register("alexnet_cifar_half", _zoo("alexnet:alexnet_cifar_half"),
             params=_zoo("alexnet:AlexNetHalfParams"))
    # The CRD benchmark's CIFAR networks (Tian et al. ICLR 2020), the seeds' networks, and
    # torchvision's ImageNet classifiers as tv:<name>.
    for module, names in (("resnet_cifar", RESNETS), ("wrn", WRNS), ("vgg", VGGS)):
        for name in names:
            register(name, Lazy(_zoo(f"{module}:MODELS"), name))
    register("mobilenetv2", _zoo("mobilenetv2:mobilenetv2"),
             params=_zoo("mobilenetv2:MobileNetV2Params"))
    register("shufflenetv1", _zoo("shufflenet:shufflenetv1"))
    register("shufflenetv2", _zoo("shufflenet:shufflenetv2"))
    register("resnet18_cifar", _zoo("resnet_cifar:resnet18_cifar"))
    register("resnet164", _zoo("preact_resnet:resnet164"))
    register("cnn3_seed001", _zoo("seed001:cnn3_seed001"), params=_zoo("seed001:CNN3Params"))
    register("mlp2_seed001", _zoo("seed001:mlp2_seed001"), params=_zoo("seed001:MLP2Params"))
    register("cnn_ensemble_seed001", _zoo("seed001:cnn_ensemble_seed001"),
             params=_zoo("seed001:EnsembleParams"))
    register("cnn_seed002", _zoo("seed002:cnn_seed002"))
    for name in TORCHVISION:
        register(f"tv:{name}", Lazy(_zoo("torchvision_models:factory"), name),
                 description=f"torchvision's {name} (random init), with taps.")


@kdbench.hookimpl
def kdbench_teachers(register: Register) -> None:
    register("sklearn", _zoo("estimator:Estimator"))
    register("features", _zoo("features:Features"))
    register("torchvision", _zoo("pretrained:Torchvision"))
