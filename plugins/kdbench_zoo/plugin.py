"""Registers the zoo: datasets and model architectures."""

from __future__ import annotations

import kdbench
from kdbench.registry import Register
from kdbench_zoo import cnn1d, cnn2d, digits, image_folder, mlp, mnist1d, vision


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
