"""The plugin keeps kdbench's method contract, and its loss has the property the paper
claims: it ignores the scale and shift of the logits."""

from __future__ import annotations

import torch
from kdbench_lskd import lskd_loss

from kdbench.testing import check_method, check_params


def test_lskd_keeps_the_method_contract() -> None:
    # On every built-in model pair (1-D maps, 2-D maps, flat features): finite scalar terms,
    # gradients to the student and never to the frozen teacher, a few steps lower the loss,
    # the same seed gives the same numbers.
    report = check_method("lskd")
    assert report.terms == ("ce", "kd")
    assert len(report.checked) == 3 and not report.refused  # logits exist everywhere


def test_its_parameters_survive_a_benchmark_file_and_mlflow() -> None:
    assert check_params("methods", "lskd") == {"tau": 2.0, "kd_weight": 9.0, "ce_weight": 1.0}


def test_a_positive_affine_map_of_the_teacher_costs_nothing() -> None:
    z_t = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    assert lskd_loss(3.0 * z_t + 1.0, z_t, tau=2.0).item() < 1e-6
    assert lskd_loss(-z_t, z_t, tau=2.0).item() > 1.0  # reversed ranking: far from it
