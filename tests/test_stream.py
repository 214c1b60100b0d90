"""Image folders streamed from their files (kdbench.stream): the same batches as in memory
for the same seed where augmentation is off, the same batches with or without loader workers
where it is on, the choice by size, and ``kdbench run --smoke`` end to end on a streamed
folder. The folder is written here: JPEG and PNG files of several sizes, ImageNet's layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdbench import train
from kdbench.cli import main
from kdbench.data import hold_out
from kdbench.stream import Streamed, TrainingBatches


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``imagenet/{train,val}/<wnid>/``: 3 classes, 7 training and 2 validation images each,
    JPEG and PNG, RGB and grey, none of them square."""
    from PIL import Image

    root = tmp_path_factory.mktemp("streamed")
    rng = np.random.default_rng(7)
    for split, n in (("train", 7), ("val", 2)):
        for c in range(3):
            out = root / "imagenet" / split / f"n{3000 + c:08d}"
            out.mkdir(parents=True)
            for i in range(n):
                h, w = (40 + 3 * i, 52) if i % 2 else (48, 36 + 2 * i)
                pixels = (rng.integers(0, 120, (h, w, 3)) + 60 * c).astype(np.uint8)
                image = Image.fromarray(pixels)
                if i == 3:
                    image.convert("L").save(out / f"img_{i}.png")
                elif i % 2:
                    image.save(out / f"img_{i}.JPEG", quality=90)
                else:
                    image.save(out / f"img_{i}.png")
    return root


def _load(folder: Path, cache: Path, **params):
    entry = train.plugins().entry("datasets", "image_folder")
    values = {"root": str(folder), "path": "imagenet", "size": 24, "augment": "none", **params}
    return entry.factory(entry.make_params(values), cache)


def _epochs(data, seed: int, epochs: int = 2, batch_size: int = 4):
    source = TrainingBatches(data.x_train, data.augment, batch_size)
    generator = torch.Generator().manual_seed(seed)
    return [(idx, x) for _ in range(epochs) for idx, x in source.epoch(generator)]


def test_streamed_batches_are_the_in_memory_ones_without_augmentation(folder: Path,
                                                                      tmp_path: Path) -> None:
    memory = hold_out(_load(folder, tmp_path, storage="memory"), 0.2, 0)
    streamed = hold_out(_load(folder, tmp_path, storage="files", workers=0), 0.2, 0)
    assert isinstance(streamed.x_train, Streamed) and isinstance(memory.x_train, torch.Tensor)
    assert streamed.x_train.shape == memory.x_train.shape == (18, 3, 24, 24)
    assert torch.equal(streamed.y_val, memory.y_val) and streamed.info == memory.info
    for seed in (0, 3):
        ours, theirs = _epochs(streamed, seed), _epochs(memory, seed)
        assert len(ours) == len(theirs) == 10
        for (i, x), (j, z) in zip(ours, theirs, strict=True):
            assert torch.equal(i, j) and x.dtype == torch.uint8 and torch.equal(x, z)
    # Evaluation reads through the dataset's prepare: decoded, then normalised.
    assert torch.equal(streamed.inputs(streamed.x_val), memory.inputs(memory.x_val))
    assert torch.equal(streamed.inputs(streamed.x_test[[4, 0]]), memory.inputs(memory.x_test[[4, 0]]))


def test_streamed_augmentation_is_the_runs_whatever_the_workers(folder: Path,
                                                               tmp_path: Path) -> None:
    alone = _load(folder, tmp_path, storage="files", workers=0, augment="standard", pad=3)
    pooled = _load(folder, tmp_path, storage="files", workers=2, augment="standard", pad=3)
    ours, theirs = _epochs(alone, 5), _epochs(pooled, 5)  # decoded in 2 spawned processes
    assert all(torch.equal(i, j) and torch.equal(x, z)
               for (i, x), (j, z) in zip(ours, theirs, strict=True))
    plain = _epochs(_load(folder, tmp_path, storage="files", workers=0), 5)
    assert any(not torch.equal(x, z) for (_, x), (_, z) in zip(ours, plain, strict=True))
    assert not all(torch.equal(x, z) for (_, x), (_, z) in zip(ours, _epochs(alone, 6),
                                                                strict=True))


def test_a_folder_larger_than_max_gib_streams(folder: Path, tmp_path: Path) -> None:
    assert isinstance(_load(folder, tmp_path, max_gib=1e-6).x_train, Streamed)
    assert isinstance(_load(folder, tmp_path).x_train, torch.Tensor)


BENCH = """
name = "streamed"
seeds = 2
[dataset]
name = "image_folder"
root = "{root}"
path = "imagenet"
size = 32
storage = "files"
workers = 0  # streamed in the run's process: the loader workers are tested above
[teacher]
model = "resnet8"
[teacher.recipe]
epochs = 3
[student]
name = "cnn_seed002"
[recipe]
epochs = 3
[executor]
name = "serial"
[methods.kd]
"""


def test_a_streamed_folder_runs_end_to_end_with_smoke(folder: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "streamed.toml"
    path.write_text(BENCH.format(root=folder))
    code = main(["run", str(path), "--smoke", "--out", str(tmp_path / "out"),
                 "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    board = json.loads((tmp_path / "out" / "streamed-smoke.json").read_text())
    assert code == 0 and not board["failed"], board["failed"]
    assert [row["method"] for row in board["rows"]] == ["kd"]
    assert "SMOKE TEST" in capsys.readouterr().out
