"""The metrics keep kdbench's metric contract and compute what the module says."""

from __future__ import annotations

import torch
from kdbench_calibration import expected_calibration_error, nearest_neighbour_accuracy

from kdbench.metrics import Database, Outputs
from kdbench.plugins import Plugins
from kdbench.testing import check_metric


def test_both_keep_the_metric_contract() -> None:
    # A finite float on random outputs of a split, and a boolean direction.
    check_metric("ece")
    check_metric("knn1")
    plugins = Plugins.load()
    assert plugins.higher_is_better("ece") is False
    assert plugins.higher_is_better("knn1") is True


def test_ece_of_a_confident_and_of_a_hedging_classifier() -> None:
    y = torch.tensor([0, 1, 2, 3])
    certain = 50.0 * torch.eye(4)                     # confidence 1, always right
    assert expected_calibration_error(certain, y) < 1e-6
    wrong = certain[[1, 2, 3, 0]]                     # confidence 1, always wrong
    assert abs(expected_calibration_error(wrong, y) - 1.0) < 1e-6
    uniform = torch.zeros(4, 4)                       # confidence 1/4, right by the argmax
    # argmax of ties is class 0: right once; all in one bin: |1/4 − 1/4| = 0
    assert expected_calibration_error(uniform, y) < 1e-6


def test_knn1_labels_each_query_by_its_nearest_training_sample() -> None:
    database = Database(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
    queries = torch.tensor([[2.0, 0.1], [0.1, 3.0], [1.0, 0.2]])
    outputs = Outputs(torch.tensor([0, 1, 1]), embedding=queries, database=database)
    assert abs(nearest_neighbour_accuracy(outputs) - 2 / 3) < 1e-6
