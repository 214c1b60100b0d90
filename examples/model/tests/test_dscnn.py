"""The model keeps kdbench's model contract, and its parameters shape it as documented."""

from __future__ import annotations

import pytest

from kdbench.conformance import build_model
from kdbench.data import DataInfo
from kdbench.errors import Incompatible
from kdbench.taps import shapes
from kdbench.testing import check_method, check_model

DIGITS = DataInfo((1, 8, 8), 10, 1000)


def test_dscnn_keeps_the_model_contract() -> None:
    # Builds, every tap resolves, one logit per class, every weight gets a gradient. It
    # refuses flat inputs (Incompatible), so the kit checks it on the first image shape.
    assert check_model("dscnn").input_shape == (1, 8, 8)
    check_model("dscnn", DataInfo((3, 32, 32), 100, 1000), {"width": 4, "stages": 4})


def test_the_stages_halve_the_maps_and_double_the_channels() -> None:
    import torch

    taps = shapes(build_model("dscnn", DIGITS, {"width": 8}), torch.zeros(2, 1, 8, 8))
    assert taps.stages == ((8, 8, 8), (16, 4, 4), (32, 2, 2))
    assert taps.embedding == (32,) and taps.logits == (10,)


def test_too_many_stages_are_refused() -> None:
    with pytest.raises(Incompatible, match="fewer stages"):
        build_model("dscnn", DIGITS, {"stages": 5})


def test_attention_transfer_runs_between_two_widths() -> None:
    from kdbench.conformance import Pair

    pair = Pair("dscnn", "dscnn", (1, 8, 8), student_params={"width": 4},
                teacher_params={"width": 16})
    assert check_method("at", [pair], steps=5).checked
