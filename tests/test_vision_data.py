"""The image datasets through their real loaders, on files written in each dataset's own
format (tests/vision_files.py): shapes, labels, normalisation, augmentation, the missing-data
message, and ``kdbench run --smoke --data-root`` end to end on every dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import vision_files
from kdbench_zoo import vision
from kdbench_zoo.image_augment import crop_flip

from kdbench import train
from kdbench.cli import main
from kdbench.data import Normalize
from kdbench.errors import KdbenchError
from kdbench.spec import SMOKE_BATCHES

SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32),
          "cifar100": (3, 32, 32), "svhn": (3, 32, 32), "image_folder": (3, 64, 64)}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for write in vision_files.WRITERS.values():
        write(root)
    vision_files.write_imagenet(root)
    return root


def _load(name: str, root: Path, cache: Path, **params):
    entry = train.plugins().entry("datasets", name)
    return entry.factory(entry.make_params({"root": str(root), **params}), cache)


@pytest.mark.parametrize("name", list(SHAPES))
def test_each_format_loads_as_uint8_images(name: str, data_root: Path, tmp_path: Path) -> None:
    data = _load(name, data_root, tmp_path)
    assert data.x_train.dtype == torch.uint8 and data.x_train.shape[1:] == SHAPES[name]
    assert data.x_test.shape[1:] == SHAPES[name]
    classes = {"cifar100": 100, "image_folder": 3}.get(name, 10)
    assert data.num_classes == classes
    assert set(data.y_train.tolist()) == set(range(classes))
    # The writers make a sample's brightness a function of its label: the labels read back
    # belong to the images read back (SVHN's 10 is the digit 0, the val annotations match).
    if name != "image_folder":
        expected = torch.as_tensor((data.y_train.numpy() * 151) % 160)
        low = data.x_train.flatten(1).float().amin(1)
        assert torch.all((low >= expected) & (low <= expected + 95))


def test_mnist_gz_files_are_unpacked(tmp_path: Path) -> None:
    vision_files.write_mnist(tmp_path, gz=True)
    data = _load("mnist", tmp_path, tmp_path / "cache")
    assert data.x_train.shape == (120, 1, 28, 28)
    assert (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_imagenet_layout_is_resized_and_cropped(data_root: Path, tmp_path: Path) -> None:
    data = _load("image_folder", data_root, tmp_path, path="imagenet", size=32)
    assert data.x_train.shape == (6, 3, 32, 32) and data.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.y_test.tolist() == [0, 1]
    again = _load("image_folder", data_root, tmp_path, path="imagenet", size=32)  # from cache
    assert torch.equal(again.x_train, data.x_train)


def test_too_large_a_folder_is_refused(data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(KdbenchError, match="GiB as uint8, more than max_gib"):
        _load("image_folder", data_root, tmp_path, size=1024, max_gib=0.01, storage="memory")


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_batch_time_normalisation_equals_torchvision_transforms(name: str, data_root: Path,
                                                                tmp_path: Path) -> None:
    """``Dataset.inputs`` on a uint8 batch gives what torchvision's per-image
    ``ToTensor() + Normalize(mean, std)`` gives on each PIL image."""
    from PIL import Image
    from torchvision import transforms

    data = _load(name, data_root, tmp_path)
    standard = vision.STANDARD[name]
    per_image = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize(standard.mean, standard.std)])
    x = data.x_test[:8]
    expected = torch.stack([per_image(Image.fromarray(img.permute(1, 2, 0).squeeze(-1).numpy()))
                            for img in x])
    assert torch.allclose(data.inputs(x), expected, atol=1e-5)
    assert data.inputs(x).dtype == torch.float32


def test_normalised_statistics_are_zero_mean_unit_std() -> None:
    """Images whose channels have the stated mean and std come out with mean 0 and std 1."""
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.integers(0, 256, (500, 3, 8, 8)), dtype=torch.uint8)
    scaled = x.float() / 255
    mean = tuple(scaled.mean((0, 2, 3)).tolist())
    std = tuple(scaled.std((0, 2, 3)).tolist())
    out = Normalize(mean, std)(x)
    assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std((0, 2, 3)), torch.ones(3), atol=1e-4)


def test_augmentation_is_fixed_by_the_seed_and_is_a_padded_crop() -> None:
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    a = crop_flip(x, torch.Generator().manual_seed(7), 4, True)
    b = crop_flip(x, torch.Generator().manual_seed(7), 4, True)
    c = crop_flip(x, torch.Generator().manual_seed(8), 4, True)
    assert a.dtype == torch.uint8 and torch.equal(a, b) and not torch.equal(a, c)
    # The same draws, done by hand, image by image.
    g = torch.Generator().manual_seed(7)
    dy, dx = torch.randint(0, 9, (16,), generator=g), torch.randint(0, 9, (16,), generator=g)
    flips = torch.rand(16, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(16):
        window = padded[i, :, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
        assert torch.equal(a[i], window.flip(-1) if flips[i] else window)
    assert 0 < int(flips.sum()) < 16


def test_no_flip_for_digits_and_none_turns_augmentation_off(data_root: Path,
                                                           tmp_path: Path) -> None:
    x = torch.arange(32, dtype=torch.uint8).repeat(4, 1, 32, 1)  # columns 0..31
    unflipped = crop_flip(x, torch.Generator().manual_seed(0), 0, False)
    assert torch.equal(unflipped, x)
    for name in ("mnist", "svhn"):
        assert vision.STANDARD[name].flip is False
        assert _load(name, data_root, tmp_path).augment.flip is False
    assert _load("cifar10", data_root, tmp_path, augment="none").augment is None


def test_teacher_outputs_are_cached_on_normalised_inputs_without_augmentation(
        data_root: Path, tmp_path: Path) -> None:
    from kdbench_zoo.cnn2d import CNN2D

    from kdbench.taps import Tapped

    teacher = CNN2D(3, 10, (4, 8)).eval()
    for augment, cached in (("none", True), ("standard", False)):
        data = _load("cifar10", data_root, tmp_path, augment=augment)
        taps = train.TeacherTaps(Tapped(teacher, {"logits"}), data, True, 32)
        assert (taps.cache is not None) == cached
        if cached:
            with torch.no_grad():
                expected = teacher(data.inputs(data.x_train[:5]))
            assert torch.allclose(taps.cache.logits[:5], expected, atol=1e-5)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for the module: creating a SQLite store takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'm.db'}"


@pytest.mark.parametrize("name", ["cifar100", "svhn", "mnist", "image_folder"])
def test_missing_data_is_one_line_naming_the_path_and_the_fix(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bench = _bench(tmp_path, name)
    empty = tmp_path / "empty"
    db = tmp_path / "m.db"
    assert main(["run", str(bench), "--smoke", "--data-root", str(empty), "--out",
                 str(tmp_path / "out"), "--tracking-uri", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(empty) in err
    assert "--data-root" in err
    assert ("download = true" in err) if name != "image_folder" else ("tiny-imagenet-200" in err)
    assert not db.exists()  # refused before the store was touched


def _bench(tmp_path: Path, dataset: str, methods: str = "[methods.kd]\nT = 4.0\n") -> Path:
    path = tmp_path / f"vision-{dataset}.toml"
    path.write_text(f"""
name = "vision-{dataset}"
seeds = 3
[dataset]
name = "{dataset}"
[teacher]
model = {{ name = "cnn2d", channels = [8, 16] }}
[teacher.recipe]
epochs = 3
batch_size = 32
[student]
name = "cnn2d"
channels = [4, 8]
[recipe]
epochs = 20
batch_size = 32
schedule = "step"
milestones = [10, 15]
[executor]
name = "serial"
{methods}""")
    return path


@pytest.mark.parametrize("name", list(SHAPES))
def test_smoke_runs_each_dataset_end_to_end(name: str, data_root: Path, tmp_path: Path,
                                            store: str, capsys: pytest.CaptureFixture) -> None:
    """``kdbench run --smoke --data-root`` through each real loader; FitNet's hint stage
    (5 epochs in the file) is shrunk with the rest, on CIFAR-100."""
    out = tmp_path / "out"
    methods = "[methods.kd]\nT = 4.0\n" + ("[methods.fitnet]\nhint_epochs = 5\n"
                                          if name == "cifar100" else "")
    assert main(["run", str(_bench(tmp_path, name, methods)), "--smoke", "--data-root",
                 str(data_root), "--out", str(out), "--tracking-uri", store]) == 0
    printed = capsys.readouterr().out
    assert "SMOKE TEST" in printed
    board = json.loads((out / f"vision-{name}-smoke.json").read_text())
    assert board["smoke"] == SMOKE_BATCHES and board["benchmark"] == f"vision-{name}-smoke"
    assert board["baseline"]["seeds"] == [0, 1] and not board["failed"]
    assert {r["method"] for r in board["rows"]} == ({"kd", "fitnet"} if name == "cifar100"
                                                    else {"kd"})
    assert not (out / f"vision-{name}.json").exists()
