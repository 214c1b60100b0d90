"""Registers the zoo: datasets, model architectures and teachers that are not trained here."""

from __future__ import annotations

import kdbench
from kdbench.registry import Register
from kdbench_zoo import (
    alexnet,
    cnn1d,
    cnn2d,
    digits,
    estimator,
    features,
    image_folder,
    lenet,
    mlp,
    mnist1d,
    mobilenetv2,
    preact_resnet,
    pretrained,
    resnet_cifar,
    seed001,
    seed002,
    shufflenet,
    torchvision_models,
    vgg,
    vision,
    wrn,
)


@kdbench.hookimpl
def kdbench_datasets(register: Register) -> None:
    register("mnist1d", mnist1d.load, params=mnist1d.MNIST1DParams)
    register("digits", digits.digits, params=digits.DigitsParams)
    register("mnist5k", digits.mnist5k, params=digits.MNIST5kParams)
    for name in vision.STANDARD:
        register(name, getattr(vision, name), params=vision.VisionParams)
    register("image_folder", image_folder.image_folder, params=image_folder.ImageFolderParams)


@kdbench.hookimpl
def kdbench_students(register: Register) -> None:
    register("cnn1d", cnn1d.cnn1d, params=cnn1d.CNN1DParams)
    register("cnn1d_small", cnn1d.cnn1d_small, params=cnn1d.SmallCNN1DParams)
    register("mlp", mlp.mlp, params=mlp.MLPParams)
    register("cnn2d", cnn2d.cnn2d, params=cnn2d.CNN2DParams)
    register("cnn2d_small", cnn2d.cnn2d_small, params=cnn2d.SmallCNN2DParams)
    register("lenet5", lenet.lenet5, params=lenet.LeNet5Params)
    register("lenet5_half", lenet.lenet5_half, params=lenet.LeNet5HalfParams)
    register("alexnet_cifar", alexnet.alexnet_cifar, params=alexnet.AlexNetParams)
    register("alexnet_cifar_half", alexnet.alexnet_cifar_half, params=alexnet.AlexNetHalfParams)
    # The CRD benchmark's CIFAR networks (Tian et al. ICLR 2020), the seeds' networks, and
    # torchvision's ImageNet classifiers as tv:<name>.
    for name, factory in {**resnet_cifar.MODELS, **wrn.MODELS, **vgg.MODELS}.items():
        register(name, factory)
    register("mobilenetv2", mobilenetv2.mobilenetv2, params=mobilenetv2.MobileNetV2Params)
    register("shufflenetv1", shufflenet.shufflenetv1)
    register("shufflenetv2", shufflenet.shufflenetv2)
    register("resnet18_cifar", resnet_cifar.resnet18_cifar)
    register("resnet164", preact_resnet.resnet164)
    register("cnn3_seed001", seed001.cnn3_seed001, params=seed001.CNN3Params)
    register("mlp2_seed001", seed001.mlp2_seed001, params=seed001.MLP2Params)
    register("cnn_ensemble_seed001", seed001.cnn_ensemble_seed001, params=seed001.EnsembleParams)
    register("cnn_seed002", seed002.cnn_seed002)
    for name, factory in torchvision_models.models().items():
        register(name, factory)


@kdbench.hookimpl
def kdbench_teachers(register: Register) -> None:
    register("sklearn", estimator.Estimator)
    register("features", features.Features)
    register("torchvision", pretrained.Torchvision)
