"""MNIST-1D's random-crop augmentation, and the teacher seeing the student's augmented batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import briefly
from kdbench_zoo.mnist1d import MNIST1DParams, load, random_crop

from kdbench import train
from kdbench.errors import SpecError
from kdbench.taps import Tapped


def _shifts(row: torch.Tensor, pad: int) -> list[torch.Tensor]:
    """Every crop of ``row`` padded with ``pad`` zeros on both sides, by a plain loop."""
    padded = torch.cat([torch.zeros(pad), row, torch.zeros(pad)])
    return [padded[s:s + len(row)] for s in range(2 * pad + 1)]


@pytest.mark.parametrize("channels", [None, 3])
def test_each_sequence_is_one_crop_of_its_padded_self(channels):
    x = torch.randn(200, 40) if channels is None else torch.randn(200, channels, 40)
    out = random_crop(x, torch.Generator().manual_seed(0), pad=4)
    assert out.shape == x.shape
    offsets = []
    for i in range(len(x)):
        rows = [x[i]] if channels is None else list(x[i])
        found = [s for s, crop in enumerate(_shifts(rows[0], 4))
                 if torch.equal(crop, out[i] if channels is None else out[i, 0])]
        assert len(found) == 1
        # Every channel of a sequence is cropped at the same offset.
        for c, row in enumerate(rows):
            got = out[i] if channels is None else out[i, c]
            assert torch.equal(_shifts(row, 4)[found[0]], got)
        offsets.append(found[0])
    assert set(offsets) == set(range(9))  # every offset in 0..2*pad occurs in 200 draws
    again = random_crop(x, torch.Generator().manual_seed(0), pad=4)
    assert torch.equal(out, again)  # the generator alone fixes it
    assert not torch.equal(out, random_crop(x, torch.Generator().manual_seed(1), pad=4))


def test_the_dataset_parameter_sets_the_augmentation(cache_dir: Path):
    plain = load(MNIST1DParams(num_samples=600), cache_dir / "data")
    cropped = load(MNIST1DParams(num_samples=600, augment="crop", pad=2), cache_dir / "data")
    assert plain.augment is None and cropped.augment is not None
    # The same sequences from the same cache file: augmentation does not choose the data.
    assert torch.equal(plain.x_train, cropped.x_train)
    x = cropped.x_train[:50]
    out = cropped.augment(x, torch.Generator().manual_seed(0))
    assert (out - x).abs().sum() > 0
    with pytest.raises(SpecError, match="pad is used only by"):
        train.plugins().entry("datasets", "mnist1d").make_params({"pad": 2})


def test_the_teacher_sees_the_augmented_batch_the_student_saw(cache_dir, monkeypatch):
    """Function matching (Beyer et al. 2022): with augmentation the teacher's taps for a
    batch are the teacher applied to the student's augmented input, never a cached copy of
    its outputs on the original sequences."""
    events: list[tuple] = []
    forward, call = Tapped.forward, train.TeacherTaps.__call__

    def tapped_forward(self, x):
        events.append(("tap", self.model, x))
        return forward(self, x)

    def teacher_call(self, x, idx):
        taps = call(self, x, idx)
        events.append(("teacher", self, x, idx, taps))
        return taps

    init = train.TeacherTaps.__init__
    datasets = []

    def teacher_init(self, tapped, data, *args, **options):
        datasets.append(data)  # the training split as the run sees it
        init(self, tapped, data, *args, **options)

    monkeypatch.setattr(train.TeacherTaps, "__init__", teacher_init)
    monkeypatch.setattr(Tapped, "forward", tapped_forward)
    monkeypatch.setattr(train.TeacherTaps, "__call__", teacher_call)
    result = briefly("kd", dataset_params={"num_samples": 600, "augment": "crop"}, epochs=2,
                     cache=cache_dir)
    assert result.status == "finished", result.error

    data = datasets[-1]
    # (The teacher's own training, when it is not cached yet, calls with no taps to give.)
    steps = [i for i, e in enumerate(events) if e[0] == "teacher" and e[-1] is not None]
    assert len(steps) == 2 * -(-len(data.x_train) // 100)  # batches of 100, 2 epochs
    for i in steps:
        _, teacher_taps, x, idx, taps = events[i]
        assert teacher_taps.cache is None
        teacher = teacher_taps.tapped.model
        kind, student, x_student = events[i - 2]
        assert kind == "tap" and student is not teacher
        assert x_student is x  # the very batch the student was given
        original = data.x_train[idx]
        assert not torch.equal(x, original)  # ... which is augmented
        for row, seen in zip(original, x, strict=True):
            assert any(torch.equal(crop, seen) for crop in _shifts(row, 4))
        with torch.no_grad():
            assert torch.equal(taps.logits, teacher(x))
            assert not torch.allclose(taps.logits, teacher(original))


def test_an_augmented_run_is_fixed_by_its_seed(cache_dir):
    params = {"num_samples": 600, "augment": "crop"}
    first = briefly(None, dataset_params=params, epochs=1, cache=cache_dir, seed=3)
    again = briefly(None, dataset_params=params, epochs=1, cache=cache_dir, seed=3)
    plain = briefly(None, dataset_params={"num_samples": 600}, epochs=1, cache=cache_dir, seed=3)
    assert first.history == again.history
    assert first.history[-1]["loss"] != plain.history[-1]["loss"]
