"""The dataset keeps kdbench's dataset contract, and its split and inputs are what the
module says."""

from __future__ import annotations

import torch

from kdbench.plugins import Plugins
from kdbench.testing import check_dataset


def test_breast_cancer_keeps_the_dataset_contract(tmp_path) -> None:
    # Matching lengths, float inputs, int64 labels in range, an augmentation fixed by the
    # generator it is given.
    info = check_dataset("breast_cancer", {"noise": 0.1}, cache_dir=tmp_path)
    assert info.input_shape == (30,) and info.num_classes == 2
    assert info.num_train == 426  # 569 less the stratified quarter held out for test


def test_models_see_z_scores_of_the_training_split(tmp_path) -> None:
    entry = Plugins.load().entry("datasets", "breast_cancer")
    data = entry.factory(entry.make_params({}), tmp_path)
    x = data.inputs(data.x_train)
    assert torch.allclose(x.mean(0), torch.zeros(30), atol=1e-4)
    assert torch.allclose(x.std(0), torch.ones(30), atol=1e-4)
    assert data.augment is None  # noise = 0 by default
